//! Reading each member's Prometheus `/metrics` (plain HTTP, as kubeadm's `--listen-metrics-urls
//! http://127.0.0.1:2381` serves it) and reducing it to the few series `cluster health` judges: WAL
//! fsync and backend commit p99, peer round-trip p99, leader changes, failed proposals.
//!
//! The text format is parsed by `prometheus-parse`; the p99 comes from the cumulative histogram
//! buckets (`findings::quantile`), so it covers the member's whole life. A member whose metrics
//! cannot be read is not a failure of the run: its entry carries the error and the verdict is
//! computed without it. This module never prints and never judges (see `findings`).

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use http_body_util::Full;
use hyper::{header, Request};
use prometheus_parse::{Scrape, Value};

use super::findings::{label, quantile, MemberMetrics};
use super::report::MemberHealth;
use crate::http1::{exchange_body, HttpFailure};

/// kubeadm's etcd metrics port (`--listen-metrics-urls=http://127.0.0.1:2381`).
pub const KUBEADM_METRICS_PORT: u16 = 2381;

/// The largest /metrics body read (etcd's is ~100 KiB; a bigger one is not an etcd member's).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// A `--metrics-urls` value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MetricsUrlError {
    #[error("--metrics-urls: {url:?} is not a URL: {reason}")]
    NotUrl { url: String, reason: String },
    #[error("--metrics-urls: {url:?} is not http:// (etcd serves its metrics listener over plain HTTP; use --listen-metrics-urls=http://...)")]
    NotHttp { url: String },
}

/// Checks `--metrics-urls` values: http URLs with a host; a bare `http://host:port` means its
/// `/metrics`.
pub fn parse_metrics_urls(list: &[String]) -> Result<Vec<url::Url>, MetricsUrlError> {
    list.iter()
        .map(|raw| {
            let mut u = url::Url::parse(raw.trim()).map_err(|e| MetricsUrlError::NotUrl {
                url: raw.clone(),
                reason: e.to_string(),
            })?;
            if u.scheme() != "http" {
                return Err(MetricsUrlError::NotHttp { url: raw.clone() });
            }
            if u.host_str().is_none_or(str::is_empty) {
                return Err(MetricsUrlError::NotUrl {
                    url: raw.clone(),
                    reason: "no host".to_string(),
                });
            }
            if u.path() == "/" || u.path().is_empty() {
                u.set_path("/metrics");
            }
            Ok(u)
        })
        .collect()
}

/// One URL to scrape: the URL, whether it was guessed, and the member it belongs to when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: url::Url,
    pub guessed: bool,
    pub member: Option<String>,
}

/// Which URLs to scrape: the given ones (each named after the member whose client URL or answering
/// endpoint has its host), or, when none is given, kubeadm's metrics port on each healthy member
/// reached on a loopback address — through the endpoint that answered for it (kubeadm's default
/// `https://127.0.0.1:2379` reaches the local member, which advertises the node's address) or an
/// advertised client URL. Only there can the local listener on 127.0.0.1:2381 be meant.
pub fn targets(given: &[url::Url], members: &[MemberHealth]) -> Vec<Target> {
    let hosts = |m: &MemberHealth| -> Vec<String> {
        m.endpoint
            .iter()
            .chain(&m.client_urls)
            .filter_map(|u| url::Url::parse(u).ok())
            .filter_map(|u| u.host_str().map(str::to_string))
            .collect()
    };
    if !given.is_empty() {
        return given
            .iter()
            .map(|u| Target {
                url: u.clone(),
                guessed: false,
                member: members
                    .iter()
                    .find(|m| hosts(m).iter().any(|h| Some(h.as_str()) == u.host_str()))
                    .map(label),
            })
            .collect();
    }
    let mut out: Vec<Target> = Vec::new();
    for m in members.iter().filter(|m| m.healthy) {
        let Some(host) = hosts(m).into_iter().find(|h| is_loopback(h)) else {
            continue;
        };
        if let Ok(url) = url::Url::parse(&format!("http://{host}:{KUBEADM_METRICS_PORT}/metrics")) {
            if !out.iter().any(|t| t.url == url) {
                out.push(Target {
                    url,
                    guessed: true,
                    member: Some(label(m)),
                });
            }
        }
    }
    out
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Scrapes every target in parallel, each bounded by `timeout`.
pub async fn scrape_all(targets: &[Target], timeout: Duration) -> Vec<MemberMetrics> {
    join_all(targets.iter().map(|t| async move {
        let mut entry = match tokio::time::timeout(timeout, fetch(&t.url)).await {
            Ok(Ok(text)) => summarize(&text),
            Ok(Err(e)) => MemberMetrics {
                error: Some(e),
                ..MemberMetrics::default()
            },
            Err(_) => MemberMetrics {
                error: Some(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                )),
                ..MemberMetrics::default()
            },
        };
        entry.member = t.member.clone();
        entry.url = t.url.to_string();
        entry.guessed = t.guessed;
        entry
    }))
    .await
}

async fn fetch(url: &url::Url) -> Result<String, String> {
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let stream =
        tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .map_err(|e| crate::certs::error::io_reason(&e))?;
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let request = Request::get(target)
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::USER_AGENT, format!("cpkeep/{}", crate::VERSION))
        .header(header::ACCEPT, "text/plain")
        .header(header::CONNECTION, "close")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let (status, body) = exchange_body(stream, request, MAX_BODY)
        .await
        .map_err(|f| match f {
            HttpFailure::NoAnswer(e) => format!("no answer: {e}"),
            HttpFailure::NotHttp => "not an HTTP answer".to_string(),
        })?;
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    String::from_utf8(body.to_vec()).map_err(|_| "the answer is not text".to_string())
}

