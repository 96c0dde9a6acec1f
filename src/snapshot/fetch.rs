//! Reading a stored snapshot back: the object streamed from the store, decrypted (age) and
//! decompressed (zstd) on a blocking thread, with the stored bytes and the db checked against the
//! manifest's sizes and sha256s and etcd's own trailer. Used by `snapshot get` (to a file) and reusable
//! by restore (to any writer).

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;

use super::manifest::{CompressionKind, Manifest};
use super::trailer::TrailerCheck;
use super::SnapshotError;
use crate::fsx;
use crate::store::ObjectStore;

/// Counts and hashes the raw stored bytes as the decoders pull them.
struct RawTap<R> {
    inner: R,
    state: Arc<Mutex<(Sha256, u64)>>,
}

impl<R: Read> Read for RawTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut s) = self.state.lock() {
            s.0.update(&buf[..n]);
            s.1 += n as u64;
        }
        Ok(n)
    }
}

/// Loads age identities from a file (the format `age-keygen` writes).
pub fn load_identities(
    path: &Path,
) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, SnapshotError> {
    let bad = |reason: String| SnapshotError::BadFile {
        what: "age identity file",
        path: path.to_path_buf(),
        reason,
    };
    let file =
        age::IdentityFile::from_file(path.display().to_string()).map_err(|e| bad(e.to_string()))?;
    let ids = file.into_identities().map_err(|e| bad(e.to_string()))?;
    if ids.is_empty() {
        return Err(bad("it holds no identity".to_string()));
    }
    Ok(ids)
}

/// What was read and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    pub id: String,
    pub path: Option<PathBuf>,
    pub stored_size: u64,
    pub db_size: u64,
    pub db_sha256: String,
    pub revision: i64,
}

/// Streams the plaintext of `manifest`'s object (db + trailer) into `out` on the calling (blocking)
/// thread, then checks everything. `raw` is the object as the store returns it.
fn decode_into(
    raw: Box<dyn Read + Send>,
    manifest: &Manifest,
    identities: Option<&[Box<dyn age::Identity + Send + Sync>]>,
    out: &mut (dyn Write + Send),
) -> Result<(), SnapshotError> {
    let verify = |reason: String| SnapshotError::Verify {
        id: manifest.id.clone(),
        reason,
    };
    let state = Arc::new(Mutex::new((Sha256::new(), 0u64)));
    let tap = RawTap {
        inner: raw,
        state: state.clone(),
    };
    let mut reader: Box<dyn Read + Send> = Box::new(BufReader::with_capacity(256 * 1024, tap));
    if manifest.encrypted() {
        let ids = identities.ok_or_else(|| {
            SnapshotError::Usage(format!(
                "snapshot {} is encrypted to {}: pass --identity FILE",
                manifest.id,
                manifest
                    .encryption
                    .as_ref()
                    .map(|e| e.recipients.join(", "))
                    .unwrap_or_default()
            ))
        })?;
        let decryptor = age::Decryptor::new(BufReader::new(reader))
            .map_err(|e| verify(format!("not an age file: {e}")))?;
        let plain = decryptor
            .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| verify(format!("cannot decrypt: {e}")))?;
        reader = Box::new(plain);
    }
    if manifest.compression.algorithm == CompressionKind::Zstd {
        reader = Box::new(zstd::Decoder::new(reader).map_err(|e| verify(format!("zstd: {e}")))?);
    }
    // Two stages on two threads: this one pulls the object, decrypts and decompresses; the other
    // hashes the plaintext (etcd's trailer, the manifest's db sha256) and writes it. Blocks are
    // recycled through a return channel, so memory stays at a few blocks.
    const BLOCK: usize = 256 * 1024;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(4);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(6);
    for _ in 0..5 {
        let _ = empty_tx.send(vec![0u8; BLOCK]);
    }
    let (outcome, pulled) = std::thread::scope(|scope| {
        let sink = scope.spawn(move || -> Result<_, SnapshotError> {
            let mut check = TrailerCheck::new();
            for (block, n) in full_rx {
                check.update(&block[..n], |_| {});
                out.write_all(&block[..n]).map_err(|e| {
                    SnapshotError::Encode(format!("cannot write the snapshot: {e}"))
                })?;
                // The puller may be gone after an error; a lost block is fine then.
                let _ = empty_tx.send(block);
            }
            Ok(check.finish())
        });
        let pulled = (|| -> Result<(), SnapshotError> {
            loop {
                let Ok(mut block) = empty_rx.recv() else {
                    // The writer stopped (its error is reported below).
                    return Ok(());
                };
                let n = loop {
                    match reader.read(&mut block) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(verify(format!("cannot decode the object: {e}"))),
                    }
                };
                if n == 0 || full_tx.send((block, n)).is_err() {
                    return Ok(());
                }
            }
        })();
        drop(full_tx);
        let outcome = sink
            .join()
            .map_err(|_| SnapshotError::Encode("the snapshot writer thread failed".into()));
        (outcome, pulled)
    });
    let outcome = outcome??;
    pulled?;
    // Whatever the decoders left unread still belongs to the object's hash.
    drop(reader);
    let (raw_sha, raw_len) = {
        let s = state
            .lock()
            .map_err(|_| verify("hash state poisoned".into()))?;
        (s.0.clone().finalize(), s.1)
    };
    if raw_len != manifest.stored_size {
        return Err(verify(format!(
            "read {raw_len} stored bytes, the manifest says {}",
            manifest.stored_size
        )));
    }
    if hex::encode(raw_sha) != manifest.stored_sha256 {
        return Err(verify(
            "the stored object's sha256 differs from the manifest".into(),
        ));
    }
    if outcome.db_len != manifest.db_size {
        return Err(verify(format!(
            "the db has {} bytes, the manifest says {}",
            outcome.db_len, manifest.db_size
        )));
    }
    if hex::encode(outcome.computed) != manifest.db_sha256 {
        return Err(verify("the db's sha256 differs from the manifest".into()));
    }
    if !outcome.matches() {
        return Err(verify("etcd's sha256 trailer does not match the db".into()));
    }
    Ok(())
}

