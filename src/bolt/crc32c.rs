//! CRC-32 Castagnoli, the checksum `etcdutl snapshot status` reports as the snapshot's hash, through
//! the `crc32c` crate (SSE 4.2 / ARMv8 CRC instructions when the CPU has them, which makes hashing a
//! 1 GiB snapshot ~10× faster than a table). A thin streaming wrapper so callers need not know.

/// A running CRC-32C.
#[derive(Debug, Clone, Copy, Default)]
pub struct Crc32c {
    state: u32,
}

impl Crc32c {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes to the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        self.state = crc32c::crc32c_append(self.state, bytes);
    }

    /// The checksum of everything added so far.
    pub fn sum(&self) -> u32 {
        self.state
    }
}

/// The CRC-32C of `bytes`.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
        assert_eq!(checksum(b""), 0);
        // RFC 3720 B.4: 32 bytes of zeros, of 0xFF.
        assert_eq!(checksum(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(checksum(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn streaming_equals_one_shot_for_any_split() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for split in [0, 1, 5, 8, 13, 500, 1000] {
            let mut c = Crc32c::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.sum(), checksum(&data), "split {split}");
        }
    }
}
