//! The S3 store (aws-sdk-s3): AWS S3 or any S3-compatible server (MinIO, SeaweedFS, Ceph RGW).
//!
//! Keys are relative to the store's prefix (`prefix/key`). A large object goes up as a multipart upload
//! with a fixed part size and a bounded number of parts in flight, so a writer holds at most
//! `part_size × (max_in_flight + 1)` bytes; an object no larger than one part is a single PutObject and
//! never opens a multipart upload. Any failure while writing aborts the multipart upload, so nothing is
//! left pending except when a writer is dropped without `finish` or `abort`.
//!
//! Requests are retried with exponential backoff on throttling, 5xx and transport errors, and bounded by
//! per-attempt and per-operation timeouts. Errors carry the operation, the key and the server's code and
//! message (never the SDK's multi-kilobyte dump, never credentials).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use super::{
    ObjectInfo, ObjectReader, ObjectStore, ObjectWriter, PendingUpload, PutReceipt, StoreError,
};

const MIB: usize = 1024 * 1024;
/// Part size when [`S3Options::part_size`] is 0.
pub const DEFAULT_PART_SIZE: usize = 16 * MIB;
/// The smallest part S3 accepts (all parts but the last).
pub const MIN_PART_SIZE: usize = 5 * MIB;
/// The largest part S3 accepts.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's limit on parts per upload.
const MAX_PARTS: i32 = 10_000;
/// Parts in flight when [`S3Options::max_in_flight`] is 0.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
const MAX_IN_FLIGHT_LIMIT: usize = 64;
/// Attempts per request (the first one included) of [`S3Store::config_loader`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(900);
/// Longest cause chain kept in an error message.
const MAX_CAUSE_CHARS: usize = 400;

/// Settings of an S3 store beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Custom endpoint (MinIO, SeaweedFS, Ceph…), e.g. `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most non-AWS servers.
    pub path_style: bool,
    /// PEM bundle of extra CAs to trust for the endpoint.
    pub ca_bundle: Option<std::path::PathBuf>,
    /// Server-side encryption: `AES256` or `aws:kms`.
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub storage_class: Option<String>,
    /// Multipart part size in bytes (at least 5 MiB).
    pub part_size: usize,
    /// Parts uploaded concurrently.
    pub max_in_flight: usize,
    /// Attempts per request, the first one included (0: the SDK settings', 5 by default).
    /// Throttling, 5xx answers, timeouts and transport errors are retried with exponential backoff.
    pub max_attempts: u32,
    /// Delay before the first retry (`None`: the SDK settings', 1 s by default); it doubles with each
    /// retry, up to 20 s, with jitter.
    pub initial_backoff: Option<Duration>,
    /// TCP and TLS connect timeout (`None`: the SDK settings', 10 s by default).
    pub connect_timeout: Option<Duration>,
    /// Limit on one attempt of a request, until its response headers (`None`: 5 min by default).
    pub attempt_timeout: Option<Duration>,
    /// Limit on a request with all its retries (`None`: 15 min by default).
    pub operation_timeout: Option<Duration>,
}

/// The options, checked and with defaults applied.
#[derive(Debug)]
struct Resolved {
    part_size: usize,
    max_in_flight: usize,
    sse: Option<ServerSideEncryption>,
    sse_kms_key_id: Option<String>,
    storage_class: Option<StorageClass>,
    ca_pem: Option<Vec<u8>>,
}

impl S3Options {
    /// Checks every setting (and reads the CA bundle) without contacting the server.
    pub fn validate(&self) -> Result<(), StoreError> {
        self.resolve().map(|_| ())
    }

