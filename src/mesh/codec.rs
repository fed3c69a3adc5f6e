//! The shard protocol's `request_response::Codec`: length-prefixed frames with a hard
//! size limit (layout in `mesh::wire`).
//!
//! # Limits
//!
//! * A frame's 4-byte length is read first and checked against the codec's limit
//!   (default [`MAX_MESSAGE`], 8 MiB) **before** any buffer is allocated: a peer that
//!   announces 4 GiB costs us four bytes of reading and a closed stream.
//! * The buffer is then filled with `read_exact`; a peer that stops sending is cut off
//!   by the request timeout of the request-response behaviour, which covers reading the
//!   request, answering it and writing the response (see `mesh::behaviour`).
//! * Messages we send are held to the same limit, so we never write what a peer of the
//!   same version would refuse.
//!
//! Decoding errors become `io::ErrorKind::InvalidData`; the behaviour then drops the
//! stream and reports an inbound or outbound failure. Nothing a peer sends can panic.

use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use super::wire::{Encoded, MAX_MESSAGE, Request, Response};

/// The shard protocol's name.
pub const SHARD_PROTOCOL: StreamProtocol = StreamProtocol::new("/datamesh/shard/1.0.0");

/// The shard protocol codec. Cheap to clone (the behaviour clones it per stream).
#[derive(Clone, Copy, Debug)]
pub struct ShardCodec {
    max_message: usize,
}

impl Default for ShardCodec {
    fn default() -> Self {
        ShardCodec {
            max_message: MAX_MESSAGE,
        }
    }
}

impl ShardCodec {
    /// A codec that refuses frames larger than `max_message` bytes.
    pub fn with_limit(max_message: usize) -> Self {
        ShardCodec { max_message }
    }

    /// The frame size limit.
    pub fn limit(&self) -> usize {
        self.max_message
    }
}

/// Reads one frame body of at most `limit` bytes.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, limit: usize) -> io::Result<Bytes> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > limit {
        // Refused before allocating: the length is the peer's claim, not a fact.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes refused (limit {limit})"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(Bytes::from(buf))
}

/// Writes one frame.
pub async fn write_frame<T: AsyncWrite + Unpin>(
    io: &mut T,
    body: &Encoded,
    limit: usize,
) -> io::Result<()> {
    let len = body.len();
    if len == 0 || len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {len} bytes exceeds the shard protocol limit of {limit} bytes"),
        ));
    }
    let mut head = Vec::with_capacity(4 + body.head.len());
    head.extend_from_slice(&(len as u32).to_be_bytes());
    head.extend_from_slice(&body.head);
    io.write_all(&head).await?;
    if !body.blob.is_empty() {
        io.write_all(&body.blob).await?;
    }
    io.flush().await
}