/// Streams a stored snapshot's plaintext into `out`, checked against its manifest and etcd's
/// trailer while it passes; returns `out`, flushed but not synced. On any error `out` is dropped
/// unfinished. For restore, which lands the db straight in the new member's data dir (`path`
/// names it in errors).
pub async fn fetch_into<W: Write + Send + 'static>(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    identities: Option<Vec<Box<dyn age::Identity + Send + Sync>>>,
    out: W,
    path: &Path,
) -> Result<W, SnapshotError> {
    if manifest.encrypted() && identities.is_none() {
        return Err(SnapshotError::Usage(format!(
            "snapshot {} is encrypted: pass --identity FILE",
            manifest.id
        )));
    }
    let reader = store.open(&manifest.object_key).await?;
    let bridge = SyncIoBridge::new(reader);
    let (m, path) = (manifest.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || -> Result<W, SnapshotError> {
        let mut out = out;
        decode_into(Box::new(bridge), &m, identities.as_deref(), &mut out)?;
        out.flush().map_err(|e| SnapshotError::BadFile {
            what: "output file",
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(out)
    })
    .await
    .map_err(|e| SnapshotError::Encode(format!("download task failed: {e}")))?
}

/// Downloads a snapshot to `out` as a raw file (db + trailer) that etcdctl/etcdutl accept. Written as
/// `<out>.part` with mode 0600 (a snapshot holds every Secret of the cluster), fsynced, checked, renamed.
pub async fn fetch_to_file(
    store: &dyn ObjectStore,
    manifest: &Manifest,
    out: &Path,
    identity: Option<&Path>,
    force: bool,
) -> Result<Fetched, SnapshotError> {
    if out.exists() && !force {
        return Err(SnapshotError::Exists(out.to_path_buf()));
    }
    let identities = match identity {
        Some(p) => Some(load_identities(p)?),
        None => None,
    };
    if manifest.encrypted() && identities.is_none() {
        return Err(SnapshotError::Usage(format!(
            "snapshot {} is encrypted: pass --identity FILE",
            manifest.id
        )));
    }
    let reader = store.open(&manifest.object_key).await?;
    let bridge = SyncIoBridge::new(reader);
    let part = PathBuf::from(format!("{}.part", out.display()));
    let (m, part2, out2) = (manifest.clone(), part.clone(), out.to_path_buf());
    let result = tokio::task::spawn_blocking(move || -> Result<(), SnapshotError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io_err = |e: io::Error| SnapshotError::BadFile {
            what: "output file",
            path: part2.clone(),
            reason: e.to_string(),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(fsx::MODE_SECRET)
            .open(&part2)
            .map_err(io_err)?;
        let mut w = io::BufWriter::with_capacity(1024 * 1024, &mut file);
        decode_into(Box::new(bridge), &m, identities.as_deref(), &mut w)?;
        w.flush().map_err(io_err)?;
        drop(w);
        if !m.trailer_included {
            let sha = hex::decode(&m.db_sha256).map_err(|e| io_err(io::Error::other(e)))?;
            file.write_all(&sha).map_err(io_err)?;
        }
        file.sync_all().map_err(io_err)?;
        std::fs::rename(&part2, &out2).map_err(io_err)?;
        let dir = out2
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fsx::sync_dir(dir).map_err(io_err)
    })
    .await
    .map_err(|e| SnapshotError::Encode(format!("download task failed: {e}")))?;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    Ok(Fetched {
        id: manifest.id.clone(),
        path: Some(out.to_path_buf()),
        stored_size: manifest.stored_size,
        db_size: manifest.db_size,
        db_sha256: manifest.db_sha256.clone(),
        revision: manifest.revision,
    })
}
