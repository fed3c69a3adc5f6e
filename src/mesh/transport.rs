//! Transports: TCP and QUIC for real nodes, libp2p's in-process memory transport for
//! simulations; Noise for authentication and encryption, Yamux for multiplexing over
//! TCP and memory (QUIC brings its own TLS 1.3 and streams).
//!
//! TCP and memory connections count the bytes that cross them *below* Noise and Yamux,
//! so [`Traffic`] reports what really went over the wire (framing, encryption tags and
//! protocol chatter included, TCP/IP headers excluded). QUIC traffic is not counted.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, MemoryTransport, OrTransport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::{PeerId, Transport, noise, quic, tcp, yamux};

use super::error::MeshError;

/// Which transports a node uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// TCP and QUIC over the operating system's network.
    Network,
    /// libp2p's in-process memory transport (`/memory/N` addresses), for simulations of
    /// many nodes in one process.
    Memory,
}

/// Bytes that went over this node's TCP and memory connections.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Traffic {
    /// Bytes written to connections so far.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Bytes read from connections so far.
    pub fn received(&self) -> u64 {
        self.inner.received.load(Ordering::Relaxed)
    }
}

/// A connection that counts its bytes into a [`Traffic`].
struct Counted<S> {
    inner: S,
    traffic: Traffic,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.traffic
                .inner
                .received
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.traffic
                .inner
                .sent
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Time allowed for the Noise and Yamux upgrades of a new connection.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(20);

/// A boxed transport of `kind` for `keypair`, counting into `traffic`.
pub fn build(
    kind: TransportKind,
    keypair: &Keypair,
    traffic: &Traffic,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, MeshError> {
    let noise = noise::Config::new(keypair).map_err(|e| MeshError::Setup(e.to_string()))?;
    // Shard messages are up to 8 MiB; Yamux's default 256 KiB window per stream with
    // a generous per-connection budget lets one stream move at full speed.
    let yamux = yamux::Config::default();
    let traffic = traffic.clone();
    Ok(match kind {
        TransportKind::Network => {
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .map(move |s, _| Counted {
                    inner: s,
                    traffic: traffic.clone(),
                })
                .upgrade(Version::V1Lazy)
                .authenticate(noise)
                .multiplex(yamux)
                .timeout(UPGRADE_TIMEOUT)
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
            let quic = quic::tokio::Transport::new(quic::Config::new(keypair))
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
            OrTransport::new(quic, tcp)
                .map(|either, _| either.into_inner())
                .boxed()
        }
        TransportKind::Memory => MemoryTransport::default()
            .map(move |s, _| Counted {
                inner: s,
                traffic: traffic.clone(),
            })
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux)
            .timeout(UPGRADE_TIMEOUT)
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    })
}
