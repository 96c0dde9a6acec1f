//! Flags that choose and configure a snapshot store, shared by `backup` and `snapshot …`.

use std::path::PathBuf;

use clap::Args;

use crate::store::{open_store, ObjectStore, S3Options, StoreError, StoreUrl};

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Store")]
pub struct StoreArgs {
    /// Where snapshots live: file:///dir (or a path), or s3://bucket/prefix.
    #[arg(long, env = "CPKEEP_STORE")]
    pub store: Option<String>,

    /// S3 endpoint for MinIO, SeaweedFS, Ceph… (default: AWS).
    #[arg(long, env = "CPKEEP_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region [default: from the AWS environment, else us-east-1 with --s3-endpoint].
    #[arg(long, env = "CPKEEP_S3_REGION")]
    pub s3_region: Option<String>,

    /// Path-style addressing (endpoint/bucket/key), needed by most S3-compatible servers.
    #[arg(long, env = "CPKEEP_S3_PATH_STYLE")]
    pub s3_path_style: bool,

    /// PEM file of CA certificates to trust for the S3 endpoint.
    #[arg(long, env = "CPKEEP_S3_CA_BUNDLE")]
    pub s3_ca_bundle: Option<PathBuf>,

    /// Server-side encryption: AES256 or aws:kms.
    #[arg(long, env = "CPKEEP_S3_SSE")]
    pub s3_sse: Option<String>,

    /// KMS key for --s3-sse aws:kms.
    #[arg(long, env = "CPKEEP_S3_SSE_KMS_KEY_ID")]
    pub s3_sse_kms_key_id: Option<String>,

    /// Storage class of uploaded objects (e.g. STANDARD_IA).
    #[arg(long, env = "CPKEEP_S3_STORAGE_CLASS")]
    pub s3_storage_class: Option<String>,

    /// Multipart part size (at least 5MiB); memory use is about part size × (parts in flight + 1).
    #[arg(long, env = "CPKEEP_S3_PART_SIZE", default_value = "8MiB", value_parser = crate::units::parse_bytes)]
    pub s3_part_size: u64,

    /// Parts uploaded at once.
    #[arg(long, env = "CPKEEP_S3_PARTS_IN_FLIGHT", default_value_t = 2)]
    pub s3_parts_in_flight: usize,
}

impl StoreArgs {
    pub fn url(&self) -> Result<StoreUrl, StoreError> {
        match &self.store {
            Some(s) => StoreUrl::parse(s),
            None => Err(StoreError::Config(
                "no store given: pass --store URL (or set CPKEEP_STORE)".to_string(),
            )),
        }
    }

    pub fn s3_options(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            path_style: self.s3_path_style,
            ca_bundle: self.s3_ca_bundle.clone(),
            sse: self.s3_sse.clone(),
            sse_kms_key_id: self.s3_sse_kms_key_id.clone(),
            storage_class: self.s3_storage_class.clone(),
            part_size: usize::try_from(self.s3_part_size).unwrap_or(usize::MAX),
            max_in_flight: self.s3_parts_in_flight,
            ..S3Options::default()
        }
    }

    pub async fn open(&self) -> Result<Box<dyn ObjectStore>, StoreError> {
        open_store(&self.url()?, &self.s3_options()).await
    }
}
