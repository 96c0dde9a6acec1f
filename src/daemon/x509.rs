//! The certs job's `x509_*` series on `/metrics`: the samples the node-exporter textfile holds
//! ([`crate::certs::prometheus::samples`]), with x509-certificate-exporter's names and labels, so a
//! cluster without node-exporter's textfile collector gets the same alerts from the daemon. Each run
//! replaces the whole set: a certificate that was removed or renewed away leaves no stale series.
//! Never reads certificates itself.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::certs::prometheus::{
    Sample, SourceErrors, GAUGES, READ_ERRORS, SOURCE_ERRORS_HELP, SOURCE_NAME,
};

type Labels = Vec<(String, String)>;

pub struct X509Series {
    /// One family per entry of [`GAUGES`], in its order.
    gauges: Vec<Family<Labels, Gauge>>,
    read_errors: Gauge,
    source_errors: Family<Labels, Counter>,
}

impl X509Series {
    pub fn register(r: &mut Registry) -> Self {
        let gauges: Vec<Family<Labels, Gauge>> = GAUGES.iter().map(|_| Family::default()).collect();
        for ((name, help), family) in GAUGES.iter().zip(&gauges) {
            r.register(*name, *help, family.clone());
        }
        let read_errors = Gauge::default();
        r.register(READ_ERRORS.0, READ_ERRORS.1, read_errors.clone());
        let source_errors = Family::<Labels, Counter>::default();
        // The encoder adds `_total`: exposed as x509_source_errors_total, as the exporter names it.
        r.register(
            "x509_source_errors",
            SOURCE_ERRORS_HELP,
            source_errors.clone(),
        );
        X509Series {
            gauges,
            read_errors,
            source_errors,
        }
    }

    /// Replaces the gauges with one run's samples and adds its failed files to the counter.
    pub fn update(&self, samples: &[Sample], read_errors: u64, errors: &SourceErrors) {
        for ((name, _), family) in GAUGES.iter().zip(&self.gauges) {
            family.clear();
            for s in samples.iter().filter(|s| s.family == *name) {
                family.get_or_create(&s.labels).set(s.value);
            }
        }
        self.read_errors
            .set(i64::try_from(read_errors).unwrap_or(i64::MAX));
        for ((kind, reason), n) in errors {
            let labels = vec![
                ("reason".to_string(), reason.clone()),
                ("source_kind".to_string(), kind.clone()),
                ("source_name".to_string(), SOURCE_NAME.to_string()),
            ];
            self.source_errors.get_or_create(&labels).inc_by(*n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(family: &'static str, path: &str, value: i64) -> Sample {
        Sample {
            family,
            labels: vec![("filepath".to_string(), path.to_string())],
            value,
        }
    }

    fn encode(r: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, r).unwrap();
        out
    }

    #[test]
    fn each_run_replaces_the_gauges_and_adds_to_the_error_counter() {
        let mut r = Registry::default();
        let x = X509Series::register(&mut r);
        let errors: SourceErrors = [(("file".to_string(), "unreadable".to_string()), 1)].into();
        x.update(
            &[
                sample("x509_cert_not_after", "/pki/old.crt", 100),
                sample("x509_cert_not_after", "/pki/ca.crt", 200),
            ],
            1,
            &errors,
        );
        x.update(
            &[sample("x509_cert_not_after", "/pki/ca.crt", 300)],
            1,
            &errors,
        );
        let text = encode(&r);
        assert!(
            text.contains("x509_cert_not_after{filepath=\"/pki/ca.crt\"} 300"),
            "{text}"
        );
        assert!(!text.contains("old.crt"), "a stale series stayed:\n{text}");
        assert!(text.contains("x509_read_errors 1"), "{text}");
        assert!(
            text.contains("x509_source_errors_total{reason=\"unreadable\",source_kind=\"file\",source_name=\"cpkeep-certs-check\"} 2"),
            "{text}"
        );
    }
}
