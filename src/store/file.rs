//! The local-directory store, the embedded default: objects are files under a root directory; a write
//! goes to `<key>.part`, is fsynced and renamed, and the directory is fsynced, so a crash leaves either
//! nothing or a `.part` that `pending_uploads` reports and prune removes.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt;

use super::{
    ObjectInfo, ObjectReader, ObjectStore, ObjectWriter, PendingUpload, PutReceipt, StoreError,
};
use crate::fsx;

const PART_SUFFIX: &str = ".part";

/// A directory holding objects.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store rooted at `root`. The directory is created on the first write, not here, so reading
    /// from a mistyped path reports that it does not exist instead of creating it.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key);
        let safe = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(StoreError::Config(format!(
                "object key {key:?} is not a plain relative path"
            )));
        }
        Ok(self.root.join(rel))
    }

    fn unusable(&self, reason: String) -> StoreError {
        StoreError::Unusable {
            store: self.root.display().to_string(),
            reason,
        }
    }

    /// Why the root cannot hold objects: it, or the nearest existing directory above it, is not a
    /// directory. `None` when it is a directory or can be created as one.
    fn not_a_directory(&self) -> Option<StoreError> {
        let existing = self
            .root
            .ancestors()
            .find(|a| !a.as_os_str().is_empty() && std::fs::symlink_metadata(a).is_ok())?;
        if existing.is_dir() {
            return None;
        }
        Some(self.unusable(if existing == self.root {
            "not a directory (a store is a directory of snapshots)".to_string()
        } else {
            format!("{} is not a directory", existing.display())
        }))
    }

    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Io { op, path, source }
    }

    /// Every regular file under the root, as (key, path, metadata).
    async fn walk(&self) -> Result<Vec<(String, std::fs::Metadata)>, StoreError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    // A missing root is no empty store: an unmounted volume looks the same.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => {
                        return Err(StoreError::Unusable {
                            store: root.display().to_string(),
                            reason: "the directory does not exist (is its volume mounted?)"
                                .to_string(),
                        })
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotADirectory && dir == root => {
                        return Err(StoreError::Unusable {
                            store: root.display().to_string(),
                            reason: "not a directory (a store is a directory of snapshots)"
                                .to_string(),
                        })
                    }
                    Err(e) => {
                        return Err(StoreError::Io {
                            op: "list",
                            path: dir,
                            source: e,
                        })
                    }
                };
                for entry in entries {
                    let entry = entry.map_err(|source| StoreError::Io {
                        op: "list",
                        path: dir.clone(),
                        source,
                    })?;
                    let meta = entry.metadata().map_err(|source| StoreError::Io {
                        op: "stat",
                        path: entry.path(),
                        source,
                    })?;
                    if meta.is_dir() {
                        stack.push(entry.path());
                    } else if meta.is_file() {
                        let rel = entry
                            .path()
                            .strip_prefix(&root)
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        out.push((rel, meta));
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Failed(format!("listing task failed: {e}")))?
    }
}

fn modified(meta: &std::fs::Metadata) -> Option<DateTime<Utc>> {
    meta.modified().ok().map(DateTime::<Utc>::from)
}

