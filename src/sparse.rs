//! Reading files with holes without reading the holes.
//!
//! A sparse file (a 10 GiB disk image with 5 MiB of data) reads back as zeros in its
//! holes, but `read(2)` makes the kernel copy every one of those zero bytes. [`HoleReader`]
//! asks the filesystem where data is (`SEEK_DATA` / `SEEK_HOLE`) and produces the zeros of
//! holes itself, so a mostly empty file streams at memory speed. The bytes it yields are
//! exactly the file's bytes: chunking, hashing and dedup see no difference. Filesystems
//! without hole support answer as if the whole file were data, which is merely slower.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

/// A reader over a file that skips reading its holes.
pub struct HoleReader {
    file: File,
    len: u64,
    pos: u64,
    /// `[data_start, data_end)`: the data region at or after `pos` found last.
    data_start: u64,
    data_end: u64,
}

impl HoleReader {
    /// Reads `file` from its start.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(HoleReader {
            file,
            len,
            pos: 0,
            data_start: 0,
            data_end: 0,
        })
    }

    fn seek(&self, from: u64, whence: i32) -> Option<u64> {
        let off = libc::off_t::try_from(from).ok()?;
        // SAFETY: lseek on a valid descriptor we own; it moves only that descriptor's
        // offset, which this reader never relies on (it reads with pread).
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), off, whence) };
        (r >= 0).then_some(r as u64)
    }

    /// Finds the data region at or after `pos` (the rest of the file if the filesystem
    /// cannot tell).
    fn locate(&mut self) {
        match self.seek(self.pos, libc::SEEK_DATA) {
            Some(start) => {
                self.data_start = start;
                self.data_end = self
                    .seek(start, libc::SEEK_HOLE)
                    .unwrap_or(self.len)
                    .min(self.len);
            }
            None if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) => {
                // No data after pos: a hole up to the end.
                self.data_start = self.len;
                self.data_end = self.len;
            }
            None => {
                self.data_start = self.pos;
                self.data_end = self.len;
            }
        }
    }
}

impl Read for HoleReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.data_end {
            self.locate();
        }
        if self.pos < self.data_start {
            let n = (self.data_start - self.pos).min(buf.len() as u64) as usize;
            buf[..n].fill(0);
            self.pos += n as u64;
            return Ok(n);
        }
        let want = (self.data_end - self.pos).min(buf.len() as u64) as usize;
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            // The file shrank under us: stop at what it holds now.
            self.len = self.pos;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn yields_exactly_the_files_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut f = File::create(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        for (at, data) in [
            (0u64, &b"head"[..]),
            (10 << 20, b"middle"),
            ((64 << 20) - 3, b"end"),
        ] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(data).unwrap();
        }
        drop(f);
        let plain = std::fs::read(&path).unwrap();
        let mut got = Vec::new();
        let mut r = HoleReader::new(File::open(&path).unwrap()).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), plain.len());
        assert!(got == plain);
    }

    #[test]
    fn a_file_without_holes_reads_normally() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dense");
        std::fs::write(
            &path,
            (0..100_000u32)
                .flat_map(|i| i.to_le_bytes())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let mut got = Vec::new();
        HoleReader::new(File::open(&path).unwrap())
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, std::fs::read(&path).unwrap());
    }
}
