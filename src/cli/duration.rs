//! Durations on the command line: humantime's syntax (`30s`, `2m`, `1h30m`), checked when the
//! arguments are parsed, so that a value that can only fail later (a zero timeout) is refused
//! before any work starts.

use std::time::Duration;

/// A duration that must be more than zero (timeouts: zero would fail at the first wait).
pub(super) fn positive(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 2m, 5m)"))?;
    if d.is_zero() {
        return Err("must be more than zero (examples: 30s, 2m, 5m)".to_string());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::positive;
    use std::time::Duration;

    #[test]
    fn zero_is_refused() {
        assert_eq!(positive("90s"), Ok(Duration::from_secs(90)));
        for zero in ["0s", "0", "0ms"] {
            assert!(
                positive(zero).unwrap_err().contains("more than zero"),
                "{zero}"
            );
        }
        assert!(positive("soon").is_err());
    }
}
