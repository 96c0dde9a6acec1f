//! Durable file writes shared by every module that writes: a temp file in the target's own directory,
//! written with its final mode from the start (keys are never readable by others, not even briefly),
//! fsynced, renamed over the target, and the directory fsynced so the rename survives a crash.
//!
//! Also: early writeback for big sequential writes ([`EarlySync`], [`EarlyWriter`]), so their final
//! fsync does not start from a whole file of dirty pages.
//!
//! This module never prints and never deletes anything but its own temp file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Mode for private keys and other secrets.
pub const MODE_SECRET: u32 = 0o600;
/// Mode for certificates and other public files.
pub const MODE_PUBLIC: u32 = 0o644;

/// Writes `bytes` to `path` atomically with `mode`: readers see the old file or the new one, never a
/// mix, and a crash leaves at worst a stray `.<name>.tmp-<pid>` beside it. The process umask applies
/// to `mode`, as for any file created.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, bytes, mode, |_| Ok(()))
}

/// Replaces `path` atomically, as [`write_atomic`], with a file that looks like the one it replaces:
/// exactly `mode` (the umask does not apply: a 0664 file stays 0664 under umask 022) and, when given,
/// `owner` (uid, gid), so a group that could read the old file can read the new one.
pub fn replace_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    write_atomic_with(path, bytes, mode, |f| {
        if let Some((uid, gid)) = owner {
            let m = f.metadata()?;
            // Only when it differs: an unprivileged user replacing its own file cannot chown.
            if m.uid() != uid || m.gid() != gid {
                std::os::unix::fs::fchown(f, Some(uid), Some(gid))?;
            }
        }
        // After the chown, which may clear set-id bits. Created with `mode` under the umask, the
        // file was never more open than `mode` on the way.
        f.set_permissions(fs::Permissions::from_mode(mode))
    })
}

/// The temp file, written, `prepare`d (ownership, mode), synced, renamed over `path`.
fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    prepare: impl FnOnce(&File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        prepare(&f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory so that entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a directory and its parents with `mode` for the ones created.
pub fn create_dir_all_mode(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir)
}

/// A thread that fsyncs a file while its writer keeps producing data, so that the final fsync
/// finds most of a large file already on disk instead of writing it all back at the end. Requests
/// coalesce. The file description is shared with the writer, and Linux reports a writeback error
/// to the first fsync that sees it only: the thread keeps the first error and the writer returns
/// it, so no error is swallowed.
pub struct EarlySync {
    poke: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl EarlySync {
    pub fn start(file: &File) -> Option<EarlySync> {
        let file = file.try_clone().ok()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("bolt-writeback".into())
            .spawn(move || {
                for () in rx {
                    file.sync_data()?;
                }
                Ok(())
            })
            .ok()?;
        Some(EarlySync {
            poke: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn request(&self) {
        if let Some(tx) = &self.poke {
            // Full: a sync is already pending, which will cover these pages too.
            let _ = tx.try_send(());
        }
    }

    /// Stops the thread; its first error, if any.
    pub fn stop(&mut self) -> io::Result<()> {
        self.poke.take();
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the writeback thread failed")),
            None => Ok(()),
        }
    }
}

impl Drop for EarlySync {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Bytes an [`EarlyWriter`] writes between two writeback requests.
pub const EARLY_SYNC_BYTES: u64 = 64 << 20;

/// A buffered writer of a big file that starts writeback every [`EARLY_SYNC_BYTES`] (see
/// [`EarlySync`]). [`EarlyWriter::finish`] flushes, waits for the writeback and returns the file,
/// not yet synced.
pub struct EarlyWriter {
    out: io::BufWriter<File>,
    early: Option<EarlySync>,
    unsynced: u64,
}

impl EarlyWriter {
    pub fn new(file: File) -> EarlyWriter {
        let early = EarlySync::start(&file);
        EarlyWriter {
            out: io::BufWriter::with_capacity(1 << 20, file),
            early,
            unsynced: 0,
        }
    }

    /// The file, flushed; the first writeback error, if any.
    pub fn finish(mut self) -> io::Result<File> {
        self.out.flush()?;
        if let Some(mut early) = self.early.take() {
            early.stop()?;
        }
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for EarlyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= EARLY_SYNC_BYTES {
            // What is still in the buffer goes with the next request.
            self.unsynced = 0;
            if let Some(early) = &self.early {
                early.request();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        write_atomic(&p, b"one", MODE_SECRET).unwrap();
        write_atomic(&p, b"two", MODE_SECRET).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temp file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn replace_keeps_the_exact_mode_and_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.crt");
        // 0o4664 has bits any umask in use clears (group write), and a set-id bit.
        for mode in [0o664, 0o640, 0o600, 0o2664] {
            write_atomic(&p, b"old", 0o600).unwrap();
            let owner = {
                let m = fs::metadata(&p).unwrap();
                (m.uid(), m.gid())
            };
            replace_atomic(&p, b"new", mode, Some(owner)).unwrap();
            let m = fs::metadata(&p).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, mode, "{mode:o}");
            assert_eq!((m.uid(), m.gid()), owner);
            assert_eq!(fs::read(&p).unwrap(), b"new");
        }
    }
}
