//! S3 store (aws-sdk-s3). Placeholder until implemented.

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectInfo, ObjectReader, ObjectStore, ObjectWriter, PendingUpload, StoreError};

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
}

/// An S3 bucket and prefix.
#[derive(Debug)]
pub struct S3Store {
    _private: (),
}

impl S3Store {
    pub async fn connect(
        _bucket: &str,
        _prefix: &str,
        _opts: &S3Options,
    ) -> Result<Self, StoreError> {
        Err(StoreError::Config("the S3 store is not built yet".into()))
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn url(&self) -> String {
        String::new()
    }
    async fn create(&self, _key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        Err(StoreError::Config("unimplemented".into()))
    }
    async fn put(&self, _key: &str, _bytes: Bytes) -> Result<(), StoreError> {
        Err(StoreError::Config("unimplemented".into()))
    }
    async fn get(&self, _key: &str) -> Result<Bytes, StoreError> {
        Err(StoreError::Config("unimplemented".into()))
    }
    async fn open(&self, _key: &str) -> Result<ObjectReader, StoreError> {
        Err(StoreError::Config("unimplemented".into()))
    }
    async fn list(&self, _prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        Err(StoreError::Config("unimplemented".into()))
    }
    async fn delete(&self, _key: &str) -> Result<(), StoreError> {
        Err(StoreError::Config("unimplemented".into()))
    }
    async fn pending_uploads(&self, _prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        Err(StoreError::Config("unimplemented".into()))
    }
    async fn abort_pending(&self, _upload: &PendingUpload) -> Result<(), StoreError> {
        Err(StoreError::Config("unimplemented".into()))
    }
}
