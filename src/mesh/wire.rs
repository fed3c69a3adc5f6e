//! The shard protocol's messages and their binary layout (`/datamesh/shard/1.0.0`).
//!
//! # Framing
//!
//! Every message travels as one frame on its own libp2p stream:
//!
//! ```text
//! u32 BE   body length B (1..=MAX_MESSAGE, checked before anything is allocated)
//! B bytes  body:
//!   u8     protocol version (1)
//!   u8     message tag
//!   ...    the tag's fields, in order
//! ```
//!
//! Field encodings: a shard id is 32 raw bytes; `u8`/`u64` are fixed width, big endian;
//! a *blob* (shard bytes, probe payload) is a `u32 BE` length and that many bytes; a
//! *text* (error detail) is a `u16 BE` length and UTF-8 bytes, at most
//! [`MAX_TEXT`]. A body must be consumed exactly: trailing bytes are an error.
//!
//! # Messages
//!
//! | tag  | request            | fields          |
//! |------|--------------------|-----------------|
//! | 0x01 | put                | id, blob        |
//! | 0x02 | get                | id              |
//! | 0x03 | has                | id              |
//! | 0x04 | delete             | id              |
//! | 0x05 | stat               | —               |
//! | 0x06 | probe (bandwidth)  | blob            |
//! | 0x07 | announce           | u16 count N (1..=[`MAX_ANNOUNCE_IDS`]), N ids |
//!
//! | tag  | response           | fields                                      |
//! |------|--------------------|---------------------------------------------|
//! | 0x81 | stored             | —                                           |
//! | 0x82 | shard              | blob                                        |
//! | 0x83 | has                | u8 (0 or 1)                                 |
//! | 0x84 | deleted            | —                                           |
//! | 0x85 | stats              | shards u64, bytes u64, available u64, capacity u64 (0 = none) |
//! | 0x86 | probe received     | u64 bytes received                          |
//! | 0x87 | announced          | u32 provider records kept                   |
//! | 0xFF | error              | u8 status, text                             |
//!
//! Decoding never panics and never allocates: blobs are zero-copy slices of the frame,
//! whose size the codec bounded before reading it (see `mesh::codec`).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ids::ShardId;

/// Version byte of every message this datamesh writes and reads.
pub const PROTOCOL_VERSION: u8 = 1;
/// Largest frame body accepted or sent: a shard of the largest chunk (4 MiB at k = 1)
/// plus its header fits with room to spare.
pub const MAX_MESSAGE: usize = 8 << 20;
/// Largest error text.
pub const MAX_TEXT: usize = 1024;
/// Most shard ids in one announce request (128 KiB of ids).
pub const MAX_ANNOUNCE_IDS: usize = 4096;

/// A request of the shard protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Store these bytes under `id` (the holder checks that they hash to it).
    Put {
        /// BLAKE3 of `bytes`.
        id: ShardId,
        /// The shard.
        bytes: Bytes,
    },
    /// Send the bytes of a shard.
    Get(ShardId),
    /// Whether the shard is held.
    Has(ShardId),
    /// Remove the shard (only the peer that stored it may).
    Delete(ShardId),
    /// Space and content figures.
    Stat,
    /// Bytes to be counted and discarded: a bandwidth measurement.
    Probe(Bytes),
    /// The sender holds these shards: keep a provider record for each, naming the
    /// sender (never anyone else), so DHT lookups find it (`mesh::announce`).
    Announce(Vec<ShardId>),
}

