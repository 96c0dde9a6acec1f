//! Connection settings and the one-client-per-endpoint connect.
//!
//! A client over several endpoints load-balances its calls, so a status or snapshot call would land on an
//! arbitrary member; cpkeep therefore always builds one client per endpoint.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use super::error::describe_client_error;
use super::{Endpoint, EtcdError, TlsMaterial};

/// etcd user name and password. The password never appears in Debug output or errors.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything needed to reach the cluster, already validated.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    pub endpoints: Vec<Endpoint>,
    pub tls: Option<TlsMaterial>,
    pub credentials: Option<Credentials>,
    /// Bound on each request, connection set-up included.
    pub timeout: Duration,
}

/// Connects to one endpoint. With credentials, etcd authenticates during connect, so a wrong password
/// fails here, naming the endpoint.
pub async fn connect(endpoint: &Endpoint, opts: &ConnectionOptions) -> Result<Client, EtcdError> {
    connect_with(endpoint, opts, false).await
}

/// Connects to one endpoint for a long-lived watch: with `hasleader` metadata, so that a member
/// cut off from its leader ends the stream ("etcdserver: no leader") instead of going quiet, and
/// the watcher moves to another member.
pub async fn connect_require_leader(
    endpoint: &Endpoint,
    opts: &ConnectionOptions,
) -> Result<Client, EtcdError> {
    connect_with(endpoint, opts, true).await
}

async fn connect_with(
    endpoint: &Endpoint,
    opts: &ConnectionOptions,
    require_leader: bool,
) -> Result<Client, EtcdError> {
    let mut co = ConnectOptions::new()
        .with_require_leader(require_leader)
        .with_connect_timeout(opts.timeout)
        .with_timeout(opts.timeout)
        // Keep-alives make a member that stops answering mid-stream (SIGSTOP, a dead peer) visible.
        .with_keep_alive(Duration::from_secs(10), opts.timeout);
    if endpoint.is_tls() {
        let tls = opts.tls.as_ref().filter(|t| t.has_ca()).ok_or_else(|| {
            EtcdError::Config(format!(
                "{endpoint} uses https but no CA certificate is configured: pass --cacert \
                 (kubeadm: /etc/kubernetes/pki/etcd/ca.crt)"
            ))
        })?;
        co = co.with_tls(tls.options());
    }
    if let Some(c) = &opts.credentials {
        co = co.with_user(c.user.clone(), c.password.clone());
    }
    let url = endpoint.to_string();
    match tokio::time::timeout(opts.timeout, Client::connect([url.as_str()], Some(co))).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(EtcdError::Request {
            endpoint: url,
            cause: describe_client_error(&e),
        }),
        Err(_) => Err(EtcdError::Timeout {
            endpoint: url,
            operation: "connect",
            after: opts.timeout,
        }),
    }
}

/// Runs one request until `deadline`, mapping failures to [`EtcdError`]; `budget` is the timeout the
/// user set, named in the error.
pub(crate) async fn request<T, F>(
    endpoint: &Endpoint,
    operation: &'static str,
    deadline: tokio::time::Instant,
    budget: Duration,
    fut: F,
) -> Result<T, EtcdError>
where
    F: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(EtcdError::Request {
            endpoint: endpoint.to_string(),
            cause: describe_client_error(&e),
        }),
        Err(_) => Err(EtcdError::Timeout {
            endpoint: endpoint.to_string(),
            operation,
            after: budget,
        }),
    }
}
