//! Random-access byte sources: files (positioned reads, no mmap, no `unsafe`) and memory buffers.
//!
//! Readers take a [`ReadAt`] so that tests (and callers holding a file in memory) can parse
//! without touching the disk, and so that many threads can read tensors of one file at once.

use std::fs::File;
use std::io;

/// A fixed-length byte source readable at any offset from several threads.
pub trait ReadAt: Send + Sync {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`; an error if the range passes the end.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A file opened for positioned reads, with its length taken at open time.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }
}

impl ReadAt for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.len, offset, buf.len())?;
        platform_read_exact_at(&self.file, offset, buf)
    }
}

#[cfg(unix)]
fn platform_read_exact_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn platform_read_exact_at(file: &File, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_read(buf, offset)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "unexpected end of file",
            ));
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn platform_read_exact_at(_file: &File, _offset: u64, _buf: &mut [u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "positioned reads are not supported on this platform",
    ))
}

/// An error unless `[offset, offset + n)` lies inside `len` bytes.
fn check_range(len: u64, offset: u64, n: usize) -> io::Result<()> {
    match offset.checked_add(n as u64) {
        Some(end) if end <= len => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read of {n} bytes at {offset} passes the end ({len} bytes)"),
        )),
    }
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(ReadAt::len(self), offset, buf.len())?;
        let start = offset as usize;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for std::sync::Arc<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }
}

/// Sequential reader over a [`ReadAt`] with a read-ahead buffer, used for parsing headers.
pub(crate) struct Cursor<'a> {
    src: &'a dyn ReadAt,
    len: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

/// Read-ahead size of [`Cursor`].
const CHUNK: usize = 1 << 20;

impl<'a> Cursor<'a> {
    pub(crate) fn new(src: &'a dyn ReadAt) -> Self {
        Cursor {
            src,
            len: src.len(),
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// Current offset.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Bytes left before the end of the source.
    pub(crate) fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// The source length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The next `n` bytes, or [`crate::ModelError::Truncated`] naming `what` when fewer remain.
    /// Never allocates more than the source holds.
    pub(crate) fn take(&mut self, n: u64, what: &str) -> crate::Result<&[u8]> {
        if n > self.remaining() {
            return Err(crate::ModelError::Truncated {
                what: what.to_string(),
                offset: self.pos,
                needed: n,
                file_len: self.len,
            });
        }
        let n = n as usize; // fits: n <= len - pos, and buffers of that size are addressable below
        let in_buf = self.pos >= self.buf_start
            && self.pos + n as u64 <= self.buf_start + self.buf.len() as u64;
        if !in_buf {
            let want = (n.max(CHUNK) as u64).min(self.remaining()) as usize;
            self.buf.resize(want, 0);
            self.src
                .read_exact_at(self.pos, &mut self.buf)
                .map_err(|e| {
                    crate::ModelError::io(format!("reading {what} at offset {}", self.pos), e)
                })?;
            self.buf_start = self.pos;
        }
        let off = (self.pos - self.buf_start) as usize;
        self.pos += n as u64;
        Ok(&self.buf[off..off + n])
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> crate::Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    pub(crate) fn u32(&mut self, what: &str) -> crate::Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> crate::Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reads_across_chunks_and_reports_truncation() {
        let data: Vec<u8> = (0..(CHUNK as u32 + 100)).map(|i| (i % 251) as u8).collect();
        let mut c = Cursor::new(&data);
        assert_eq!(c.take(3, "a").unwrap(), &[0, 1, 2]);
        let _ = c.take(CHUNK as u64 - 10, "big").unwrap();
        let at = c.pos() as usize;
        let got = c.take(20, "straddle").unwrap().to_vec();
        assert_eq!(got, data[at..at + 20]);
        assert_eq!(c.remaining(), data.len() as u64 - (CHUNK as u64 + 13));
        let err = c.take(1000, "tail").unwrap_err();
        assert!(
            matches!(err, crate::ModelError::Truncated { needed: 1000, .. }),
            "{err}"
        );
        assert!(data
            .read_exact_at(data.len() as u64 - 1, &mut [0u8; 2])
            .is_err());
        assert!(data.read_exact_at(u64::MAX, &mut [0u8; 2]).is_err());
    }
}