/// Space and content figures of one storage node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeStats {
    /// Shards held.
    pub shards: u64,
    /// Bytes of shards held.
    pub bytes: u64,
    /// Bytes that may still be stored.
    pub available: u64,
    /// The configured capacity limit, `None` without one.
    pub capacity: Option<u64>,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The shard is not held here.
    NotFound,
    /// The capacity limit or the disk is full.
    NoSpace,
    /// The bytes of a put do not hash to its id.
    BadShard,
    /// The request was not understood.
    Malformed,
    /// Too many requests from this peer or in total; retry later or elsewhere.
    Busy,
    /// Not allowed for this peer (e.g. deleting another peer's shard).
    Forbidden,
    /// The holder failed internally (e.g. a disk error).
    Internal,
    /// This node does not store shards (a bootstrap or client node).
    NotStorage,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Status::NotFound => 1,
            Status::NoSpace => 2,
            Status::BadShard => 3,
            Status::Malformed => 4,
            Status::Busy => 5,
            Status::Forbidden => 6,
            Status::Internal => 7,
            Status::NotStorage => 8,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Status::NotFound,
            2 => Status::NoSpace,
            3 => Status::BadShard,
            4 => Status::Malformed,
            5 => Status::Busy,
            6 => Status::Forbidden,
            7 => Status::Internal,
            8 => Status::NotStorage,
            _ => return None,
        })
    }
}

/// A response of the shard protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The put is durable.
    Stored,
    /// The shard's bytes (unverified: the reader checks them against the id).
    Shard(Bytes),
    /// Answer to `Has`.
    Has(bool),
    /// The shard is gone (or was never there).
    Deleted,
    /// Answer to `Stat`.
    Stats(NodeStats),
    /// Answer to `Probe`: how many bytes arrived.
    ProbeReceived(u64),
    /// Provider records kept of an announce (fewer when the holder's table is full).
    Announced(u32),
    /// The request was refused.
    Error(Status, String),
}

/// A frame body that is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame ended before a field did.
    #[error("message truncated: {0} is incomplete")]
    Truncated(&'static str),
    /// A version this datamesh does not speak.
    #[error(
        "message of protocol version {0}; this datamesh speaks version {PROTOCOL_VERSION}: upgrade the older side"
    )]
    Version(u8),
    /// An unknown tag.
    #[error("unknown message tag {0:#04x}")]
    Tag(u8),
    /// A field out of range.
    #[error("invalid field: {0}")]
    Field(&'static str),
    /// Bytes after the last field.
    #[error("{0} unexpected bytes after the message")]
    Trailing(usize),
}

const T_PUT: u8 = 0x01;
const T_GET: u8 = 0x02;
const T_HAS: u8 = 0x03;
const T_DELETE: u8 = 0x04;
const T_STAT: u8 = 0x05;
const T_PROBE: u8 = 0x06;
const T_ANNOUNCE: u8 = 0x07;
const T_STORED: u8 = 0x81;
const T_SHARD: u8 = 0x82;
const T_HAS_ANSWER: u8 = 0x83;
const T_DELETED: u8 = 0x84;
const T_STATS: u8 = 0x85;
const T_PROBE_RECEIVED: u8 = 0x86;
const T_ANNOUNCED: u8 = 0x87;
const T_ERROR: u8 = 0xFF;

/// An encoded body: the small fixed part, and the blob that follows it, if any, kept
/// apart so that shard bytes are written without being copied.
#[derive(Debug)]
pub struct Encoded {
    /// Version, tag and fixed fields, including the blob's length prefix.
    pub head: BytesMut,
    /// The blob's bytes (empty when the message has none).
    pub blob: Bytes,
}

impl Encoded {
    fn new(tag: u8) -> Self {
        let mut head = BytesMut::with_capacity(48);
        head.put_u8(PROTOCOL_VERSION);
        head.put_u8(tag);
        Encoded {
            head,
            blob: Bytes::new(),
        }
    }

    fn with_blob(mut self, blob: &Bytes) -> Self {
        // Callers bound blobs by MAX_MESSAGE (codec::check_len) before sending.
        self.head
            .put_u32(u32::try_from(blob.len()).unwrap_or(u32::MAX));
        self.blob = blob.clone();
        self
    }

    /// Length of the body.
    pub fn len(&self) -> usize {
        self.head.len() + self.blob.len()
    }

