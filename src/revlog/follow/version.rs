//! Which etcd releases `backup --follow` trusts. Before 3.5.13 and 3.4.31 a slow watcher could lose
//! events after a compaction (docs/research/issue16-revision-log.md §2.4): the log would then hold
//! a hole that looks like nothing happened, the one failure it must never have. Pure: no I/O.

/// Whether the watch of etcd `version` (as Status reports it, `3.5.30`) keeps every event.
/// Unparsable versions are not trusted.
pub fn watch_is_trustworthy(version: &str) -> bool {
    let mut parts = version
        .trim()
        .trim_start_matches('v')
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>());
    let (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    match (major, minor) {
        (3, 4) => patch >= 31,
        (3, 5) => patch >= 13,
        (3, m) => m > 5,
        (m, _) => m > 3,
    }
}

#[cfg(test)]
mod tests {
    use super::watch_is_trustworthy;

    #[test]
    fn releases_with_the_compaction_fix_are_trusted() {
        for ok in [
            "3.5.13", "3.5.30", "3.4.31", "3.4.37", "3.6.0", "v3.6.5", "4.0.0",
        ] {
            assert!(watch_is_trustworthy(ok), "{ok}");
        }
        for bad in [
            "3.5.12", "3.4.23", "3.4.30", "3.3.27", "2.3.8", "", "3.5", "x.y.z",
        ] {
            assert!(!watch_is_trustworthy(bad), "{bad}");
        }
    }
}
