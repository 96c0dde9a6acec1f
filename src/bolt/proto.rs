//! A minimal protobuf wire-format reader: enough to decode the few small messages etcd stores in
//! bbolt (mvccpb.KeyValue, leasepb.Lease, the alarm and auth records) without generated code.
//! Every length is checked against the input; malformed input is an error with its offset.

use std::fmt;

// Wire format: a message is a sequence of fields, each a tag then a payload.
//
// | part    | encoding | meaning                                                          |
// |---------|----------|------------------------------------------------------------------|
// | tag     | varint   | field number << 3 | wire type                                    |
// | payload | type 0   | varint: 7 bits per byte, least significant first, ≤ 10 bytes      |
// |         | type 1   | 8 bytes little-endian (fixed64, sfixed64, double)                 |
// |         | type 2   | varint length, then that many bytes (bytes, string, message)      |
// |         | type 5   | 4 bytes little-endian (fixed32, sfixed32, float)                  |
// Types 3 and 4 (groups) are obsolete and never used by etcd: an error here.
pub const WIRE_VARINT: u8 = 0;
pub const WIRE_FIXED64: u8 = 1;
pub const WIRE_LEN: u8 = 2;
pub const WIRE_FIXED32: u8 = 5;
/// Longest varint: 64 bits in 7-bit groups.
const MAX_VARINT_LEN: usize = 10;
/// Largest field number protobuf allows.
pub const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// What is wrong with a protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoDefect {
    /// The input ends inside a tag, a varint, a fixed-size value or a length-delimited payload.
    Truncated,
    /// A varint longer than 10 bytes or above 2⁶⁴ − 1.
    VarintOverflow,
    /// Field number 0 or above 2²⁹ − 1.
    BadFieldNumber(u64),
    /// Wire type 3, 4 (groups), 6 or 7.
    BadWireType(u8),
    /// A known field with a wire type its declaration does not allow.
    WrongWireType { field: u32, wire_type: u8 },
}

/// A defect and the byte offset in the message where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid protobuf at byte {offset}: {defect}")]
pub struct ProtoError {
    pub offset: usize,
    pub defect: ProtoDefect,
}

impl fmt::Display for ProtoDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoDefect::Truncated => write!(f, "message ends inside a field"),
            ProtoDefect::VarintOverflow => write!(f, "varint longer than 64 bits"),
            ProtoDefect::BadFieldNumber(n) => write!(f, "invalid field number {n}"),
            ProtoDefect::BadWireType(t) => write!(f, "unsupported wire type {t}"),
            ProtoDefect::WrongWireType { field, wire_type } => {
                write!(f, "field {field} has wire type {wire_type}")
            }
        }
    }
}

fn err(offset: usize, defect: ProtoDefect) -> ProtoError {
    ProtoError { offset, defect }
}

/// Decodes the varint at `buf[pos..]`: its value and the position after it.
pub fn read_varint(buf: &[u8], pos: usize) -> Result<(u64, usize), ProtoError> {
    let mut value = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let at = pos.saturating_add(i);
        let b = *buf.get(at).ok_or(err(at, ProtoDefect::Truncated))?;
        if i == MAX_VARINT_LEN - 1 && b > 1 {
            return Err(err(at, ProtoDefect::VarintOverflow));
        }
        value |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, at + 1));
        }
    }
    Err(err(pos, ProtoDefect::VarintOverflow))
}

/// A field's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    pub fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => WIRE_VARINT,
            WireValue::Fixed64(_) => WIRE_FIXED64,
            WireValue::Bytes(_) => WIRE_LEN,
            WireValue::Fixed32(_) => WIRE_FIXED32,
        }
    }
}

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u32,
    pub value: WireValue<'a>,
    /// Offset of the field's tag in the message.
    pub offset: usize,
}

impl<'a> Field<'a> {
    fn wrong(&self) -> ProtoError {
        err(
            self.offset,
            ProtoDefect::WrongWireType {
                field: self.number,
                wire_type: self.value.wire_type(),
            },
        )
    }

    /// The payload of a varint field (int32, int64, uint32, uint64, bool, enum).
    pub fn varint(&self) -> Result<u64, ProtoError> {
        match self.value {
            WireValue::Varint(v) => Ok(v),
            _ => Err(self.wrong()),
        }
    }

    /// An int64 field: the varint's 64 bits as two's complement.
    pub fn int64(&self) -> Result<i64, ProtoError> {
        self.varint().map(|v| v as i64)
    }

    /// An int32 or enum field: the low 32 bits (as Go's generated code truncates).
    pub fn int32(&self) -> Result<i32, ProtoError> {
        self.varint().map(|v| v as i32)
    }

    pub fn bool(&self) -> Result<bool, ProtoError> {
        self.varint().map(|v| v != 0)
    }

    /// A bytes, string or embedded message field.
    pub fn bytes(&self) -> Result<&'a [u8], ProtoError> {
        match self.value {
            WireValue::Bytes(b) => Ok(b),
            _ => Err(self.wrong()),
        }
    }
}

