//! Body of the `revlog_read` fuzz target (`fuzz/`, cargo-fuzz), kept in the library so that a
//! plain test runs it over seeds and mutations too. It must never panic, whatever the input, and
//! stays bounded: the reader grows memory only with the bytes it is given.

use super::segment::{read_segment, SegmentReader, SegmentWriter};

/// `revlog_read`: read the bytes as a segment, record by record and whole; both must agree. What
/// reads as a valid segment must be written back, record for record, into the same bytes (the
/// format has one encoding per content) and report the same summary.
pub fn revlog_read(data: &[u8]) {
    let whole = read_segment(data);
    let mut count = 0usize;
    if let Ok(mut reader) = SegmentReader::new(data) {
        for r in reader.by_ref() {
            if r.is_err() {
                break;
            }
            count += 1;
        }
        if let Ok(seg) = &whole {
            assert_eq!(
                count,
                seg.revisions.len(),
                "iteration and whole read differ"
            );
            assert_eq!(reader.summary(), Some(&seg.summary));
        }
    }
    let Ok(seg) = whole else { return };
    let mut w = SegmentWriter::new(Vec::new()).unwrap_or_else(|e| panic!("writer: {e}"));
    for r in &seg.revisions {
        w.append(r.revision, r.received_at, &r.events)
            .unwrap_or_else(|e| panic!("a record the reader accepted was refused: {e}"));
    }
    let (bytes, summary) = w
        .finish(seg.leases.as_ref())
        .unwrap_or_else(|e| panic!("finish: {e}"));
    // KeyValues with unknown or repeated fields decode to the same content but re-encode shorter,
    // so the plaintext's size and hash may change; the content must survive.
    let claims = |s: &super::SegmentSummary| {
        (
            s.first_revision,
            s.last_revision,
            s.event_count,
            s.first_event_time,
            s.last_event_time,
            s.has_leases,
        )
    };
    assert_eq!(
        claims(&summary),
        claims(&seg.summary),
        "rewritten summary differs"
    );
    let again = read_segment(&bytes[..]).unwrap_or_else(|e| panic!("rewritten segment: {e}"));
    assert_eq!(again.revisions, seg.revisions);
    assert_eq!(again.leases, seg.leases);
}

#[cfg(test)]
mod tests {
    use super::revlog_read;

    /// The committed seeds plus deterministic mutations (bit flips, inserted bytes, truncation).
    #[test]
    fn revlog_read_survives_seeds_and_mutations() {
        let seeds = crate::mutate::seeds("revlog_read");
        assert!(!seeds.is_empty());
        let mut rng = crate::mutate::XorShift::new(0x005E_ED0F_1065);
        let specials = b"\0\x01\x02\x03\xff\x7f\x80";
        for seed in &seeds {
            assert!(
                super::read_segment(&seed[..]).is_ok(),
                "a seed must be a valid segment"
            );
            revlog_read(seed);
        }
        for i in 0..5000 {
            let input = crate::mutate::mutate(&seeds[i % seeds.len()], specials, &mut rng);
            revlog_read(&input);
        }
    }
}