    fn resolve(&self) -> Result<Resolved, StoreError> {
        let cfg = |m: String| StoreError::Config(m);
        let part_size = match self.part_size {
            0 => DEFAULT_PART_SIZE,
            n if n < MIN_PART_SIZE => {
                return Err(cfg(format!(
                    "S3 part size {n} bytes is below the 5 MiB ({MIN_PART_SIZE} bytes) S3 requires"
                )))
            }
            n if n as u64 > MAX_PART_SIZE => {
                return Err(cfg(format!(
                    "S3 part size {n} bytes is above the 5 GiB S3 allows"
                )))
            }
            n => n,
        };
        let max_in_flight = match self.max_in_flight {
            0 => DEFAULT_MAX_IN_FLIGHT,
            n if n > MAX_IN_FLIGHT_LIMIT => {
                return Err(cfg(format!(
                    "{n} S3 parts in flight is too many (at most {MAX_IN_FLIGHT_LIMIT})"
                )))
            }
            n => n,
        };
        let sse = match self.sse.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) if s.eq_ignore_ascii_case("AES256") => Some(ServerSideEncryption::Aes256),
            Some(s) if s.eq_ignore_ascii_case("aws:kms") => Some(ServerSideEncryption::AwsKms),
            Some(s) => {
                return Err(cfg(format!(
                    "unknown S3 server-side encryption {s:?}: use AES256 or aws:kms"
                )))
            }
        };
        let sse_kms_key_id = match self.sse_kms_key_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(k) if sse == Some(ServerSideEncryption::AwsKms) => Some(k.to_string()),
            Some(_) => {
                return Err(cfg(
                    "an S3 SSE KMS key ID needs server-side encryption aws:kms".to_string(),
                ))
            }
        };
        let storage_class = match self.storage_class.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => {
                let upper = s.to_ascii_uppercase();
                if !StorageClass::values().contains(&upper.as_str()) {
                    return Err(cfg(format!(
                        "unknown S3 storage class {s:?}: use one of {}",
                        StorageClass::values().join(", ")
                    )));
                }
                Some(StorageClass::from(upper.as_str()))
            }
        };
        if let Some(ep) = &self.endpoint {
            check_endpoint(ep)?;
        }
        if let Some(r) = &self.region {
            if r.trim().is_empty() || r.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(cfg(format!("invalid S3 region {r:?}")));
            }
        }
        if self.max_attempts > 20 {
            return Err(cfg(format!(
                "{} attempts per S3 request is too many (at most 20)",
                self.max_attempts
            )));
        }
        for (what, d) in [
            ("connect timeout", self.connect_timeout),
            ("attempt timeout", self.attempt_timeout),
            ("operation timeout", self.operation_timeout),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(cfg(format!("the S3 {what} must be above zero")));
            }
        }
        let ca_pem = match &self.ca_bundle {
            Some(path) => Some(read_ca_bundle(path)?),
            None => None,
        };
        Ok(Resolved {
            part_size,
            max_in_flight,
            sse,
            sse_kms_key_id,
            storage_class,
            ca_pem,
        })
    }
}

fn check_endpoint(ep: &str) -> Result<(), StoreError> {
    let bad = |why: &str| StoreError::Config(format!("invalid S3 endpoint {ep:?}: {why}"));
    let rest = ep
        .strip_prefix("https://")
        .or_else(|| ep.strip_prefix("http://"))
        .ok_or_else(|| bad("it must start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains('@') {
        return Err(bad("credentials do not belong in the endpoint URL"));
    }
    Ok(())
}

/// Reads a PEM bundle and checks it holds at least one certificate and that each is one the HTTPS
/// client accepts as a trust anchor (it panics on one it refuses).
fn read_ca_bundle(path: &Path) -> Result<Vec<u8>, StoreError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let pem = std::fs::read(path).map_err(|source| StoreError::Io {
        op: "read CA bundle",
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |why: String| StoreError::Config(format!("CA bundle {}: {why}", path.display()));
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".to_string()));
    }
    for (i, der) in certs.iter().enumerate() {
        check_trust_anchor(der).map_err(|why| {
            bad(format!(
                "certificate {} is not an X.509 certificate: {why}",
                i + 1
            ))
        })?;
    }
    Ok(pem)
}

/// Checks one certificate the way the HTTPS client will take it as a trust anchor
/// (`rustls::RootCertStore::add`, which the client unwraps: a certificate it refuses would panic
/// there instead of giving an error line).
fn check_trust_anchor(der: &rustls_pki_types::CertificateDer<'_>) -> Result<(), String> {
    tokio_rustls::rustls::RootCertStore::empty()
        .add(der.clone())
        .map_err(|e| e.to_string())
}

/// Checks a key relative to the store prefix: no empty, `.` or `..` segment, no leading slash.
fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(StoreError::Config(format!(
            "object key {key:?} is not a plain relative path"
        )))
    }
}

/// `prefix/key`, or `key` alone under an empty prefix.
fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    }
}

/// The key relative to `prefix`, for a full key under it.
fn relative_key<'a>(prefix: &str, full: &'a str) -> Option<&'a str> {
    if prefix.is_empty() {
        Some(full)
    } else {
        full.strip_prefix(prefix)?.strip_prefix('/')
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The error chain of `err` on one short line, repeated links dropped.
fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    let mut out = parts.join(": ");
    if out.chars().count() > MAX_CAUSE_CHARS {
        out = out.chars().take(MAX_CAUSE_CHARS).collect::<String>() + "…";
    }
    if out.is_empty() {
        "no details".to_string()
    } else {
        out
    }
}

/// Turns an SDK error into a short store error: operation, key, the server's code and message (or
/// the transport failure's cause chain). NoSuchKey and 404s become [`StoreError::NotFound`].
pub(crate) fn map_sdk_error<E>(
    store: &str,
    bucket: &str,
    op: &'static str,
    key: &str,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let remote = |code: &str, message: String| StoreError::Remote {
        store: store.to_string(),
        op,
        key: key.to_string(),
        code: code.to_string(),
        message,
    };
    let chain = |e: &SdkError<E, HttpResponse>| match std::error::Error::source(e) {
        Some(s) => cause_chain(s),
        None => cause_chain(e),
    };
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = err.code().map(str::to_string);
            let message = err
                .message()
                .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|m| !m.is_empty());
            match code.as_deref() {
                Some("NoSuchKey") => StoreError::NotFound {
                    store: store.to_string(),
                    key: key.to_string(),
                },
                Some("NoSuchBucket") => {
                    remote("NoSuchBucket", format!("bucket {bucket:?} does not exist"))
                }
                None | Some("NotFound") if status == 404 => StoreError::NotFound {
                    store: store.to_string(),
                    key: key.to_string(),
                },
                Some(code) => remote(
                    code,
                    message.unwrap_or_else(|| format!("HTTP {status}, no message")),
                ),
                None => remote(
                    &format!("HTTP {status}"),
                    message.unwrap_or_else(|| "no error code or message".to_string()),
                ),
            }
        }
        SdkError::TimeoutError(_) => remote("Timeout", chain(&err)),
        SdkError::DispatchFailure(d) => {
            let code = if d.is_timeout() {
                "Timeout"
            } else if d.is_io() {
                "ConnectionFailed"
            } else {
                "RequestFailed"
            };
            remote(code, chain(&err))
        }
        SdkError::ResponseError(_) => remote("BadResponse", chain(&err)),
        SdkError::ConstructionFailure(_) => remote("RequestFailed", chain(&err)),
        _ => remote("RequestFailed", chain(&err)),
    }
}

