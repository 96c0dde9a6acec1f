//! The human table of `cluster health`'s doctor checks: consistency, fragmentation, metrics, version
//! skew, served certificates and raft agreement, one block each, under the member table. Only
//! renders; the checks' verdicts are the report's findings.

use super::table::Table;
use crate::certs::check::short_human_duration;
use crate::etcd::DoctorReport;
use crate::units::human_bytes;

/// The doctor blocks, each only when its check measured something.
pub fn doctor_table(d: &DoctorReport) -> String {
    let mut s = String::new();
    if let Some(c) = &d.consistency {
        match (&c.error, c.revision) {
            (Some(e), _) => s.push_str(&format!("consistency: not checked ({e})\n")),
            (None, rev) => {
                let majority = c
                    .majority_hash
                    .map(|h| format!("{h:08x}"))
                    .unwrap_or_else(|| "none".to_string());
                s.push_str(&format!(
                    "consistency at revision {} (compacted at {}, {} attempt(s)): majority hash {majority}\n",
                    rev.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                    c.compact_revision
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into()),
                    c.attempts
                ));
                let mut t = Table::new(["  MEMBER", "HASH", "SAME AS MAJORITY"]);
                for m in &c.members {
                    t.row([
                        format!("  {}", m.member),
                        m.hash
                            .map(|h| format!("{h:08x}"))
                            .unwrap_or_else(|| m.error.clone().unwrap_or_default()),
                        match (m.hash, c.majority_hash) {
                            (Some(h), Some(g)) if h == g => "yes".to_string(),
                            (Some(_), Some(_)) => "NO".to_string(),
                            _ => "-".to_string(),
                        },
                    ]);
                }
                s.push_str(&t.render());
            }
        }
    }
    if !d.fragmentation.is_empty() {
        let list: Vec<String> = d
            .fragmentation
            .iter()
            .map(|f| {
                format!(
                    "{} {:.0}% of {} in use{}",
                    f.member,
                    f.in_use_ratio * 100.0,
                    human_bytes(f.db_size),
                    if f.fragmented { " (FRAGMENTED)" } else { "" }
                )
            })
            .collect();
        s.push_str(&format!("fragmentation: {}\n", list.join(", ")));
    }
    if !d.metrics.is_empty() {
        let secs = |v: Option<f64>| {
            v.map(|x| format!("{:.1} ms", x * 1000.0))
                .unwrap_or_else(|| "-".into())
        };
        let num = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        let mut t = Table::new([
            "METRICS",
            "WAL FSYNC P99",
            "COMMIT P99",
            "PEER RTT P99",
            "LEADER CHANGES",
            "FAILED PROPOSALS",
            "URL",
        ]);
        for m in &d.metrics {
            let who = m.member.clone().unwrap_or_else(|| "-".into());
            if let Some(e) = &m.error {
                t.row([
                    who,
                    format!("unreadable: {e}"),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    m.url.clone(),
                ]);
            } else {
                t.row([
                    who,
                    secs(m.wal_fsync_p99_seconds),
                    secs(m.backend_commit_p99_seconds),
                    secs(m.peer_round_trip_p99_seconds),
                    num(m.leader_changes),
                    num(m.proposals_failed),
                    m.url.clone(),
                ]);
            }
        }
        s.push_str(&t.render());
        s.push_str(
            "(p99 over each member's life: its histograms are cumulative since it started)\n",
        );
    }
    if !d.version_skew.minor_versions.is_empty() {
        s.push_str(&format!(
            "versions: {}{}\n",
            d.version_skew.minor_versions.join(", "),
            match (d.version_skew.skewed, d.version_skew.upgrading) {
                (true, true) => " (SKEWED, upgrading)",
                (true, false) => " (SKEWED)",
                _ => "",
            }
        ));
    }
    if !d.served_certs.is_empty() {
        let mut t = Table::new([
            "SERVED CERTIFICATE",
            "KIND",
            "EXPIRES",
            "RESIDUAL",
            "STATUS",
            "ON DISK",
            "URL",
        ]);
        for c in &d.served_certs {
            t.row([
                c.member.clone(),
                c.kind.to_string(),
                c.not_after
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_else(|| c.error.clone().unwrap_or_default()),
                c.residual_seconds
                    .map(short_human_duration)
                    .unwrap_or_else(|| "-".into()),
                c.status
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "-".into()),
                match c.matches_disk {
                    Some(true) => "same".to_string(),
                    Some(false) => "DIFFERS".to_string(),
                    None => "-".to_string(),
                },
                c.url.clone(),
            ]);
        }
        s.push_str(&t.render());
    }
    let r = &d.raft;
    if !r.terms.is_empty() {
        let again = if r.reprobed { " (asked twice)" } else { "" };
        match r.agreed_term {
            Some(t) => s.push_str(&format!("raft: every healthy member on term {t}{again}\n")),
            None => {
                let list: Vec<String> = r.terms.iter().map(|(m, t)| format!("{m} {t}")).collect();
                s.push_str(&format!("raft: terms differ: {}{again}\n", list.join(", ")));
            }
        }
    }
    s
}
