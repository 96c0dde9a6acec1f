//! Sizes as operators write and read them: `2GiB` in, `1.9 GiB` out; counts of things as they read
//! them: `1 file`, `2 files`.

/// `n` and the noun in the number it takes: `1 file`, `0 files`, `2 files`.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Bytes in binary units with one decimal, as operators read db sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Parses a byte size: a plain number, or with a unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB; K, M,
/// G, T are binary), case-insensitive, a space allowed before the unit, a decimal fraction allowed
/// (`1.5MiB`). Integer arithmetic throughout: exact, a fraction of a byte dropped, and a size
/// beyond 2^64-1 bytes an error (never silently the largest number).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let not_a_size = || format!("{s:?} is not a size (examples: 2GiB, 500MB, 8589934592)");
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let (whole, fraction) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(not_a_size());
    }
    let mult: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
            ))
        }
    };
    let too_large = || format!("{s:?} is too large (at most {} bytes)", u64::MAX);
    // Digits beyond 38 overflow u128 anyway; the size would not fit u64 long before.
    let digits = |d: &str| -> Result<u128, String> {
        if d.is_empty() {
            return Ok(0);
        }
        d.parse::<u128>().map_err(|_| too_large())
    };
    let bytes = digits(whole)?.checked_mul(mult).ok_or_else(too_large)?;
    // The fraction, exactly: fraction digits × unit / 10^digits (fractions of a byte dropped).
    let fraction = fraction.get(..fraction.len().min(24)).unwrap_or_default();
    let part = if fraction.is_empty() {
        0
    } else {
        let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| not_a_size())?);
        digits(fraction)?.checked_mul(mult).ok_or_else(too_large)? / scale
    };
    let total = bytes.checked_add(part).ok_or_else(too_large)?;
    u64::try_from(total).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(super::counted(1, "problem", "problems"), "1 problem");
        assert_eq!(super::counted(0, "file", "files"), "0 files");
        assert_eq!(super::counted(2, "file", "files"), "2 files");
    }

    use super::{human_bytes, parse_bytes};

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_bytes("8589934592").unwrap(), 8589934592);
        assert_eq!(parse_bytes("1.5 MiB").unwrap(), 1572864);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
        for (text, want) in [
            ("500MB", 500_000_000),
            ("8MiB", 8 << 20),
            ("5 mib", 5 << 20),
            ("1k", 1024),
            ("0.5KB", 500),
            ("1.1KiB", 1126),
            (".5 KiB", 512),
            ("16TiB", 16 << 40),
            ("18446744073709551615", u64::MAX),
            ("16777215.999999 TiB", 18_446_744_073_708_452_104),
        ] {
            assert_eq!(parse_bytes(text), Ok(want), "{text}");
        }
        // Beyond u64: an error, never the largest number.
        for text in [
            "18446744073709551616",
            "16777216TiB",
            "20000000TB",
            "99999999999999999999999999999999999999999999GiB",
        ] {
            let e = parse_bytes(text).unwrap_err();
            assert!(e.contains("too large"), "{text}: {e}");
        }
        for text in ["", ".", "1.2.3MiB", "MiB", "-1"] {
            assert!(parse_bytes(text).is_err(), "{text}");
        }
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
    }
}