/// What the store and its writers share.
struct Shared {
    client: Client,
    bucket: String,
    prefix: String,
    url: String,
    part_size: usize,
    max_in_flight: usize,
    sse: Option<ServerSideEncryption>,
    sse_kms_key_id: Option<String>,
    storage_class: Option<StorageClass>,
}

impl Shared {
    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(join_key(&self.prefix, key))
    }

    /// The full listing prefix for a prefix relative to the store.
    fn full_prefix(&self, prefix: &str) -> Result<String, StoreError> {
        if prefix.starts_with('/') || prefix.split('/').any(|s| s == "." || s == "..") {
            return Err(StoreError::Config(format!(
                "listing prefix {prefix:?} is not a plain relative path"
            )));
        }
        Ok(if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{prefix}", self.prefix)
        })
    }

    fn err<E>(&self, op: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        map_sdk_error(&self.url, &self.bucket, op, key, e)
    }

    fn body_err(
        &self,
        op: &'static str,
        key: &str,
        e: &(dyn std::error::Error + 'static),
    ) -> StoreError {
        StoreError::Remote {
            store: self.url.clone(),
            op,
            key: key.to_string(),
            code: "ReadFailed".to_string(),
            message: cause_chain(e),
        }
    }

    async fn put_object(&self, key: &str, full: &str, bytes: Bytes) -> Result<(), StoreError> {
        let len = i64::try_from(bytes.len())
            .map_err(|_| StoreError::Failed(format!("object {key} is too large")))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .content_length(len)
            .body(ByteStream::from(bytes))
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.sse_kms_key_id.clone())
            .set_storage_class(self.storage_class.clone())
            .send()
            .await
            .map_err(|e| self.err("put", key, e))?;
        Ok(())
    }

    async fn abort_upload(&self, key: &str, full: &str, upload_id: &str) -> Result<(), StoreError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (completed, or aborted by someone else): nothing is left to free.
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(self.err("abort upload", key, e)),
        }
    }
}

/// An S3 bucket and prefix.
pub struct S3Store {
    shared: Arc<Shared>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("url", &self.shared.url)
            .field("part_size", &self.shared.part_size)
            .field("max_in_flight", &self.shared.max_in_flight)
            .finish()
    }
}

impl S3Store {
    /// Builds a client for `bucket` under `prefix` with the standard AWS credential chain and
    /// [`config_loader`](Self::config_loader)'s retries and timeouts. Nothing is sent to the server
    /// here: a missing bucket or wrong credentials show on the first request.
    pub async fn connect(bucket: &str, prefix: &str, opts: &S3Options) -> Result<Self, StoreError> {
        Self::connect_with(bucket, prefix, opts, Self::config_loader()).await
    }

    /// The SDK settings [`connect`](Self::connect) starts from: the latest behaviour version, the
    /// standard AWS chain for credentials (environment, shared profile, web identity / IRSA,
    /// container and instance roles), standard retries with exponential backoff and jitter (5
    /// attempts; throttling, 5xx answers, timeouts and transport errors are retried), a 10 s connect
    /// timeout, 5 min per attempt and 15 min per operation. Adjust it (static credentials, other
    /// timeouts) and pass it to [`connect_with`](Self::connect_with).
    pub fn config_loader() -> aws_config::ConfigLoader {
        aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(DEFAULT_MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
                    .operation_attempt_timeout(DEFAULT_ATTEMPT_TIMEOUT)
                    .operation_timeout(DEFAULT_OPERATION_TIMEOUT)
                    .build(),
            )
    }

