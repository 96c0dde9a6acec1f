//! The demo's doctor step: one value changed in a follower's database while it was stopped, the
//! member started again; it serves the altered value, `cluster health` without the consistency
//! check still says OK, and `cluster health --check-consistency` names that member CRITICAL with
//! its hash and the majority's. Renders its own lines; the demo only calls it.

use anyhow::Context;
use etcd_client::GetOptions;
use serde::Serialize;

use super::exit::{Exit, ExitError};
use crate::etcd::{
    connect, examine, Check, ConnectionOptions, DoctorOptions, FragmentationOptions, HealthOptions,
    HealthReport, MetricThresholds, ServedCertOptions, Verdict,
};
use crate::sandbox::Sandbox;

const KEY: &str = "/registry/secrets/kube-system/demo-doctor";
const ORIGINAL: &str = "demo-doctor-ORIGINAL-value";
const ALTERED: &str = "demo-doctor-TAMPERED-value";

#[derive(Debug, Serialize)]
pub struct DemoDoctor {
    /// The follower whose db was altered.
    pub member: String,
    pub key: String,
    /// What a serializable read on that member returned afterwards.
    pub served_value: String,
    /// `cluster health` without `--check-consistency`.
    pub without_check: Verdict,
    /// `cluster health --check-consistency`.
    pub health: HealthReport,
}

impl DemoDoctor {
    /// The step showed what it should: the altered value served, invisible to the plain check,
    /// caught (CRITICAL, exactly that member) by the consistency check.
    pub fn check(&self) -> Result<(), ExitError> {
        let named: Vec<&str> = self
            .health
            .findings
            .iter()
            .filter(|f| f.check == Some(Check::Consistency))
            .filter_map(|f| f.member.as_deref())
            .collect();
        if self.served_value == ALTERED
            && self.without_check == Verdict::Ok
            && self.health.verdict == Verdict::Critical
            && named == [self.member.as_str()]
        {
            return Ok(());
        }
        Err(ExitError {
            code: Exit::Warning,
            message: format!(
                "demo doctor: {} served {:?}, plain check {}, consistency check {} naming {named:?}; expected {ALTERED:?}, OK, CRITICAL naming [{:?}]",
                self.member,
                self.served_value,
                self.without_check.as_str(),
                self.health.verdict.as_str(),
                self.member
            ),
        })
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "{KEY} changed in {}'s db file while it was stopped ({ORIGINAL} -> {ALTERED}); started again, it serves {:?}\n\
             `cpkeep cluster health`: {}\n\
             `cpkeep cluster health --check-consistency`: {}\n",
            self.member,
            self.served_value,
            self.without_check.as_str(),
            self.health.verdict.as_str()
        );
        for f in self
            .health
            .findings
            .iter()
            .filter(|f| f.check == Some(Check::Consistency))
        {
            s.push_str(&format!("  {:<8}  {}\n", f.severity.as_str(), f.message));
        }
        s
    }
}

/// Runs the step on a healthy 3-member sandbox.
pub async fn doctor_step(
    sandbox: &mut Sandbox,
    conn: &ConnectionOptions,
) -> anyhow::Result<DemoDoctor> {
    let mut client = connect(&conn.endpoints[0], conn).await?;
    client
        .put(KEY, ORIGINAL, None)
        .await
        .context("demo doctor: write failed")?;
    let victim = sandbox.follower().await?;
    let member = sandbox.members()[victim].name.clone();
    sandbox
        .alter_value_while_stopped(victim, ORIGINAL.as_bytes(), ALTERED.as_bytes())
        .await
        .context("demo doctor: altering the stopped member's db failed")?;
    let url = sandbox.members()[victim].client_url(sandbox.tls());
    let one = sandbox.connection_to(&[url], conn.timeout)?;
    let served = connect(&one.endpoints[0], &one)
        .await?
        .get(KEY, Some(GetOptions::new().with_serializable()))
        .await?;
    let served_value = served
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .unwrap_or_default();
    let mut opts = DoctorOptions {
        consistency: false,
        consistency_timeout: std::time::Duration::from_secs(60),
        fragmentation: FragmentationOptions::default(),
        metrics_urls: Vec::new(),
        metric_thresholds: MetricThresholds::default(),
        upgrading: false,
        served_certs: ServedCertOptions {
            warn: chrono::Duration::days(30),
            critical: chrono::Duration::days(7),
            now: chrono::Utc::now(),
            pki_dir: None,
            timeout: conn.timeout,
        },
    };
    let health = HealthOptions::default();
    let without_check = examine(conn, true, &health, &opts).await.verdict;
    opts.consistency = true;
    let health = examine(conn, true, &health, &opts).await;
    Ok(DemoDoctor {
        member,
        key: KEY.to_string(),
        served_value,
        without_check,
        health,
    })
}
