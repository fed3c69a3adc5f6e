//! Control-socket framing: `[tag: u8][len: u32 LE][payload]`, payloads at most
//! [`MAX_PAYLOAD`] bytes, checked before anything is allocated.

use std::io::{self, Read, Write};

/// Largest payload of one frame.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Client → server: the command to run (JSON, see `super::Request`).
pub const REQUEST: u8 = 1;
/// Server → client: bytes for the client's stdout.
pub const STDOUT: u8 = 2;
/// Server → client: bytes for the client's stderr.
pub const STDERR: u8 = 3;
/// Server → client: the command ended; payload = one byte, the exit code.
pub const EXIT: u8 = 4;
/// Client → server: bytes of the client's stdin.
pub const STDIN: u8 = 5;
/// Client → server: end of the client's stdin.
pub const STDIN_EOF: u8 = 6;

/// Writes one frame.
pub fn write(w: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let mut head = [0u8; 5];
    head[0] = tag;
    head[1..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    w.write_all(&head)?;
    w.write_all(payload)
}

/// Writes `data` as as many frames of `tag` as needed.
pub fn write_all(w: &mut impl Write, tag: u8, data: &[u8]) -> io::Result<()> {
    for part in data.chunks(MAX_PAYLOAD) {
        write(w, tag, part)?;
    }
    Ok(())
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..])?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("control frame of {len} bytes exceeds the {MAX_PAYLOAD}-byte limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_split() {
        let mut buf = Vec::new();
        write_all(&mut buf, STDOUT, &vec![7u8; MAX_PAYLOAD + 10]).unwrap();
        write(&mut buf, EXIT, &[3]).unwrap();
        let mut r = &buf[..];
        assert_eq!(read(&mut r).unwrap().unwrap().1.len(), MAX_PAYLOAD);
        assert_eq!(read(&mut r).unwrap().unwrap().1.len(), 10);
        assert_eq!(read(&mut r).unwrap().unwrap(), (EXIT, vec![3]));
        assert!(read(&mut r).unwrap().is_none());
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let bad = [STDOUT, 0xff, 0xff, 0xff, 0xff];
        assert!(read(&mut &bad[..]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = &bytes[..];
            while let Ok(Some(_)) = read(&mut r) {}
        }
    }
}
