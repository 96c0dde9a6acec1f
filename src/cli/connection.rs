//! The connection flags shared by every command that talks to etcd, each with a CPKEEP_* variable, and
//! their validation into [`ConnectionOptions`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::etcd::{ConnectionOptions, Credentials, Endpoint, EtcdError, TlsFiles, TlsMaterial};

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// etcd client URLs, comma separated. Members found in the member list are asked too.
    #[arg(
        long,
        env = "CPKEEP_ENDPOINTS",
        value_delimiter = ',',
        default_value = "https://127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,

    /// CA certificate of the etcd members [default: <pki-dir>/etcd/ca.crt when it exists]
    #[arg(long, env = "CPKEEP_CACERT")]
    pub cacert: Option<PathBuf>,

    /// Client certificate [default: <pki-dir>/etcd/healthcheck-client.crt when it exists]
    #[arg(long, env = "CPKEEP_CERT")]
    pub cert: Option<PathBuf>,

    /// Client key [default: <pki-dir>/etcd/healthcheck-client.key when it exists]
    #[arg(long, env = "CPKEEP_KEY")]
    pub key: Option<PathBuf>,

    /// kubeadm's PKI directory, where the TLS defaults are looked up.
    #[arg(long, env = "CPKEEP_PKI_DIR", default_value = "/etc/kubernetes/pki")]
    pub pki_dir: PathBuf,

    /// Bound on each request to each member, connection included (e.g. 5s, 500ms).
    #[arg(long, env = "CPKEEP_TIMEOUT", default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// etcd user name (or user:password) when etcd authentication is on.
    #[arg(long, env = "CPKEEP_USER")]
    pub user: Option<String>,

    /// etcd password; prefer the CPKEEP_PASSWORD variable, which `ps` does not show.
    #[arg(long, env = "CPKEEP_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 5s, 500ms, 1m)"))?;
    if d.is_zero() {
        return Err("must be more than zero".to_string());
    }
    // A sub-millisecond deadline expires before any connection could be made: a typo (1us for 1s).
    if d < Duration::from_millis(1) {
        return Err(format!(
            "{} is below a millisecond, too short for any member to answer (examples: 5s, 500ms)",
            humantime::format_duration(d)
        ));
    }
    Ok(d)
}

impl ConnectionArgs {
    /// Reads the TLS files and validates every flag, before anything connects.
    pub fn resolve(&self) -> Result<ConnectionOptions, EtcdError> {
        let defaults = TlsFiles::kubeadm_defaults(&self.pki_dir);
        let (cert, key) = match (&self.cert, &self.key) {
            (None, None) => (defaults.cert, defaults.key),
            (c, k) => (c.clone(), k.clone()),
        };
        let files = TlsFiles {
            ca: self.cacert.clone().or(defaults.ca),
            cert,
            key,
        };
        let tls = if files.any() {
            Some(TlsMaterial::load(&files)?)
        } else {
            None
        };
        // Endpoints without a scheme speak TLS when TLS material is configured, as on a kubeadm node.
        let endpoints = Endpoint::parse_list(&self.endpoints, tls.is_some())?;
        let credentials =
            match (&self.user, &self.password) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(EtcdError::Config(
                        "--password given without --user".to_string(),
                    ))
                }
                (Some(u), Some(p)) => Some(Credentials {
                    user: u.clone(),
                    password: p.clone(),
                }),
                (Some(u), None) => match u.split_once(':') {
                    Some((user, pass)) if !user.is_empty() => Some(Credentials {
                        user: user.to_string(),
                        password: pass.to_string(),
                    }),
                    _ => return Err(EtcdError::Config(
                        "--user needs a password: set CPKEEP_PASSWORD or pass --user name:password"
                            .to_string(),
                    )),
                },
            };
        Ok(ConnectionOptions {
            endpoints,
            tls,
            credentials,
            timeout: self.timeout,
        })
    }
}
