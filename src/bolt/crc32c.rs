//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as Go's `crc32.MakeTable(crc32.Castagnoli)`
//! computes it: what `etcdutl snapshot status` reports as the hash. Slicing-by-8 over tables built
//! at compile time: about 1.5 GB/s in software, no dependency and no unsafe code.

const POLY: u32 = 0x82F6_3B78;

/// TABLES[0] is the classic byte-at-a-time table; TABLES[k][b] is the CRC of byte b followed by
/// k zero bytes, which lets eight bytes be folded at once.
const TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// A running CRC-32C.
#[derive(Debug, Clone, Copy)]
pub struct Crc32c {
    /// The state before the final inversion.
    state: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c { state: u32::MAX }
    }
}

impl Crc32c {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.state;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let lo = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ c;
            let hi = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            c = TABLES[7][(lo & 0xFF) as usize]
                ^ TABLES[6][((lo >> 8) & 0xFF) as usize]
                ^ TABLES[5][((lo >> 16) & 0xFF) as usize]
                ^ TABLES[4][(lo >> 24) as usize]
                ^ TABLES[3][(hi & 0xFF) as usize]
                ^ TABLES[2][((hi >> 8) & 0xFF) as usize]
                ^ TABLES[1][((hi >> 16) & 0xFF) as usize]
                ^ TABLES[0][(hi >> 24) as usize];
        }
        for b in chunks.remainder() {
            c = TABLES[0][((c ^ u32::from(*b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.state = c;
    }

    pub fn sum(&self) -> u32 {
        self.state ^ u32::MAX
    }
}

/// CRC-32C of `bytes`.
pub fn checksum(bytes: &[u8]) -> u32 {
    let mut c = Crc32c::new();
    c.update(bytes);
    c.sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytewise(bytes: &[u8]) -> u32 {
        let mut c = u32::MAX;
        for b in bytes {
            c = TABLES[0][((c ^ u32::from(*b)) & 0xFF) as usize] ^ (c >> 8);
        }
        c ^ u32::MAX
    }

    #[test]
    fn check_values() {
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
        assert_eq!(checksum(b""), 0);
        // RFC 3720 B.4: 32 bytes of zeros, of 0xFF.
        assert_eq!(checksum(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(checksum(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn slicing_matches_bytewise_for_any_split() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 999, 1000] {
            assert_eq!(checksum(&data[..len]), bytewise(&data[..len]), "{len}");
        }
        for split in [0, 1, 5, 8, 13, 500] {
            let mut c = Crc32c::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.sum(), bytewise(&data), "split {split}");
        }
    }
}
