//! The node-exporter textfile of a [`CheckReport`]: `x509_cert_not_after`, `x509_cert_not_before`
//! (unix seconds) and `x509_cert_expired` (0/1) gauges with x509-certificate-exporter's label names —
//! `filename`, `filepath`, `serial_number` (decimal), `subject_CN`, `subject_O`, `issuer_CN`,
//! `issuer_O`, and for certificates embedded in a kubeconfig `embedded_kind="user"` and
//! `embedded_key=<user name>` — so dashboards and alert rules written for that exporter work unchanged.
//!
//! This module renders text and writes it atomically through [`crate::fsx::write_atomic`]; it never
//! prints and never deletes anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::check::{CertStatus, CheckReport};
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

/// The exposition text (Prometheus text format 0.0.4) for every certificate and CA that was read.
pub fn render(report: &CheckReport) -> String {
    let mut out = String::new();
    for family in &FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} gauge", family.name);
        for s in report.all() {
            let Some(value) = (family.value)(s, report) else {
                continue;
            };
            let labels = labels(s)
                .into_iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(&v)))
                .collect::<Vec<_>>()
                .join(",");
            let _ = writeln!(out, "{}{{{labels}}} {value}", family.name);
        }
    }
    out
}

/// Writes [`render`]'s text to `path` atomically (mode 0644), as node-exporter's textfile collector
/// expects: it never sees a half-written file.
pub fn write_textfile(report: &CheckReport, path: &Path) -> Result<(), CertsError> {
    write_atomic(path, render(report).as_bytes(), MODE_PUBLIC).map_err(|source| CertsError::Write {
        path: path.to_path_buf(),
        error: source,
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
    use super::escape;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