    /// Whether the body is empty (never, for a real message).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Request {
    /// The body of this request.
    pub fn encode(&self) -> Encoded {
        match self {
            Request::Put { id, bytes } => {
                let mut e = Encoded::new(T_PUT);
                e.head.put_slice(id.as_bytes());
                e.with_blob(bytes)
            }
            Request::Get(id) => id_only(T_GET, id),
            Request::Has(id) => id_only(T_HAS, id),
            Request::Delete(id) => id_only(T_DELETE, id),
            Request::Stat => Encoded::new(T_STAT),
            Request::Probe(bytes) => Encoded::new(T_PROBE).with_blob(bytes),
            Request::Announce(ids) => {
                // Senders split longer lists (mesh::announce); never more on the wire.
                let ids = &ids[..ids.len().min(MAX_ANNOUNCE_IDS)];
                let mut e = Encoded::new(T_ANNOUNCE);
                e.head.reserve(2 + ids.len() * 32);
                e.head.put_u16(ids.len() as u16); // <= MAX_ANNOUNCE_IDS < u16::MAX
                for id in ids {
                    e.head.put_slice(id.as_bytes());
                }
                e
            }
        }
    }

    /// Parses a body.
    pub fn decode(body: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::start(body)?;
        let req = match r.tag {
            T_PUT => {
                let id = r.id()?;
                let bytes = r.blob("shard bytes")?;
                Request::Put { id, bytes }
            }
            T_GET => Request::Get(r.id()?),
            T_HAS => Request::Has(r.id()?),
            T_DELETE => Request::Delete(r.id()?),
            T_STAT => Request::Stat,
            T_PROBE => Request::Probe(r.blob("probe bytes")?),
            T_ANNOUNCE => {
                let n = usize::from(r.u16("announce count")?);
                if n == 0 || n > MAX_ANNOUNCE_IDS {
                    return Err(WireError::Field("announce count out of range"));
                }
                // The count is bounded and each id must be present: check the length
                // before allocating for it.
                if r.remaining() != n * 32 {
                    return Err(WireError::Field("announce ids do not match the count"));
                }
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(r.id()?);
                }
                Request::Announce(ids)
            }
            t => return Err(WireError::Tag(t)),
        };
        r.finish()?;
        Ok(req)
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Put { .. } => "put",
            Request::Get(_) => "get",
            Request::Has(_) => "has",
            Request::Delete(_) => "delete",
            Request::Stat => "stat",
            Request::Probe(_) => "probe",
            Request::Announce(_) => "announce",
        }
    }
}

fn id_only(tag: u8, id: &ShardId) -> Encoded {
    let mut e = Encoded::new(tag);
    e.head.put_slice(id.as_bytes());
    e
}

impl Response {
    /// The body of this response.
    pub fn encode(&self) -> Encoded {
        match self {
            Response::Stored => Encoded::new(T_STORED),
            Response::Shard(bytes) => Encoded::new(T_SHARD).with_blob(bytes),
            Response::Has(yes) => {
                let mut e = Encoded::new(T_HAS_ANSWER);
                e.head.put_u8(u8::from(*yes));
                e
            }
            Response::Deleted => Encoded::new(T_DELETED),
            Response::Stats(s) => {
                let mut e = Encoded::new(T_STATS);
                e.head.put_u64(s.shards);
                e.head.put_u64(s.bytes);
                e.head.put_u64(s.available);
                e.head.put_u64(s.capacity.unwrap_or(0));
                e
            }
            Response::ProbeReceived(n) => {
                let mut e = Encoded::new(T_PROBE_RECEIVED);
                e.head.put_u64(*n);
                e
            }
            Response::Announced(n) => {
                let mut e = Encoded::new(T_ANNOUNCED);
                e.head.put_u32(*n);
                e
            }
            Response::Error(status, text) => {
                let mut e = Encoded::new(T_ERROR);
                e.head.put_u8(status.code());
                let text = truncate_utf8(text, MAX_TEXT);
                e.head.put_u16(text.len() as u16); // <= MAX_TEXT < u16::MAX
                e.head.put_slice(text.as_bytes());
                e
            }
        }
    }

