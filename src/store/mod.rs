//! Object stores behind one trait, chosen by URL: `file:///dir` (the embedded default) and
//! `s3://bucket/prefix`. A store holds opaque objects under keys relative to its root; what the objects
//! mean (snapshots, manifests) is the snapshot module's business.
//!
//! Stores never print. Every write is invisible until complete: a file store writes `.part` files and
//! renames them; an S3 store completes a multipart upload or aborts it. Errors name the operation, the
//! key and the store's code and message, never credentials.

mod error;
mod file;
mod s3;
mod url;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::AsyncRead;

pub use error::{FailureClass, StoreError};
pub use file::FileStore;
pub use s3::{S3Options, S3Store};
pub use url::StoreUrl;

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    /// Key relative to the store root.
    pub key: String,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
}

/// An upload that was started and never completed: an S3 multipart upload, or a file store's `.part`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingUpload {
    /// Key the upload would have created, relative to the store root.
    pub key: String,
    /// The store's handle for it (S3 upload ID, or the `.part` file name).
    pub id: String,
    pub initiated: Option<DateTime<Utc>>,
}

/// What a completed write stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PutReceipt {
    pub key: String,
    pub size: u64,
    /// Parts uploaded (1 for a single PUT or a file).
    pub parts: u32,
}

/// A byte stream being read from a store.
pub type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

/// A place snapshots can be kept.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// The store's URL, without credentials, for messages and manifests.
    fn url(&self) -> String;

    /// Starts writing a (possibly large) object. Nothing is visible under `key` until
    /// [`ObjectWriter::finish`] succeeds.
    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError>;

    /// Writes a small object (a manifest) in one piece, atomically.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError>;

    /// Reads a small object whole.
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;

    /// Opens an object for streaming reads.
    async fn open(&self, key: &str) -> Result<ObjectReader, StoreError>;

    /// Every complete object whose key starts with `prefix`, in any order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Uploads started under `prefix` and never completed.
    async fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError>;

    /// Abandons a pending upload, freeing what it holds.
    async fn abort_pending(&self, upload: &PendingUpload) -> Result<(), StoreError>;

    /// Checks, before a long write starts, that the store can take objects at all, so that a
    /// backup into a wrong place fails before the snapshot is streamed. What cannot be known
    /// without writing an object (S3 credentials and permissions) is left to the first request.
    async fn check_writable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A write in progress. Dropping it without `finish` or `abort` may leave a pending upload, which
/// `snapshot prune` removes later; callers abort explicitly on every error path.
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends bytes. Implementations may buffer up to one part and upload parts in the background,
    /// with a bounded number in flight, so memory stays bounded whatever the object's size.
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError>;

    /// Completes the object; it is visible under its key once this returns `Ok`.
    async fn finish(self: Box<Self>) -> Result<PutReceipt, StoreError>;

    /// Abandons the object: nothing is left visible and nothing pending.
    async fn abort(self: Box<Self>) -> Result<(), StoreError>;
}

/// Opens the store a URL names.
pub async fn open_store(
    url: &StoreUrl,
    s3: &S3Options,
) -> Result<Box<dyn ObjectStore>, StoreError> {
    match url {
        StoreUrl::File(dir) => Ok(Box::new(FileStore::open(dir)?)),
        StoreUrl::S3 { bucket, prefix } => {
            Ok(Box::new(S3Store::connect(bucket, prefix, s3).await?))
        }
    }
}
