//! The node-exporter textfile of a [`CheckReport`]: `x509_cert_not_after`, `x509_cert_not_before`
//! (unix seconds) and `x509_cert_expired` (0/1) gauges with x509-certificate-exporter's label names —
//! `filename`, `filepath`, `serial_number` (decimal), `subject_CN`, `subject_O`, `issuer_CN`,
//! `issuer_O`, and for certificates embedded in a kubeconfig `embedded_kind="user"` and
//! `embedded_key=<user name>` — so dashboards and alert rules written for that exporter work unchanged.
//!
//! Files that could not be read or used are counted with that exporter's names too: `x509_cert_error`
//! (1 per certificate file that could not be read or parsed), `x509_read_errors` (v3: how many files
//! failed in this check) and `x509_source_errors_total{source_kind, source_name, reason}` (v4: a
//! counter). A textfile is rewritten by every check, so the counter carries the previous file's values
//! forward and adds this check's: `increase(x509_source_errors_total[…]) > 0` then fires while a file
//! keeps failing, as it does on the exporter.
//!
//! This module renders text and writes it atomically through [`crate::fsx::write_atomic`]; it never
//! prints and never deletes anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::check::{CertState, CertStatus, CheckReport};
use super::error::CertsError;
use crate::fsx::{write_atomic, MODE_PUBLIC};

struct Family {
    name: &'static str,
    help: &'static str,
    value: fn(&CertStatus, &CheckReport) -> Option<i64>,
}

const FAMILIES: [Family; 3] = [
    Family {
        name: "x509_cert_not_after",
        help: "Indicates the certificate's not after timestamp",
        value: |s, _| s.labels.as_ref().map(|l| l.not_after.timestamp()),
    },
    Family {
        name: "x509_cert_not_before",
        help: "Indicates the certificate's not before timestamp",
        value: |s, _| s.labels.as_ref().map(|l| l.not_before.timestamp()),
    },
    Family {
        name: "x509_cert_expired",
        help: "Indicates if the certificate is expired",
        value: |s, r| {
            s.labels
                .as_ref()
                .map(|l| i64::from(r.checked_at >= l.not_after))
        },
    },
];

/// The `source_name` of the error counter's series (the exporter names its configured sources).
pub const SOURCE_NAME: &str = "cpkeep-certs-check";

const SOURCE_ERRORS: &str = "x509_source_errors_total";

/// Error counts by (`source_kind`, `reason`).
pub type SourceErrors = BTreeMap<(String, String), u64>;

/// The exposition text (Prometheus text format 0.0.4) of a report, as the first textfile written:
/// the error counter holds only this check's errors.
pub fn render(report: &CheckReport) -> String {
    render_after(report, &SourceErrors::new())
}

/// The gauge families of a report, name and help, in exposition order.
pub const GAUGES: [(&str, &str); 4] = [
    (FAMILIES[0].name, FAMILIES[0].help),
    (FAMILIES[1].name, FAMILIES[1].help),
    (FAMILIES[2].name, FAMILIES[2].help),
    (CERT_ERROR, CERT_ERROR_HELP),
];
const CERT_ERROR: &str = "x509_cert_error";
const CERT_ERROR_HELP: &str = "Indicates the certificate file could not be read or parsed";
/// The gauge of how many files failed in this check (exporter v3's name).
pub const READ_ERRORS: (&str, &str) = (
    "x509_read_errors",
    "Indicates the number of files that could not be read or parsed",
);
/// The counter of files that failed, by source kind and reason (exporter v4's name).
pub const SOURCE_ERRORS_HELP: &str =
    "Number of files that could not be read or parsed, by reason, over the checks that rewrote this file";

/// One gauge sample of a report: its family (one of [`GAUGES`]), its labels sorted by name, its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub family: &'static str,
    pub labels: Vec<(String, String)>,
    pub value: i64,
}

/// Every gauge sample of a report, family by family in [`GAUGES`] order: the textfile's series and
/// the daemon's `/metrics` x509 series are both made from these.
pub fn samples(report: &CheckReport) -> Vec<Sample> {
    let mut out = Vec::new();
    let owned = |s: &CertStatus| {
        labels(s)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Vec<_>>()
    };
    for family in &FAMILIES {
        for s in report.all() {
            if let Some(value) = (family.value)(s, report) {
                out.push(Sample {
                    family: family.name,
                    labels: owned(s),
                    value,
                });
            }
        }
    }
    for s in report.all().filter(|s| unusable_certificate(s)) {
        out.push(Sample {
            family: CERT_ERROR,
            labels: owned(s),
            value: 1,
        });
    }
    out
}

/// This check's failed files, counted by (`source_kind`, `reason`).
pub fn source_errors(report: &CheckReport) -> SourceErrors {
    let mut out = SourceErrors::new();
    for p in &report.problems {
        *out.entry((
            p.source_kind.as_str().to_string(),
            p.reason.as_str().to_string(),
        ))
        .or_default() += p.count as u64;
    }
    out
}

