//! etcd's snapshot integrity trailer: the stream is the bbolt file followed by the 32-byte sha256 of
//! that file. [`TrailerCheck`] hashes everything but the last 32 bytes seen so far, so the check is
//! done on the fly without knowing where the stream ends.

use sha2::{Digest, Sha256};

/// Length of the sha256 trailer etcd appends.
pub const TRAILER_LEN: usize = 32;

/// Splits a stream into db bytes and the trailer, hashing the db bytes.
#[derive(Default)]
pub struct TrailerCheck {
    hasher: Sha256,
    hold: Vec<u8>,
    db_len: u64,
}

/// What the stream held once it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailerOutcome {
    /// Bytes before the trailer.
    pub db_len: u64,
    /// sha256 of those bytes.
    pub computed: [u8; 32],
    /// The last 32 bytes of the stream, or `None` if it was shorter than that.
    pub trailer: Option<[u8; 32]>,
}

impl TrailerOutcome {
    /// Whether the stream ended with the sha256 of what came before it.
    pub fn matches(&self) -> bool {
        self.trailer == Some(self.computed)
    }
}

impl TrailerCheck {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the stream; `db` receives the bytes now known to precede the trailer.
    pub fn update(&mut self, data: &[u8], mut db: impl FnMut(&[u8])) {
        if data.len() >= TRAILER_LEN {
            let (body, tail) = data.split_at(data.len() - TRAILER_LEN);
            if !self.hold.is_empty() {
                let held = std::mem::take(&mut self.hold);
                self.release(&held, &mut db);
            }
            self.release(body, &mut db);
            self.hold.extend_from_slice(tail);
        } else {
            let total = self.hold.len() + data.len();
            if total > TRAILER_LEN {
                let spill = total - TRAILER_LEN;
                let released: Vec<u8> = self.hold.drain(..spill).collect();
                self.release(&released, &mut db);
            }
            self.hold.extend_from_slice(data);
        }
    }

    fn release(&mut self, bytes: &[u8], db: &mut impl FnMut(&[u8])) {
        self.hasher.update(bytes);
        self.db_len += bytes.len() as u64;
        db(bytes);
    }

    /// Ends the stream.
    pub fn finish(self) -> TrailerOutcome {
        let trailer = <[u8; 32]>::try_from(self.hold.as_slice()).ok();
        TrailerOutcome {
            db_len: self.db_len,
            computed: self.hasher.finalize().into(),
            trailer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(db: &[u8]) -> Vec<u8> {
        let mut s = db.to_vec();
        s.extend_from_slice(&Sha256::digest(db));
        s
    }

    #[test]
    fn any_chunking_finds_the_trailer() {
        let db: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let s = stream(&db);
        for chunk in [1, 5, 31, 32, 33, 4096, s.len()] {
            let mut c = TrailerCheck::new();
            let mut seen = Vec::new();
            for part in s.chunks(chunk) {
                c.update(part, |b| seen.extend_from_slice(b));
            }
            let out = c.finish();
            assert!(out.matches(), "chunk {chunk}");
            assert_eq!(out.db_len, db.len() as u64);
            assert_eq!(seen, db);
        }
    }

    #[test]
    fn corrupted_or_short_streams_do_not_match() {
        let db = vec![1u8; 5000];
        let mut s = stream(&db);
        s[100] ^= 1;
        let mut c = TrailerCheck::new();
        c.update(&s, |_| {});
        assert!(!c.finish().matches());
        let mut c = TrailerCheck::new();
        c.update(&s[..20], |_| {});
        let out = c.finish();
        assert_eq!(out.trailer, None);
        assert!(!out.matches());
    }
}