/// The fields of a message, in order. Stops after the first error.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            pos: 0,
            failed: false,
        }
    }

    fn field(&mut self) -> Result<Field<'a>, ProtoError> {
        let offset = self.pos;
        let (tag, pos) = read_varint(self.buf, self.pos)?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(err(offset, ProtoDefect::BadFieldNumber(number)));
        }
        let fixed = |len: usize| -> Result<(&'a [u8], usize), ProtoError> {
            let end = pos
                .checked_add(len)
                .filter(|e| *e <= self.buf.len())
                .ok_or(err(pos, ProtoDefect::Truncated))?;
            Ok((self.buf.get(pos..end).unwrap_or_default(), end))
        };
        let (value, next) = match (tag & 7) as u8 {
            WIRE_VARINT => {
                let (v, next) = read_varint(self.buf, pos)?;
                (WireValue::Varint(v), next)
            }
            WIRE_FIXED64 => {
                let (b, next) = fixed(8)?;
                let a: [u8; 8] = b.try_into().map_err(|_| err(pos, ProtoDefect::Truncated))?;
                (WireValue::Fixed64(u64::from_le_bytes(a)), next)
            }
            WIRE_FIXED32 => {
                let (b, next) = fixed(4)?;
                let a: [u8; 4] = b.try_into().map_err(|_| err(pos, ProtoDefect::Truncated))?;
                (WireValue::Fixed32(u32::from_le_bytes(a)), next)
            }
            WIRE_LEN => {
                let (len, start) = read_varint(self.buf, pos)?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| start.checked_add(l))
                    .filter(|e| *e <= self.buf.len())
                    .ok_or(err(start, ProtoDefect::Truncated))?;
                (
                    WireValue::Bytes(self.buf.get(start..end).unwrap_or_default()),
                    end,
                )
            }
            other => return Err(err(offset, ProtoDefect::BadWireType(other))),
        };
        self.pos = next;
        Ok(Field {
            // ≤ 2²⁹ − 1.
            number: number as u32,
            value,
            offset,
        })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.field();
        self.failed = r.is_err();
        Some(r)
    }
}

/// Encoding helpers, for tests and fixtures built in code.
#[cfg(test)]
pub(crate) mod encode {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn int(out: &mut Vec<u8>, field: u32, v: i64) {
        varint(out, u64::from(field) << 3);
        varint(out, v as u64);
    }

    pub fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        varint(out, (u64::from(field) << 3) | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(read_varint(&[0], 0), Ok((0, 1)));
        assert_eq!(read_varint(&[0xAC, 0x02], 0), Ok((300, 2)));
        let mut max = vec![0xFF; 9];
        max.push(0x01);
        assert_eq!(read_varint(&max, 0), Ok((u64::MAX, 10)));
        max[9] = 0x02;
        assert_eq!(
            read_varint(&max, 0).unwrap_err().defect,
            ProtoDefect::VarintOverflow
        );
        assert_eq!(
            read_varint(&[0x80, 0x80], 0).unwrap_err(),
            err(2, ProtoDefect::Truncated)
        );
        let mut e = Vec::new();
        encode::varint(&mut e, (-1i64) as u64);
        assert_eq!(e.len(), 10);
        assert_eq!(read_varint(&e, 0), Ok((u64::MAX, 10)));
    }

    #[test]
    fn fields_of_every_wire_type() {
        let mut m = Vec::new();
        encode::int(&mut m, 2, -5);
        encode::bytes(&mut m, 1, b"abc");
        m.extend_from_slice(&[(3 << 3) | 1, 1, 0, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&[(4 << 3) | 5, 2, 0, 0, 0]);
        let f: Vec<_> = Fields::new(&m).collect::<Result<_, _>>().unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!((f[0].number, f[0].int64()), (2, Ok(-5)));
        assert_eq!(f[1].bytes(), Ok(&b"abc"[..]));
        assert_eq!(f[2].value, WireValue::Fixed64(1));
        assert_eq!(f[3].value, WireValue::Fixed32(2));
        assert!(matches!(
            f[1].varint().unwrap_err().defect,
            ProtoDefect::WrongWireType {
                field: 1,
                wire_type: 2
            }
        ));
    }

    #[test]
    fn malformed() {
        let first_error = |m: &[u8]| Fields::new(m).find_map(Result::err).map(|e| e.defect);
        assert_eq!(first_error(&[0x0A, 5, b'a']), Some(ProtoDefect::Truncated));
        assert_eq!(
            first_error(&[0x00, 1]),
            Some(ProtoDefect::BadFieldNumber(0))
        );
        assert_eq!(first_error(&[0x0B]), Some(ProtoDefect::BadWireType(3)));
        assert_eq!(first_error(&[0x09, 1, 2]), Some(ProtoDefect::Truncated));
        let huge_len = [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F];
        assert_eq!(first_error(&huge_len), Some(ProtoDefect::Truncated));
        // After an error, nothing more.
        let mut it = Fields::new(&[0x0B, 0x08, 0x01]);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }
}