    /// Parses a body.
    pub fn decode(body: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::start(body)?;
        let resp = match r.tag {
            T_STORED => Response::Stored,
            T_SHARD => Response::Shard(r.blob("shard bytes")?),
            T_HAS_ANSWER => match r.u8("has answer")? {
                0 => Response::Has(false),
                1 => Response::Has(true),
                _ => return Err(WireError::Field("has answer must be 0 or 1")),
            },
            T_DELETED => Response::Deleted,
            T_STATS => {
                let shards = r.u64("stats")?;
                let bytes = r.u64("stats")?;
                let available = r.u64("stats")?;
                let cap = r.u64("stats")?;
                Response::Stats(NodeStats {
                    shards,
                    bytes,
                    available,
                    capacity: (cap > 0).then_some(cap),
                })
            }
            T_PROBE_RECEIVED => Response::ProbeReceived(r.u64("probe count")?),
            T_ANNOUNCED => Response::Announced(r.u32("announced count")?),
            T_ERROR => {
                let status = Status::from_code(r.u8("error status")?)
                    .ok_or(WireError::Field("unknown error status"))?;
                let len = usize::from(r.u16("error text")?);
                if len > MAX_TEXT {
                    return Err(WireError::Field("error text too long"));
                }
                let raw = r.take(len, "error text")?;
                let text = String::from_utf8_lossy(&raw).into_owned();
                Response::Error(status, text)
            }
            t => return Err(WireError::Tag(t)),
        };
        r.finish()?;
        Ok(resp)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A cursor over a body that checks every length against what is left.
struct Reader {
    buf: Bytes,
    tag: u8,
}

impl Reader {
    fn start(mut buf: Bytes) -> Result<Self, WireError> {
        if buf.remaining() < 2 {
            return Err(WireError::Truncated("header"));
        }
        let version = buf.get_u8();
        if version != PROTOCOL_VERSION {
            return Err(WireError::Version(version));
        }
        let tag = buf.get_u8();
        Ok(Reader { buf, tag })
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, WireError> {
        if self.buf.remaining() < n {
            return Err(WireError::Truncated(what));
        }
        Ok(self.buf.split_to(n))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(self.take(2, what)?.get_u16())
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(self.take(4, what)?.get_u32())
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(self.take(8, what)?.get_u64())
    }

    fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    fn id(&mut self) -> Result<ShardId, WireError> {
        let raw = self.take(32, "shard id")?;
        ShardId::from_slice(&raw).ok_or(WireError::Truncated("shard id"))
    }

    fn blob(&mut self, what: &'static str) -> Result<Bytes, WireError> {
        let len = self.take(4, what)?.get_u32() as usize;
        self.take(len, what)
    }

    fn finish(self) -> Result<(), WireError> {
        match self.buf.remaining() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

/// Joins an encoded body into one buffer (tests and small messages).
pub fn to_vec(e: &Encoded) -> Vec<u8> {
    let mut v = Vec::with_capacity(e.len());
    v.extend_from_slice(&e.head);
    v.extend_from_slice(&e.blob);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests() -> Vec<Request> {
        let id = ShardId::of(b"x");
        vec![
            Request::Put {
                id,
                bytes: Bytes::from_static(b"shard bytes"),
            },
            Request::Put {
                id,
                bytes: Bytes::new(),
            },
            Request::Get(id),
            Request::Has(id),
            Request::Delete(id),
            Request::Stat,
            Request::Probe(Bytes::from(vec![7u8; 1000])),
            Request::Announce(vec![id]),
            Request::Announce(
                (0..MAX_ANNOUNCE_IDS as u32)
                    .map(|i| ShardId::of(&i.to_be_bytes()))
                    .collect(),
            ),
        ]
    }

    fn responses() -> Vec<Response> {
        vec![
            Response::Stored,
            Response::Shard(Bytes::from_static(b"abc")),
            Response::Has(true),
            Response::Has(false),
            Response::Deleted,
            Response::Stats(NodeStats {
                shards: 3,
                bytes: u64::MAX,
                available: 0,
                capacity: Some(10),
            }),
            Response::Stats(NodeStats::default()),
            Response::ProbeReceived(1 << 40),
            Response::Announced(4096),
            Response::Error(Status::NoSpace, "full".into()),
            Response::Error(Status::NotStorage, String::new()),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for req in requests() {
            let body = Bytes::from(to_vec(&req.encode()));
            assert_eq!(Request::decode(body).unwrap(), req);
        }
        for resp in responses() {
            let body = Bytes::from(to_vec(&resp.encode()));
            assert_eq!(Response::decode(body).unwrap(), resp);
        }
    }

    #[test]
    fn announce_counts_must_match_and_stay_bounded() {
        let one = to_vec(&Request::Announce(vec![ShardId::of(b"a")]).encode());
        // Count 0, count above the limit, count larger than the ids present.
        for (count, extra) in [
            (0u16, 0usize),
            (MAX_ANNOUNCE_IDS as u16 + 1, 0),
            (2, 0),
            (1, 1),
        ] {
            let mut body = one.clone();
            body[2..4].copy_from_slice(&count.to_be_bytes());
            body.extend(std::iter::repeat_n(0u8, extra));
            assert!(
                Request::decode(Bytes::from(body)).is_err(),
                "count {count} +{extra}"
            );
        }
        // An over-long list is cut at the limit when encoded, never sent whole.
        let many: Vec<ShardId> = (0..MAX_ANNOUNCE_IDS as u32 + 5)
            .map(|i| ShardId::of(&i.to_be_bytes()))
            .collect();
        let body = Bytes::from(to_vec(&Request::Announce(many.clone()).encode()));
        assert_eq!(
            Request::decode(body).unwrap(),
            Request::Announce(many[..MAX_ANNOUNCE_IDS].to_vec())
        );
    }

    #[test]
    fn every_status_round_trips() {
        for code in 0..=255u8 {
            if let Some(s) = Status::from_code(code) {
                assert_eq!(s.code(), code);
            }
        }
        assert_eq!(Status::from_code(0), None);
    }

    #[test]
    fn long_error_text_is_cut_on_a_char_boundary() {
        let text = "é".repeat(MAX_TEXT); // 2 bytes each
        let body = Bytes::from(to_vec(&Response::Error(Status::Internal, text).encode()));
        let Response::Error(_, back) = Response::decode(body).unwrap() else {
            panic!("not an error response");
        };
        assert_eq!(back.len(), MAX_TEXT);
        assert!(back.chars().all(|c| c == 'é'));
    }

    #[test]
    fn wrong_version_tag_truncation_and_trailing_bytes_are_refused() {
        let good = to_vec(&Request::Get(ShardId::of(b"x")).encode());
        let mut v = good.clone();
        v[0] = 2;
        assert_eq!(Request::decode(Bytes::from(v)), Err(WireError::Version(2)));
        let mut v = good.clone();
        v[1] = 0x42;
        assert_eq!(Request::decode(Bytes::from(v)), Err(WireError::Tag(0x42)));
        let v = good[..good.len() - 1].to_vec();
        assert!(matches!(
            Request::decode(Bytes::from(v)),
            Err(WireError::Truncated(_))
        ));
        let mut v = good.clone();
        v.push(0);
        assert_eq!(Request::decode(Bytes::from(v)), Err(WireError::Trailing(1)));
        // A blob length beyond the body is refused, not trusted.
        let mut v = to_vec(&Request::Probe(Bytes::from_static(b"abcd")).encode());
        v[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Request::decode(Bytes::from(v)),
            Err(WireError::Truncated(_))
        ));
    }
}
