//! Batched packet I/O: TUN offloads and UDP GSO/GRO.
//!
//! ```text
//! TUN (IFF_VNET_HDR) ─ one read ─► GSO super-packet ─ split ─► ≤128 segments
//!   (each placed after TRANSPORT_HEADER_LEN bytes of headroom, sealed in place)
//!   ─► UdpBatch: equal-size datagrams to one destination, contiguous
//!   ─► one sendmsg with UDP_SEGMENT (GSO)
//! UDP (UDP_GRO) ─ one recvmmsg ─► up to RECV_BATCH datagrams or GRO batches,
//!   each of many datagrams at `stride`
//!   ─► opened in place ─► TunBatch ─► coalesced (GRO) ─► few TUN writes
//! ```
//!
//! Buffers are allocated once and reused: no allocation per packet.

use std::io::IoSliceMut;
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::debug;

/// Socket buffer size requested for the UDP socket (as wireguard-go).
pub const SOCKET_BUFFER: usize = 7 << 20;

/// Datagrams (or GRO batches) taken by one `recvmmsg`: a flood of small
/// datagrams that cannot be coalesced costs one system call per this many.
pub const RECV_BATCH: usize = 16;

/// Room for one received datagram or GRO batch: the kernel coalesces at
/// most 64 KiB into one (`GRO_LEGACY_MAX_SIZE`).
pub const RECV_SLOT: usize = 1 << 16;

/// Most bytes in one GSO send: a UDP datagram's payload limit (65507 for
/// IPv4) rounded down; the kernel refuses larger sends, and quinn-udp drops
/// such a failure silently.
const MAX_GSO_BYTES: usize = 65_000;

/// The UDP socket with quinn-udp's GSO/GRO state.
pub struct Udp {
    pub sock: UdpSocket,
    state: UdpSocketState,
    /// Datagrams waiting to go out in one GSO send.
    batch: Vec<u8>,
    batch_dst: Option<SocketAddr>,
    batch_seg: usize,
    batch_count: usize,
    max_segments: usize,
}

impl Udp {
    pub fn new(sock: UdpSocket) -> std::io::Result<Self> {
        let state = UdpSocketState::new((&sock).into())?;
        // Best effort: the kernel caps these at net.core.[rw]mem_max.
        let _ = state.set_send_buffer_size((&sock).into(), SOCKET_BUFFER);
        let _ = state.set_recv_buffer_size((&sock).into(), SOCKET_BUFFER);
        let max_segments = state.max_gso_segments().clamp(1, 64);
        Ok(Self {
            sock,
            state,
            batch: Vec::with_capacity(64 * 2048),
            batch_dst: None,
            batch_seg: 0,
            batch_count: 0,
            max_segments,
        })
    }

    /// Adds a sealed datagram to the pending GSO batch, flushing first when
    /// it cannot join (another destination, another size, a full batch, or
    /// a shorter datagram already closed the batch).
    pub async fn queue(&mut self, dst: SocketAddr, datagram: &[u8]) {
        let joins = self.batch_dst == Some(dst)
            && datagram.len() <= self.batch_seg
            && self.batch_count < self.max_segments
            && self.batch.len() + datagram.len() <= MAX_GSO_BYTES
            && self.batch.len() == self.batch_count * self.batch_seg;
        if !joins {
            self.flush().await;
            self.batch_dst = Some(dst);
            self.batch_seg = datagram.len();
        }
        self.batch.extend_from_slice(datagram);
        self.batch_count += 1;
    }

    /// Sends the pending batch, if any.
    pub async fn flush(&mut self) {
        let Some(dst) = self.batch_dst.take() else {
            return;
        };
        let t = Transmit {
            destination: dst,
            ecn: None,
            contents: &self.batch,
            segment_size: (self.batch_count > 1).then_some(self.batch_seg),
            src_ip: None,
        };
        let state = &self.state;
        let sock = &self.sock;
        if let Err(e) = sock
            .async_io(Interest::WRITABLE, || state.send(sock.into(), &t))
            .await
        {
            debug!("UDP send to {dst}: {e}");
        }
        self.batch.clear();
        self.batch_count = 0;
    }

    /// As [`Self::recv`], without waiting: `WouldBlock` when nothing is in.
    pub fn try_recv(
        &self,
        buf: &mut [u8],
        meta: &mut [RecvMeta; RECV_BATCH],
    ) -> std::io::Result<usize> {
        self.sock
            .try_io(Interest::READABLE, || self.recv_now(buf, meta))
    }

    /// Receives up to [`RECV_BATCH`] datagrams or GRO batches (one
    /// `recvmmsg`), the n-th into `buf[n * RECV_SLOT..]`; returns how many.
    pub async fn recv(
        &self,
        buf: &mut [u8],
        meta: &mut [RecvMeta; RECV_BATCH],
    ) -> std::io::Result<usize> {
        self.sock
            .async_io(Interest::READABLE, || self.recv_now(buf, meta))
            .await
    }

    /// One `recvmmsg` into `RECV_SLOT`-sized slots of `buf`.
    fn recv_now(
        &self,
        buf: &mut [u8],
        meta: &mut [RecvMeta; RECV_BATCH],
    ) -> std::io::Result<usize> {
        let mut iovs: [IoSliceMut<'_>; RECV_BATCH] = {
            let mut chunks = buf.chunks_mut(RECV_SLOT);
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()))
        };
        self.state.recv((&self.sock).into(), &mut iovs, meta)
    }
}