    /// Like [`connect`](Self::connect), from SDK settings the caller prepared (static credentials,
    /// say). `opts` still decides the region (its own; else, with a custom endpoint, the
    /// environment's or the profile's, then `us-east-1`, never the instance metadata service's;
    /// else the loader's chain), the endpoint, path-style addressing, the extra CAs, and the retry
    /// and timeout settings it sets.
    pub async fn connect_with(
        bucket: &str,
        prefix: &str,
        opts: &S3Options,
        loader: aws_config::ConfigLoader,
    ) -> Result<Self, StoreError> {
        if bucket.is_empty() {
            return Err(StoreError::Config("empty S3 bucket name".to_string()));
        }
        let resolved = opts.resolve()?;
        let trimmed = prefix.trim_matches('/');
        if !trimmed.is_empty() {
            check_key(trimmed).map_err(|_| {
                StoreError::Config(format!("S3 prefix {prefix:?} is not a plain relative path"))
            })?;
        }
        let mut loader = loader;
        match (&opts.region, &opts.endpoint) {
            (Some(region), _) => loader = loader.region(Region::new(region.trim().to_string())),
            // A custom endpoint has no use for the instance metadata service's region: take the
            // environment's or the profile's, else us-east-1 (what MinIO and SeaweedFS expect).
            (None, Some(_)) => {
                loader = loader.region(
                    RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                        .or_else(ProfileFileRegionProvider::new())
                        .or_else(Region::from_static("us-east-1")),
                )
            }
            (None, None) => {}
        }
        if let Some(pem) = &resolved.ca_pem {
            loader = loader.http_client(https_client_trusting(pem.clone())?);
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(StoreError::Config(
                "no AWS region for the S3 store: set its region, AWS_REGION, or a region in the AWS \
                 profile"
                    .to_string(),
            ));
        }
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(opts.path_style);
        if opts.max_attempts != 0 || opts.initial_backoff.is_some() {
            let mut retry = sdk
                .retry_config()
                .cloned()
                .unwrap_or_else(RetryConfig::standard);
            if opts.max_attempts != 0 {
                retry = retry.with_max_attempts(opts.max_attempts);
            }
            if let Some(b) = opts.initial_backoff {
                retry = retry.with_initial_backoff(b);
            }
            conf = conf.retry_config(retry);
        }
        let timeouts = [
            opts.connect_timeout,
            opts.attempt_timeout,
            opts.operation_timeout,
        ];
        if timeouts.iter().any(Option::is_some) {
            let mut t = sdk
                .timeout_config()
                .map(|t| t.to_builder())
                .unwrap_or_else(TimeoutConfig::builder);
            if let Some(d) = opts.connect_timeout {
                t = t.connect_timeout(d);
            }
            if let Some(d) = opts.attempt_timeout {
                t = t.operation_attempt_timeout(d);
            }
            if let Some(d) = opts.operation_timeout {
                t = t.operation_timeout(d);
            }
            conf = conf.timeout_config(t.build());
        }
        if let Some(ep) = &opts.endpoint {
            // S3-compatible servers vary in their support of the newer flexible checksums (aws-chunked
            // trailers); send and check them only where the operation requires it. The snapshot
            // pipeline hashes what it stores anyway.
            conf = conf
                .endpoint_url(ep.trim_end_matches('/'))
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        Ok(Self::from_parts(
            Client::from_conf(conf.build()),
            bucket,
            prefix,
            resolved,
        ))
    }

    fn from_parts(client: Client, bucket: &str, prefix: &str, r: Resolved) -> Self {
        let prefix = prefix.trim_matches('/').to_string();
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Self {
            shared: Arc::new(Shared {
                client,
                bucket: bucket.to_string(),
                prefix,
                url,
                part_size: r.part_size,
                max_in_flight: r.max_in_flight,
                sse: r.sse,
                sse_kms_key_id: r.sse_kms_key_id,
                storage_class: r.storage_class,
            }),
        }
    }

    /// The multipart part size in use.
    pub fn part_size(&self) -> usize {
        self.shared.part_size
    }

    /// How many parts may be in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight
    }
}

/// The default HTTPS client (rustls with aws-lc, the platform's roots) also trusting the CAs of
/// `pem`, which [`read_ca_bundle`] has checked.
fn https_client_trusting(pem: Vec<u8>) -> Result<aws_sdk_s3::config::SharedHttpClient, StoreError> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};

    let context = TlsContext::builder()
        .with_trust_store(TrustStore::default().with_pem_certificate(pem))
        .build()
        .map_err(|e| StoreError::Config(format!("TLS settings for S3: {}", cause_chain(&e))))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

