//! The writer's output: page data written in large blocks, with `O_DIRECT` where the filesystem
//! takes it. A restore writes a db as large as the snapshot; through the page cache that costs a
//! copy of every byte into the cache and then the writeback at fsync, while a direct write hands
//! the block to the device once (measured on this project's machine: 1 GiB in 0.56 s direct vs
//! 0.6–2.2 s buffered + fdatasync). Direct blocks must be aligned in memory, file offset and
//! length; the buffer is carved at an aligned offset of a slightly larger `Vec`, and anything that
//! cannot be aligned (the tail, small page sizes, a filesystem refusing `O_DIRECT` such as tmpfs)
//! is written through the page cache instead. Never reorders or skips bytes: the file receives
//! exactly the bytes written, at consecutive offsets from where it started.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Alignment `O_DIRECT` needs on common devices (memory, offset and length).
const ALIGN: usize = 4096;

pub(crate) struct PageOut {
    file: File,
    buf: Vec<u8>,
    /// Where the aligned block starts in `buf`.
    start: usize,
    /// Bytes pending in the block.
    len: usize,
    cap: usize,
    /// File offset of the block's first byte.
    pos: u64,
    direct: bool,
}

impl PageOut {
    /// Writes at `pos` onwards in blocks of `cap` bytes (a multiple of 4096), directly when
    /// `try_direct` and the offset allows it.
    pub fn new(file: File, pos: u64, cap: usize, try_direct: bool) -> PageOut {
        let cap = cap.div_ceil(ALIGN).max(1) * ALIGN;
        let buf = vec![0u8; cap + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        let mut out = PageOut {
            file,
            buf,
            start,
            len: 0,
            cap,
            pos,
            direct: false,
        };
        if try_direct && pos % ALIGN as u64 == 0 {
            out.direct = out.set_direct(true).is_ok();
        }
        out
    }

    fn set_direct(&self, on: bool) -> io::Result<()> {
        let flags = fcntl(&self.file, FcntlArg::F_GETFL).map_err(io::Error::from)?;
        let mut flags = OFlag::from_bits_truncate(flags);
        flags.set(OFlag::O_DIRECT, on);
        fcntl(&self.file, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
        Ok(())
    }

    /// Writes the pending bytes; directly only when they form a whole aligned block.
    fn write_block(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let block = &self.buf[self.start..self.start + self.len];
        if self.direct && self.len % ALIGN == 0 {
            match self.file.write_all_at(block, self.pos) {
                Ok(()) => {
                    self.pos += self.len as u64;
                    self.len = 0;
                    return Ok(());
                }
                // The filesystem or device refuses direct I/O here: carry on through the cache.
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        if self.direct {
            self.direct = false;
            self.set_direct(false)?;
        }
        let block = &self.buf[self.start..self.start + self.len];
        self.file.write_all_at(block, self.pos)?;
        self.pos += self.len as u64;
        self.len = 0;
        Ok(())
    }

    /// Writes what is pending and returns the file, back in buffered mode (for the metas).
    pub fn into_inner(mut self) -> io::Result<File> {
        self.write_block()?;
        if self.direct {
            self.set_direct(false)?;
        }
        Ok(self.file)
    }
}

impl Write for PageOut {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.cap - self.len;
        let n = data.len().min(room);
        let at = self.start + self.len;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        if self.len == self.cap {
            self.write_block()?;
        }
        Ok(n)
    }

    /// Writes the pending bytes (a partial block ends direct writes: offsets lose alignment).
    fn flush(&mut self) -> io::Result<()> {
        self.write_block()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(try_direct: bool, dir: &std::path::Path) {
        let path = dir.join(format!("out-{try_direct}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut out = PageOut::new(file, 8192, 3 * ALIGN, try_direct);
        let mut want = vec![0u8; 8192];
        for i in 0..5000u32 {
            let chunk: Vec<u8> = (0..(i % 97) as u8).map(|b| b ^ i as u8).collect();
            out.write_all(&chunk).unwrap();
            want.extend_from_slice(&chunk);
        }
        let file = out.into_inner().unwrap();
        file.write_all_at(b"meta", 0).unwrap();
        want[..4].copy_from_slice(b"meta");
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn bytes_land_in_order_direct_or_not() {
        let dir = tempfile::tempdir().unwrap();
        round_trip(true, dir.path());
        round_trip(false, dir.path());
        // tmpfs refuses O_DIRECT: the same bytes arrive through the cache.
        if std::path::Path::new("/dev/shm").is_dir() {
            let shm = tempfile::tempdir_in("/dev/shm").unwrap();
            round_trip(true, shm.path());
        }
    }
}