fn invalid(e: super::wire::WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[async_trait]
impl libp2p::request_response::Codec for ShardCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        Request::decode(read_frame(io, self.max_message).await?).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        Response::decode(read_frame(io, self.max_message).await?).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req.encode(), self.max_message).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res.encode(), self.max_message).await
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;
    use libp2p::request_response::Codec;
    use proptest::prelude::*;

    use super::*;
    use crate::ids::ShardId;
    use crate::mesh::wire::{NodeStats, Status};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    async fn round_trip_request(req: Request) -> Request {
        let mut codec = ShardCodec::default();
        let mut out = Vec::new();
        codec
            .write_request(&SHARD_PROTOCOL, &mut out, req)
            .await
            .unwrap();
        codec
            .read_request(&SHARD_PROTOCOL, &mut Cursor::new(out))
            .await
            .unwrap()
    }

    async fn round_trip_response(resp: Response) -> Response {
        let mut codec = ShardCodec::default();
        let mut out = Vec::new();
        codec
            .write_response(&SHARD_PROTOCOL, &mut out, resp)
            .await
            .unwrap();
        codec
            .read_response(&SHARD_PROTOCOL, &mut Cursor::new(out))
            .await
            .unwrap()
    }

    #[test]
    fn frames_round_trip_through_the_codec() {
        let id = ShardId::of(b"shard");
        let big = Bytes::from(vec![0xA5; MAX_MESSAGE - 64]);
        for req in [
            Request::Put {
                id,
                bytes: big.clone(),
            },
            Request::Get(id),
            Request::Has(id),
            Request::Delete(id),
            Request::Stat,
            Request::Probe(Bytes::from_static(b"p")),
        ] {
            assert_eq!(block_on(round_trip_request(req.clone())), req);
        }
        for resp in [
            Response::Stored,
            Response::Shard(big),
            Response::Has(true),
            Response::Deleted,
            Response::Stats(NodeStats {
                shards: 1,
                bytes: 2,
                available: 3,
                capacity: None,
            }),
            Response::ProbeReceived(9),
            Response::Error(Status::Busy, "slow down".into()),
        ] {
            assert_eq!(block_on(round_trip_response(resp.clone())), resp);
        }
    }

    #[test]
    fn a_4_gib_length_is_refused_before_reading_or_allocating() {
        // Only the prefix is there: had the decoder tried to allocate and fill 4 GiB it
        // would report UnexpectedEof (or abort); refusing the claim is InvalidData.
        let mut io = Cursor::new(u32::MAX.to_be_bytes().to_vec());
        let err = block_on(read_frame(&mut io, MAX_MESSAGE)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(io.position(), 4, "nothing past the prefix was read");
        let mut io = Cursor::new(((MAX_MESSAGE + 1) as u32).to_be_bytes().to_vec());
        let err = block_on(read_frame(&mut io, MAX_MESSAGE)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // An empty frame is no message either.
        let mut io = Cursor::new(0u32.to_be_bytes().to_vec());
        assert!(block_on(read_frame(&mut io, MAX_MESSAGE)).is_err());
    }

    #[test]
    fn oversized_messages_are_not_sent() {
        let mut codec = ShardCodec::with_limit(100);
        let mut out = Vec::new();
        let req = Request::Probe(Bytes::from(vec![0; 200]));
        let err = block_on(codec.write_request(&SHARD_PROTOCOL, &mut out, req)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(out.is_empty(), "nothing written");
    }

    #[test]
    fn a_short_stream_is_an_error_not_a_hang() {
        let mut out = Vec::new();
        block_on(write_frame(
            &mut out,
            &Request::Get(ShardId::of(b"x")).encode(),
            MAX_MESSAGE,
        ))
        .unwrap();
        out.truncate(out.len() - 3);
        let err = block_on(read_frame(&mut Cursor::new(out), MAX_MESSAGE)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// Frames that look plausible (version 1, a real tag) more often than random bytes
    /// would, so the fuzzing reaches the field decoders.
    fn frame() -> impl Strategy<Value = Vec<u8>> {
        let tags = prop::sample::select(vec![
            0x01u8, 0x02, 0x03, 0x04, 0x05, 0x06, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0xFF, 0x00,
        ]);
        (
            any::<bool>(),
            tags,
            prop::collection::vec(any::<u8>(), 0..200),
            any::<Option<u32>>(),
        )
            .prop_map(|(v1, tag, rest, len)| {
                let mut body = vec![if v1 { 1 } else { 2 }, tag];
                body.extend(rest);
                let len = len.unwrap_or(body.len() as u32);
                let mut frame = len.to_be_bytes().to_vec();
                frame.extend(body);
                frame
            })
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic_the_decoder(bytes in frame()) {
            let mut codec = ShardCodec::default();
            let _ = block_on(codec.read_request(&SHARD_PROTOCOL, &mut Cursor::new(bytes.clone())));
            let _ = block_on(codec.read_response(&SHARD_PROTOCOL, &mut Cursor::new(bytes)));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut codec = ShardCodec::default();
            let _ = block_on(codec.read_request(&SHARD_PROTOCOL, &mut Cursor::new(bytes.clone())));
            let _ = block_on(codec.read_response(&SHARD_PROTOCOL, &mut Cursor::new(bytes)));
        }

        #[test]
        fn put_requests_round_trip(data in prop::collection::vec(any::<u8>(), 0..20_000)) {
            let req = Request::Put { id: ShardId::of(&data), bytes: Bytes::from(data) };
            prop_assert_eq!(block_on(round_trip_request(req.clone())), req);
        }
    }
}