fn is_hidden_temp(key: &str) -> bool {
    Path::new(key)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

#[async_trait]
impl ObjectStore for FileStore {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let path = self.path_of(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(Self::io("create directory", &dir))?;
        let part = PathBuf::from(format!("{}{PART_SUFFIX}", path.display()));
        // Snapshots hold every Secret of the cluster: readable by the owner only.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(fsx::MODE_SECRET)
            .open(&part)
            .await
            .map_err(Self::io("create", &part))?;
        Ok(Box::new(FileWriter {
            key: key.to_string(),
            path,
            part,
            dir,
            file: Some(file),
            size: 0,
        }))
    }

    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(Self::io("create directory", &dir))?;
        let p = path.clone();
        tokio::task::spawn_blocking(move || fsx::write_atomic(&p, &bytes, fsx::MODE_PUBLIC))
            .await
            .map_err(|e| StoreError::Failed(format!("write task failed: {e}")))?
            .map_err(Self::io("write", &path))
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path_of(key)?;
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(Self::io("read", &path))
    }

    async fn open(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let path = self.path_of(key)?;
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(Self::io("open", &path))?;
        Ok(Box::pin(f))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        Ok(self
            .walk()
            .await?
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with(prefix) && !k.ends_with(PART_SUFFIX) && !is_hidden_temp(k)
            })
            .map(|(key, meta)| ObjectInfo {
                key,
                size: meta.len(),
                modified: modified(&meta),
            })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io("delete", &path)(e)),
        }
    }

    async fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let walked = self.walk().await?;
        Ok(walked
            .into_iter()
            .filter_map(|(k, meta)| {
                let key = k.strip_suffix(PART_SUFFIX)?.to_string();
                key.starts_with(prefix).then(|| PendingUpload {
                    id: k.clone(),
                    key,
                    initiated: modified(&meta),
                })
            })
            .collect())
    }

    async fn abort_pending(&self, upload: &PendingUpload) -> Result<(), StoreError> {
        if !upload.id.ends_with(PART_SUFFIX) {
            return Err(StoreError::Config(format!(
                "{} is not a pending upload of a file store",
                upload.id
            )));
        }
        self.delete(&upload.id).await
    }

    /// The root is (or can be made) a directory, and a file can be created in it: a hidden probe
    /// file, removed at once (listings skip hidden files).
    async fn check_writable(&self) -> Result<(), StoreError> {
        if let Some(e) = self.not_a_directory() {
            return Err(e);
        }
        let root = self.root.clone();
        let probe = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&root)?;
            tempfile::Builder::new()
                .prefix(".cpkeep-write-check-")
                .tempfile_in(&root)
                .map(drop)
        })
        .await
        .map_err(|e| StoreError::Config(format!("store check task failed: {e}")))?;
        probe.map_err(|e| {
            self.unusable(format!(
                "cannot write there: {}",
                crate::certs::error::io_reason(&e)
            ))
        })
    }
}

struct FileWriter {
    key: String,
    path: PathBuf,
    part: PathBuf,
    dir: PathBuf,
    file: Option<tokio::fs::File>,
    size: u64,
}

#[async_trait]
impl ObjectWriter for FileWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| StoreError::Failed("write after finish".into()))?;
        f.write_all(&chunk)
            .await
            .map_err(FileStore::io("write", &self.part))?;
        self.size += chunk.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<PutReceipt, StoreError> {
        let mut f = self
            .file
            .take()
            .ok_or_else(|| StoreError::Failed("finish twice".into()))?;
        let result = async {
            f.flush()
                .await
                .map_err(FileStore::io("write", &self.part))?;
            f.sync_all()
                .await
                .map_err(FileStore::io("fsync", &self.part))?;
            drop(f);
            tokio::fs::rename(&self.part, &self.path)
                .await
                .map_err(FileStore::io("rename", &self.part))?;
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || fsx::sync_dir(&dir))
                .await
                .map_err(|e| StoreError::Failed(format!("fsync task failed: {e}")))?
                .map_err(FileStore::io("fsync directory", &self.dir))
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&self.part).await;
            return Err(e);
        }
        Ok(PutReceipt {
            key: self.key.clone(),
            size: self.size,
            parts: 1,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        self.file.take();
        match tokio::fs::remove_file(&self.part).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FileStore::io("remove", &self.part)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn write_is_invisible_until_finished_and_abort_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let mut w = store.create("c1/snap.db.zst").await.unwrap();
        w.write(Bytes::from_static(b"hello ")).await.unwrap();
        assert!(store.list("").await.unwrap().is_empty());
        assert_eq!(store.pending_uploads("c1/").await.unwrap().len(), 1);
        w.write(Bytes::from_static(b"world")).await.unwrap();
        let r = w.finish().await.unwrap();
        assert_eq!(r.size, 11);
        let listed = store.list("c1/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "c1/snap.db.zst");
        assert_eq!(
            &store.get("c1/snap.db.zst").await.unwrap()[..],
            b"hello world"
        );
        assert!(store.pending_uploads("").await.unwrap().is_empty());

        let mut w = store.create("c1/other").await.unwrap();
        w.write(Bytes::from_static(b"x")).await.unwrap();
        w.abort().await.unwrap();
        assert_eq!(store.list("").await.unwrap().len(), 1);
        assert!(store.pending_uploads("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        for key in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(store.create(key).await.is_err(), "{key}");
        }
    }
}