#[async_trait]
impl ObjectStore for S3Store {
    fn url(&self) -> String {
        self.shared.url.clone()
    }

    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let full_key = self.shared.full_key(key)?;
        Ok(Box::new(S3Writer {
            shared: Arc::clone(&self.shared),
            key: key.to_string(),
            full_key,
            buf: BytesMut::new(),
            size: 0,
            upload_id: None,
            next_part: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            spare: Vec::new(),
            failed: false,
        }))
    }

    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let full = self.shared.full_key(key)?;
        self.shared.put_object(key, &full, bytes).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let s = &self.shared;
        let full = s.full_key(key)?;
        let out = s
            .client
            .get_object()
            .bucket(&s.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| s.err("get", key, e))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| s.body_err("get", key, &e))?;
        Ok(body.into_bytes())
    }

    async fn open(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let s = &self.shared;
        let full = s.full_key(key)?;
        let out = s
            .client
            .get_object()
            .bucket(&s.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| s.err("open", key, e))?;
        Ok(Box::pin(out.body.into_async_read()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let s = &self.shared;
        let full_prefix = s.full_prefix(prefix)?;
        // Under a non-empty store prefix, list `prefix/…` only, not `prefix-other/…`.
        let query = if prefix.is_empty() && !s.prefix.is_empty() {
            format!("{}/", s.prefix)
        } else {
            full_prefix
        };
        let shown = format!("{prefix}*");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = s
                .client
                .list_objects_v2()
                .bucket(&s.bucket)
                .prefix(&query)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s.err("list", &shown, e))?;
            for o in page.contents() {
                let Some(rel) = o.key().and_then(|k| relative_key(&s.prefix, k)) else {
                    continue;
                };
                // Directory markers some servers report are not objects.
                if rel.is_empty() || rel.ends_with('/') {
                    continue;
                }
                out.push(ObjectInfo {
                    key: rel.to_string(),
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    modified: o.last_modified().and_then(to_chrono),
                });
            }
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(t)) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let s = &self.shared;
        let full = s.full_key(key)?;
        match s
            .client
            .delete_object()
            .bucket(&s.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match s.err("delete", key, e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let s = &self.shared;
        let full_prefix = s.full_prefix(prefix)?;
        let query = if prefix.is_empty() && !s.prefix.is_empty() {
            format!("{}/", s.prefix)
        } else {
            full_prefix
        };
        let shown = format!("{prefix}*");
        let mut out = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = s
                .client
                .list_multipart_uploads()
                .bucket(&s.bucket)
                .prefix(&query)
                .set_key_marker(markers.0.clone())
                .set_upload_id_marker(markers.1.clone())
                .send()
                .await
                .map_err(|e| s.err("list pending uploads", &shown, e))?;
            for u in page.uploads() {
                let (Some(full), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let Some(rel) = relative_key(&s.prefix, full) else {
                    continue;
                };
                out.push(PendingUpload {
                    key: rel.to_string(),
                    id: id.to_string(),
                    initiated: u.initiated().and_then(to_chrono),
                });
            }
            let next = (
                page.next_key_marker().map(str::to_string),
                page.next_upload_id_marker().map(str::to_string),
            );
            // Stop on the last page, and on a server that says "truncated" without moving on.
            if page.is_truncated() != Some(true) || next.0.is_none() || next == markers {
                break;
            }
            markers = next;
        }
        Ok(out)
    }

    async fn abort_pending(&self, upload: &PendingUpload) -> Result<(), StoreError> {
        let full = self.shared.full_key(&upload.key)?;
        self.shared
            .abort_upload(&upload.key, &full, &upload.id)
            .await
    }
}

/// A write in progress: buffers one part, uploads full parts in the background.
struct S3Writer {
    shared: Arc<Shared>,
    /// Key relative to the store prefix (for messages and the receipt).
    key: String,
    full_key: String,
    /// Bytes not yet handed to an upload; never more than one part.
    buf: BytesMut,
    size: u64,
    /// Set once the first part goes up.
    upload_id: Option<String>,
    next_part: i32,
    in_flight: JoinSet<Result<(CompletedPart, Bytes), StoreError>>,
    done: Vec<CompletedPart>,
    /// Part buffers back from finished uploads, reused so that parts cost no new allocations:
    /// allocating and freeing a multi-MiB buffer per part makes glibc keep them in its arenas and
    /// the process's RSS grow well past what is live.
    spare: Vec<BytesMut>,
    /// A write failed and the upload was aborted.
    failed: bool,
}

impl S3Writer {
    fn failed_error(&self) -> StoreError {
        StoreError::Failed(format!(
            "{}: {}: an earlier write failed and the upload was aborted",
            self.shared.url, self.key
        ))
    }

    async fn write_inner(&mut self, mut chunk: Bytes) -> Result<(), StoreError> {
        let part_size = self.shared.part_size;
        self.size += chunk.len() as u64;
        while !chunk.is_empty() {
            // A full buffer goes up only once more bytes follow: an object of exactly one part
            // stays a single PutObject.
            if self.buf.len() == part_size {
                let part = std::mem::take(&mut self.buf).freeze();
                self.send_part(part).await?;
            }
            if self.buf.is_empty() && chunk.len() > part_size {
                let part = chunk.split_to(part_size);
                self.send_part(part).await?;
                continue;
            }
            if self.buf.capacity() == 0 {
                match self.spare.pop() {
                    Some(b) => self.buf = b,
                    None => self.buf.reserve(part_size),
                }
            }
            let take = (part_size - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk.split_to(take));
        }
        // Report a failed part as early as possible.
        while let Some(joined) = self.in_flight.try_join_next() {
            self.collect(joined)?;
        }
        Ok(())
    }

    fn collect(
        &mut self,
        joined: Result<Result<(CompletedPart, Bytes), StoreError>, tokio::task::JoinError>,
    ) -> Result<(), StoreError> {
        match joined {
            Ok(Ok((part, data))) => {
                self.done.push(part);
                // The SDK has dropped its handle once the request completed; reuse the buffer.
                if let Ok(mut b) = data.try_into_mut() {
                    if b.capacity() >= self.shared.part_size {
                        b.clear();
                        self.spare.push(b);
                    }
                }
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(StoreError::Failed(format!(
                "{}: {}: part upload task failed: {e}",
                self.shared.url, self.key
            ))),
        }
    }

    /// Starts uploading one part, once fewer than `max_in_flight` are in flight.
    async fn send_part(&mut self, data: Bytes) -> Result<(), StoreError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.start_upload().await?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        if self.next_part > MAX_PARTS {
            return Err(StoreError::Failed(format!(
                "{}: {}: the object needs more than {MAX_PARTS} parts of {} bytes: raise the part size",
                self.shared.url, self.key, self.shared.part_size
            )));
        }
        while self.in_flight.len() >= self.shared.max_in_flight {
            if let Some(joined) = self.in_flight.join_next().await {
                self.collect(joined)?;
            }
        }
        let number = self.next_part;
        self.next_part += 1;
        let shared = Arc::clone(&self.shared);
        let key = self.key.clone();
        let full_key = self.full_key.clone();
        self.in_flight.spawn(async move {
            let len = i64::try_from(data.len())
                .map_err(|_| StoreError::Failed(format!("part {number} of {key} is too large")))?;
            let out = shared
                .client
                .upload_part()
                .bucket(&shared.bucket)
                .key(&full_key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(len)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .map_err(|e| shared.err("upload part", &key, e))?;
            let part = CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build();
            Ok((part, data))
        });
        Ok(())
    }

    async fn start_upload(&self) -> Result<String, StoreError> {
        let s = &self.shared;
        let out = s
            .client
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.full_key)
            .set_server_side_encryption(s.sse.clone())
            .set_ssekms_key_id(s.sse_kms_key_id.clone())
            .set_storage_class(s.storage_class.clone())
            .send()
            .await
            .map_err(|e| s.err("start upload", &self.key, e))?;
        out.upload_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| StoreError::Remote {
                store: s.url.clone(),
                op: "start upload",
                key: self.key.clone(),
                code: "BadResponse".to_string(),
                message: "CreateMultipartUpload returned no upload ID".to_string(),
            })
    }

    async fn finish_inner(&mut self) -> Result<u32, StoreError> {
        if self.upload_id.is_none() {
            // Never reached a second part: one PutObject, no multipart upload at all.
            let body = std::mem::take(&mut self.buf).freeze();
            self.shared
                .put_object(&self.key, &self.full_key, body)
                .await?;
            return Ok(1);
        }
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf).freeze();
            self.send_part(last).await?;
        }
        while let Some(joined) = self.in_flight.join_next().await {
            self.collect(joined)?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number());
        let count = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        let s = &self.shared;
        let upload_id = self.upload_id.clone().unwrap_or_default();
        s.client
            .complete_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.full_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s.err("complete upload", &self.key, e))?;
        self.upload_id = None;
        Ok(count)
    }

    /// Stops every part upload and aborts the multipart upload, if one was started.
    async fn abandon(&mut self) -> Result<(), StoreError> {
        self.failed = true;
        self.in_flight.shutdown().await;
        self.buf = BytesMut::new();
        self.done.clear();
        match self.upload_id.take() {
            Some(id) => {
                self.shared
                    .abort_upload(&self.key, &self.full_key, &id)
                    .await
            }
            None => Ok(()),
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if self.failed {
            return Err(self.failed_error());
        }
        match self.write_inner(chunk).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The original error matters; a failed abort leaves a pending upload for prune.
                let _ = self.abandon().await;
                Err(e)
            }
        }
    }

    async fn finish(mut self: Box<Self>) -> Result<PutReceipt, StoreError> {
        if self.failed {
            return Err(self.failed_error());
        }
        match self.finish_inner().await {
            Ok(parts) => Ok(PutReceipt {
                key: self.key.clone(),
                size: self.size,
                parts,
            }),
            Err(e) => {
                let _ = self.abandon().await;
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        self.abandon().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::Credentials;
    use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;
    use aws_sdk_s3::types::error::NoSuchKey;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
    }

    fn map(err: SdkError<GetObjectError, HttpResponse>) -> StoreError {
        map_sdk_error("s3://bkt/pre", "bkt", "get", "c1/snap", err)
    }

    #[test]
    fn defaults_and_validation() {
        let r = S3Options::default().resolve().unwrap();
        assert_eq!(r.part_size, 16 * MIB);
        assert_eq!(r.max_in_flight, 4);
        assert!(r.sse.is_none() && r.storage_class.is_none() && r.ca_pem.is_none());

        let with = |f: fn(&mut S3Options)| {
            let mut o = S3Options::default();
            f(&mut o);
            o.resolve()
        };
        let err = |f: fn(&mut S3Options)| with(f).unwrap_err().to_string();
        assert!(err(|o| o.part_size = MIB).contains("5 MiB"));
        assert_eq!(with(|o| o.part_size = 5 * MIB).unwrap().part_size, 5 * MIB);
        assert!(err(|o| o.max_in_flight = 1000).contains("too many"));
        assert!(err(|o| o.sse = Some("aes128".into())).contains("AES256 or aws:kms"));
        assert_eq!(
            with(|o| o.sse = Some("aes256".into())).unwrap().sse,
            Some(ServerSideEncryption::Aes256)
        );
        assert!(err(|o| o.sse_kms_key_id = Some("k".into())).contains("aws:kms"));
        assert!(err(|o| {
            o.sse = Some("AES256".into());
            o.sse_kms_key_id = Some("k".into());
        })
        .contains("aws:kms"));
        let kms = with(|o| {
            o.sse = Some("aws:kms".into());
            o.sse_kms_key_id = Some("alias/etcd".into());
        })
        .unwrap();
        assert_eq!(kms.sse, Some(ServerSideEncryption::AwsKms));
        assert_eq!(kms.sse_kms_key_id.as_deref(), Some("alias/etcd"));
        assert!(err(|o| o.storage_class = Some("COLD".into())).contains("STANDARD_IA"));
        assert_eq!(
            with(|o| o.storage_class = Some("standard_ia".into()))
                .unwrap()
                .storage_class,
            Some(StorageClass::StandardIa)
        );
        assert!(err(|o| o.endpoint = Some("127.0.0.1:8333".into())).contains("http://"));
        assert!(err(|o| o.endpoint = Some("http://".into())).contains("no host"));
        assert!(err(|o| o.endpoint = Some("http://a:b@host".into())).contains("credentials"));
        assert!(with(|o| o.endpoint = Some("https://minio.local:9000/".into())).is_ok());
        assert!(err(|o| o.region = Some(" ".into())).contains("region"));
        assert!(err(|o| o.max_attempts = 100).contains("too many"));
        assert!(err(|o| o.attempt_timeout = Some(Duration::ZERO)).contains("above zero"));
        assert!(err(|o| o.ca_bundle = Some("/nonexistent/ca.pem".into()))
            .contains("read CA bundle /nonexistent/ca.pem"));
    }

    #[test]
    fn keys_are_relative_to_the_prefix() {
        assert_eq!(join_key("", "c1/a"), "c1/a");
        assert_eq!(join_key("prod/eu", "c1/a"), "prod/eu/c1/a");
        assert_eq!(relative_key("prod/eu", "prod/eu/c1/a"), Some("c1/a"));
        assert_eq!(relative_key("prod/eu", "prod/eux/c1/a"), None);
        assert_eq!(relative_key("", "c1/a"), Some("c1/a"));
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        check_key("c1/2024-01-01T00:00:00Z.db.zst").unwrap();
    }

    #[test]
    fn no_such_key_is_not_found() {
        let e = map(SdkError::service_error(
            GetObjectError::NoSuchKey(
                NoSuchKey::builder()
                    .message("The specified key does not exist.")
                    .build(),
            ),
            response(404),
        ));
        assert!(e.is_not_found(), "{e}");
        assert_eq!(e.to_string(), "s3://bkt/pre: c1/snap: no such object");

        let bare404 = map(SdkError::service_error(
            GetObjectError::generic(ErrorMetadata::builder().build()),
            response(404),
        ));
        assert!(bare404.is_not_found(), "{bare404}");
    }

    #[test]
    fn missing_bucket_says_so() {
        let e = map(SdkError::service_error(
            GetObjectError::generic(
                ErrorMetadata::builder()
                    .code("NoSuchBucket")
                    .message("The specified bucket does not exist")
                    .build(),
            ),
            response(404),
        ));
        assert!(!e.is_not_found());
        assert_eq!(
            e.to_string(),
            "s3://bkt/pre: get c1/snap: NoSuchBucket: bucket \"bkt\" does not exist"
        );
    }

    #[test]
    fn service_errors_keep_code_and_message() {
        let msg = "The request signature we calculated does not match the signature you provided. \
                   Check your key and signing method.";
        let e = map(SdkError::service_error(
            GetObjectError::generic(
                ErrorMetadata::builder()
                    .code("SignatureDoesNotMatch")
                    .message(msg)
                    .build(),
            ),
            response(403),
        ));
        let text = e.to_string();
        assert_eq!(
            text,
            format!(
                "s3://bkt/pre: get c1/snap: SignatureDoesNotMatch: {}",
                msg.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        );
        assert!(!text.contains(SECRET));

        let no_code = map(SdkError::service_error(
            GetObjectError::generic(ErrorMetadata::builder().build()),
            response(503),
        ));
        assert_eq!(
            no_code.to_string(),
            "s3://bkt/pre: get c1/snap: HTTP 503: no error code or message"
        );
    }

    #[test]
    fn transport_errors_are_one_short_line() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let e = map(SdkError::dispatch_failure(ConnectorError::io(Box::new(io))));
        let text = e.to_string();
        assert!(
            text.starts_with("s3://bkt/pre: get c1/snap: ConnectionFailed: "),
            "{text}"
        );
        assert!(text.contains("Connection refused"), "{text}");
        assert!(!text.contains('\n') && text.len() < 600, "{text}");

        let t = map(SdkError::timeout_error(
            "operation timeout (all attempts including retries) occurred after 2s",
        ));
        let text = t.to_string();
        assert!(text.contains(": Timeout: operation timeout"), "{text}");
    }

    #[test]
    fn cause_chains_drop_repeats_and_are_bounded() {
        #[derive(Debug)]
        struct E(String, Option<Box<E>>);
        impl fmt::Display for E {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "io error: refused".into(),
            Some(Box::new(E(
                "refused".into(),
                Some(Box::new(E("os\nerror 111".into(), None))),
            ))),
        );
        assert_eq!(cause_chain(&e), "io error: refused: os error 111");
        let long = E("x".repeat(5000), None);
        assert!(cause_chain(&long).chars().count() <= MAX_CAUSE_CHARS + 1);
    }

    #[test]
    fn ca_bundles_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["s3.local".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, cert.pem()).unwrap();
        let pem = read_ca_bundle(&good).unwrap();
        assert!(!pem.is_empty());
        check_trust_anchor(cert.der()).unwrap();

        let key_only = dir.path().join("key.pem");
        std::fs::write(&key_only, key.serialize_pem()).unwrap();
        assert!(read_ca_bundle(&key_only)
            .unwrap_err()
            .to_string()
            .contains("no PEM certificate"));

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_ca_bundle(&garbage).unwrap_err().to_string();
        assert!(e.contains("not an X.509 certificate"), "{e}");

        // A truncated copy of a real certificate is refused too.
        let der = cert.der().to_vec();
        let cut = rustls_pki_types::CertificateDer::from(&der[..der.len() - 10]);
        assert!(check_trust_anchor(&cut).is_err());
    }

    #[tokio::test]
    async fn connect_sends_nothing_and_names_the_store() {
        let opts = S3Options {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: Some("us-east-1".into()),
            path_style: true,
            ..S3Options::default()
        };
        let loader = || {
            S3Store::config_loader()
                .credentials_provider(Credentials::new("AK", SECRET, None, None, "test"))
        };
        let store = S3Store::connect_with("bkt", "/prod/eu/", &opts, loader())
            .await
            .unwrap();
        assert_eq!(store.url(), "s3://bkt/prod/eu");
        assert_eq!(store.part_size(), DEFAULT_PART_SIZE);
        assert!(!format!("{store:?}").contains(SECRET));
        assert!(store.create("../x").await.is_err());
        let bare = S3Store::connect_with("bkt", "", &opts, loader())
            .await
            .unwrap();
        assert_eq!(bare.url(), "s3://bkt");
        for bad in ["a/../b", "a//b", "./x"] {
            let e = S3Store::connect_with("bkt", bad, &opts, loader())
                .await
                .unwrap_err();
            assert!(e.to_string().contains("S3 prefix"), "{e}");
        }

        // Without overrides, config_loader's retries and timeouts apply.
        let conf = store.shared.client.config();
        let retry = conf.retry_config().unwrap();
        assert_eq!(retry.max_attempts(), DEFAULT_MAX_ATTEMPTS);
        let timeouts = conf.timeout_config().unwrap();
        assert_eq!(timeouts.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(
            timeouts.operation_timeout(),
            Some(DEFAULT_OPERATION_TIMEOUT)
        );

        // The options override single settings and keep the others.
        let tuned = S3Options {
            max_attempts: 2,
            initial_backoff: Some(Duration::from_millis(20)),
            attempt_timeout: Some(Duration::from_secs(3)),
            ..opts.clone()
        };
        let store = S3Store::connect_with("bkt", "", &tuned, loader())
            .await
            .unwrap();
        let conf = store.shared.client.config();
        let retry = conf.retry_config().unwrap();
        assert_eq!(retry.max_attempts(), 2);
        assert_eq!(retry.initial_backoff(), Duration::from_millis(20));
        let timeouts = conf.timeout_config().unwrap();
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(timeouts.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(
            timeouts.operation_timeout(),
            Some(DEFAULT_OPERATION_TIMEOUT)
        );
        assert_eq!(conf.region().map(|r| r.as_ref()), Some("us-east-1"));
    }

    #[tokio::test]
    async fn an_endpoint_without_region_falls_back_to_us_east_1() {
        // Only when neither the environment nor a profile names one; the test cannot control
        // the process environment, so it accepts theirs.
        let opts = S3Options {
            endpoint: Some("http://127.0.0.1:1".into()),
            ..S3Options::default()
        };
        let loader = S3Store::config_loader()
            .credentials_provider(Credentials::new("AK", SECRET, None, None, "test"));
        let store = S3Store::connect_with("bkt", "", &opts, loader)
            .await
            .unwrap();
        let region = store.shared.client.config().region().cloned();
        let region = region.as_ref().map(|r| r.as_ref().to_string());
        let from_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()));
        let home_config = std::env::var_os("HOME")
            .map(|h| std::path::Path::new(&h).join(".aws/config").exists())
            .unwrap_or(false);
        let profile_possible = home_config || std::env::var_os("AWS_CONFIG_FILE").is_some();
        match from_env {
            Some(r) => assert_eq!(region.as_deref(), Some(r.as_str())),
            None if !profile_possible => assert_eq!(region.as_deref(), Some("us-east-1")),
            None => assert!(region.is_some()),
        }
    }
}