/// The exposition text of a report whose error counter continues from `previous`.
pub fn render_after(report: &CheckReport, previous: &SourceErrors) -> String {
    let mut out = String::new();
    let samples = samples(report);
    for (name, help) in GAUGES {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in samples.iter().filter(|s| s.family == name) {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect::<Vec<_>>()
                .join(",");
            let _ = writeln!(out, "{name}{{{labels}}} {}", s.value);
        }
    }
    let (name, help) = READ_ERRORS;
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {}", report.problem_total());
    let mut totals = previous.clone();
    for (key, n) in source_errors(report) {
        *totals.entry(key).or_default() += n;
    }
    if !totals.is_empty() {
        let _ = writeln!(out, "# HELP {SOURCE_ERRORS} {SOURCE_ERRORS_HELP}");
        let _ = writeln!(out, "# TYPE {SOURCE_ERRORS} counter");
        for ((kind, reason), n) in &totals {
            let _ = writeln!(
                out,
                "{SOURCE_ERRORS}{{reason=\"{}\",source_kind=\"{}\",source_name=\"{SOURCE_NAME}\"}} {n}",
                escape(reason),
                escape(kind)
            );
        }
    }
    out
}

/// A row whose certificate could not be read or parsed (not one whose key is the problem).
fn unusable_certificate(s: &CertStatus) -> bool {
    s.labels.is_none() && matches!(s.status, CertState::Unreadable | CertState::Error)
}

/// The error counts of a textfile this module wrote before (`x509_source_errors_total` series of
/// [`SOURCE_NAME`]). Lines it does not recognise are ignored: at worst the counter starts again,
/// which Prometheus reads as a counter reset.
pub fn previous_source_errors(text: &str) -> SourceErrors {
    let mut out = SourceErrors::new();
    for line in text.lines() {
        let Some(rest) = line
            .strip_prefix(SOURCE_ERRORS)
            .and_then(|r| r.strip_prefix('{'))
        else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        // Our own values never hold quotes, commas or escapes: a plain split reads them back.
        let label = |name: &str| {
            labels.split(',').find_map(|kv| {
                kv.strip_prefix(name)
                    .and_then(|v| v.strip_prefix("=\""))
                    .and_then(|v| v.strip_suffix('"'))
            })
        };
        if label("source_name") != Some(SOURCE_NAME) {
            continue;
        }
        if let (Some(kind), Some(reason)) = (label("source_kind"), label("reason")) {
            *out.entry((kind.to_string(), reason.to_string()))
                .or_default() += value;
        }
    }
    out
}

/// Writes the report's text to `path` atomically (mode 0644), as node-exporter's textfile collector
/// expects: it never sees a half-written file. The error counter continues from the file it replaces.
pub fn write_textfile(report: &CheckReport, path: &Path) -> Result<(), CertsError> {
    // An absent or unreadable old file only restarts the counter.
    let previous = std::fs::read_to_string(path)
        .map(|t| previous_source_errors(&t))
        .unwrap_or_default();
    write_atomic(
        path,
        render_after(report, &previous).as_bytes(),
        MODE_PUBLIC,
    )
    .map_err(|error| CertsError::Write {
        path: path.to_path_buf(),
        error,
    })
}

/// The labels of one series, sorted by name. Empty values are left out, as the exporter does.
fn labels(s: &CertStatus) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    let path = Path::new(&s.path);
    m.insert("filepath", s.path.clone());
    if let Some(f) = path.file_name() {
        m.insert("filename", f.to_string_lossy().into_owned());
    }
    if let Some(l) = &s.labels {
        m.insert("serial_number", l.serial_decimal.clone());
        for (key, value) in [
            ("subject_CN", &l.subject_cn),
            ("subject_O", &l.subject_o),
            ("issuer_CN", &l.issuer_cn),
            ("issuer_O", &l.issuer_o),
        ] {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                m.insert(key, v.clone());
            }
        }
        if s.embedded {
            m.insert("embedded_kind", "user".to_string());
            if let Some(user) = l.kubeconfig_user.as_ref().filter(|u| !u.is_empty()) {
                m.insert("embedded_key", user.clone());
            }
        }
    }
    m
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn reads_back_its_own_error_counter_only() {
        let text = "# TYPE x509_source_errors_total counter\n\
            x509_source_errors_total{reason=\"permission_denied\",source_kind=\"file\",source_name=\"cpkeep-certs-check\"} 3\n\
            x509_source_errors_total{reason=\"bad_pem\",source_kind=\"kubeconfig\",source_name=\"cpkeep-certs-check\"} 1\n\
            x509_source_errors_total{reason=\"bad_pem\",source_kind=\"file\",source_name=\"other\"} 7\n\
            x509_source_errors_total{reason=\"read_failed\",source_kind=\"file\",source_name=\"cpkeep-certs-check\"} x\n\
            x509_read_errors 4\n";
        let got = previous_source_errors(text);
        let want: SourceErrors = [
            (("file".to_string(), "permission_denied".to_string()), 3),
            (("kubeconfig".to_string(), "bad_pem".to_string()), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
    }
}