/// The series `cluster health` judges, from one member's /metrics text. A text with none of etcd's
/// series is an error: the URL is not an etcd member's metrics.
pub fn summarize(text: &str) -> MemberMetrics {
    let scrape = match Scrape::parse(text.lines().map(|l| Ok(l.to_string()))) {
        Ok(s) => s,
        Err(e) => {
            return MemberMetrics {
                error: Some(format!("not Prometheus text: {e}")),
                ..MemberMetrics::default()
            }
        }
    };
    // A histogram may have several series (peer round trips: one per peer): their buckets add up.
    let merged = |name: &str| -> Option<Vec<(f64, f64)>> {
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let mut any = false;
        for s in scrape.samples.iter().filter(|s| s.metric == name) {
            if let Value::Histogram(h) = &s.value {
                any = true;
                for b in h {
                    match buckets.iter_mut().find(|(le, _)| *le == b.less_than) {
                        Some((_, c)) => *c += b.count,
                        None => buckets.push((b.less_than, b.count)),
                    }
                }
            }
        }
        any.then_some(buckets)
    };
    let counter = |name: &str| -> Option<u64> {
        let mut total = None;
        for s in scrape.samples.iter().filter(|s| s.metric == name) {
            if let Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) = s.value {
                *total.get_or_insert(0.0) += v;
            }
        }
        total.map(|t: f64| t.max(0.0) as u64)
    };
    let p99 = |name: &str| merged(name).and_then(|b| quantile(0.99, &b));
    let m = MemberMetrics {
        wal_fsync_p99_seconds: p99("etcd_disk_wal_fsync_duration_seconds"),
        backend_commit_p99_seconds: p99("etcd_disk_backend_commit_duration_seconds"),
        peer_round_trip_p99_seconds: p99("etcd_network_peer_round_trip_time_seconds"),
        leader_changes: counter("etcd_server_leader_changes_seen_total"),
        proposals_failed: counter("etcd_server_proposals_failed_total"),
        ..MemberMetrics::default()
    };
    if m.leader_changes.is_none() && m.wal_fsync_p99_seconds.is_none() {
        return MemberMetrics {
            error: Some("no etcd series in the answer (is this an etcd member's /metrics?)".into()),
            ..MemberMetrics::default()
        };
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarizes_a_real_etcd_scrape() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/metrics-etcd-3.5.30/metrics.txt"
        ))
        .unwrap();
        let m = summarize(&text);
        assert_eq!(m.error, None);
        assert_eq!(m.leader_changes, Some(1));
        assert_eq!(m.proposals_failed, Some(0));
        // 6 fsyncs, the slowest between 4 and 8 ms: the p99 is inside that bucket.
        let wal = m.wal_fsync_p99_seconds.unwrap();
        assert!(wal > 0.004 && wal <= 0.008, "{wal}");
        assert!(m.backend_commit_p99_seconds.is_some());
    }

    #[test]
    fn a_page_without_etcd_series_is_an_error() {
        let m = summarize("# TYPE up gauge\nup 1\n");
        assert!(m.error.unwrap().contains("no etcd series"));
    }

    fn member(name: &str, endpoint: Option<&str>, client: &str) -> MemberHealth {
        let mut m = crate::etcd::test_probes::healthy_member(name, name);
        m.endpoint = endpoint.map(str::to_string);
        m.client_urls = vec![client.into()];
        m
    }

    #[test]
    fn kubeadm_metrics_are_guessed_only_for_members_reached_on_loopback() {
        let members = [
            // kubeadm: reached through https://127.0.0.1:2379, advertising the node's address.
            member(
                "cp1",
                Some("https://127.0.0.1:2379"),
                "https://10.0.0.1:2379",
            ),
            member(
                "cp2",
                Some("https://10.0.0.2:2379"),
                "https://10.0.0.2:2379",
            ),
        ];
        let t = targets(&[], &members);
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t[0].url.as_str(), "http://127.0.0.1:2381/metrics");
        assert!(t[0].guessed);
        assert_eq!(t[0].member.as_deref(), Some("cp1"));
        // Given URLs are all taken, named by host.
        let given =
            parse_metrics_urls(&["http://10.0.0.2:2381".into(), "http://10.9.9.9:2381".into()])
                .unwrap();
        let t = targets(&given, &members);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].member.as_deref(), Some("cp2"));
        assert_eq!(t[1].member, None);
        assert!(!t[0].guessed);
    }

    #[test]
    fn metrics_urls_are_checked() {
        let ok = parse_metrics_urls(&["http://127.0.0.1:2381".into()]).unwrap();
        assert_eq!(ok[0].as_str(), "http://127.0.0.1:2381/metrics");
        let e = parse_metrics_urls(&["https://10.0.0.1:2379/metrics".into()]).unwrap_err();
        assert!(e.to_string().contains("is not http://"), "{e}");
        let e = parse_metrics_urls(&["127.0.0.1:2381".into()]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--metrics-urls: \"127.0.0.1:2381\""),
            "{e}"
        );
    }
}
