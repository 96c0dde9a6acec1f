//! Where the random-access reader gets its bytes: anything that can read a range at an offset.
//!
//! A file is read with positioned reads (`pread`), so several readers can share one handle and the
//! file is never mapped or loaded whole; a byte slice or vector serves tests and fuzzing.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// A random-access byte source.
pub trait PageSource {
    /// Bytes available. A source that cannot tell (a file whose metadata cannot be read) says 0,
    /// which makes opening it fail as truncated rather than read blindly.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset`, or fails (an offset or length past the end included).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl PageSource for File {
    fn len(&self) -> u64 {
        self.metadata().map_or(0, |m| m.len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl PageSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?));
        match range.and_then(|r| self.get(r)) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes at offset {offset} are past the end ({} bytes)",
                    buf.len(),
                    <[u8]>::len(self)
                ),
            )),
        }
    }
}

impl PageSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

impl<T: PageSource + ?Sized> PageSource for &T {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
}

impl<T: PageSource + ?Sized> PageSource for Box<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
}

impl<T: PageSource + ?Sized> PageSource for Arc<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_read_in_bounds_only() {
        let v: Vec<u8> = (0..10).collect();
        let mut buf = [0u8; 3];
        v.read_at(7, &mut buf).unwrap();
        assert_eq!(buf, [7, 8, 9]);
        assert!(v.read_at(8, &mut buf).is_err());
        assert!(v.as_slice().read_at(u64::MAX, &mut buf).is_err());
        assert_eq!(PageSource::len(&v.as_slice()), 10);
    }

    #[test]
    fn files_read_with_pread() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let mut buf = [0u8; 4];
        PageSource::read_at(&f, 3, &mut buf).unwrap();
        assert_eq!(&buf, b"3456");
        assert_eq!(PageSource::len(&f), 10);
        assert!(PageSource::read_at(&f, 8, &mut buf).is_err());
    }
}
