//! The endpoint: every peer of one node, their handshakes, sessions and
//! timers, as one sans-IO state machine.
//!
//! Call order (a driver loop):
//! 1. [`Endpoint::handle_datagram`] for each UDP datagram received;
//!    [`Endpoint::send`] for each IP packet to a peer;
//! 2. [`Endpoint::handle_timeout`] whenever [`Endpoint::poll_timeout`]'s
//!    deadline passes (early calls are harmless);
//! 3. after any of these, drain [`Endpoint::poll_transmit`] (handshake and
//!    control datagrams to send) and [`Endpoint::poll_event`].
//!
//! Data packets never go through the transmit queue: `send` seals in place and
//! tells the caller where to send the buffer, and `handle_datagram` opens in
//! place and tells the caller where the plaintext is. Time (`now` for timers,
//! `unix_nanos` for certificates and timestamps) and randomness are arguments.
//!
//! Flow of a packet out: `send` → current session? seal → caller sends.
//! Otherwise queue (bounded) and start a handshake; the queue is sealed into
//! transmits when the handshake completes.
//! Flow in: classify (type, length) → initiation fragment: mac1 (+ mac2 under
//! load, else cookie reply) → reassembly → `handshake::respond`; response
//! fragment: index lookup → mac1 → reassembly → `read_response`; transport:
//! index lookup → replay check → open → inner source must be in the peer's
//! certificate.

use core::fmt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;

use crate::bundle::{Bundle, BundleError, BundleKind, Content, MAX_BUNDLE_LEN};
use crate::cert::{Certificate, TrustedCa};
use crate::control::{self, Advert, Control, MAX_ADVERT_ENTRIES};
use crate::cookie::{self, mac1_of, CookieChecker, MacVerdict, COOKIE_VALIDITY};
use crate::filter::{self, Denied, Direction, Filter, FilterLimits};
use crate::fragment::{fragment, FragmentView, Reassembler, Reassembly, ReassemblyLimits};
use crate::handshake::{self, HandshakeError, Identity, InitiatorHandshake, ReplayGuard};
use crate::health::{HealthConfig, LinkChange, LinkHealth, LinkStatus};
use crate::pmtu::PathMtu;
use crate::policy::{self as pol, Compiled, Subject};
use crate::provider::{Crypto, MAC_LEN};
use crate::route::{self, OwnLink, RouteConfig, Router};
use crate::session::{Session, SessionError};
use crate::store::SharedStore;
use crate::table::Table;
use crate::timers::*;
use crate::wire::{
    classify, MessageKind, NodeId, RelayHeader, TransportHeader, COOKIE_REPLY_LEN, MAX_RELAY_TTL,
    RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD, TYPE_TRANSPORT,
};

/// Identifies a peer within one [`Endpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// Endpoint settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Accept handshakes from nodes not added with [`Endpoint::add_peer`]
    /// (any node with a valid certificate from the mesh CA).
    pub accept_unknown_peers: bool,
    /// Initiation fragments per second above which mac2 (a cookie) is required.
    pub handshake_load_threshold: u32,
    /// Packets queued per peer while its handshake is in progress.
    pub queue_limit: usize,
    /// Reassembly bounds.
    pub reassembly: ReassemblyLimits,
    /// Link probing; `None` turns probing (and with it failover) off, leaving
    /// exactly WireGuard's timers.
    pub health: Option<HealthConfig>,
    /// Route computation.
    pub route: RouteConfig,
    /// Forward relayed datagrams for other nodes. A node that does not is a
    /// *stub*: its adverts say so, nobody routes through it, it floods no
    /// adverts and receives only those of relaying nodes (so a hub's leaves
    /// carry no link state of each other).
    pub relay: bool,
    /// Own link-state advert refresh interval (also sent at once on a change).
    pub advert_interval: Duration,
    /// Connection-tracking bounds of the policy filter.
    pub filter: FilterLimits,
    /// Offer and accept AES-256-GCM for transport packets when this machine
    /// has AES hardware (a session uses it when both ends do); otherwise
    /// ChaCha20-Poly1305.
    pub aes_gcm: bool,
    /// The underlay's MTU: a data packet whose sealed datagram (with outer
    /// IP and UDP headers, and a relay header while relayed) would exceed it
    /// is not sent; [`SendOutcome::TooBig`] says how large an inner packet
    /// fits, for the driver's ICMP "packet too big".
    pub underlay_mtu: usize,
    /// Verified certificates and adverts shared with other endpoints of
    /// this process (the simulator; see [`crate::store`]). Ignored unless
    /// made for this endpoint's CA.
    pub shared: Option<Arc<SharedStore>>,
    /// Measure each direct link's path MTU with padded probes
    /// ([`crate::pmtu`]) and refuse data larger than it (with
    /// [`SendOutcome::TooBig`]); `underlay_mtu` is the ceiling.
    pub pmtu_discovery: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            accept_unknown_peers: true,
            handshake_load_threshold: 1000,
            queue_limit: 64,
            reassembly: ReassemblyLimits::default(),
            health: Some(HealthConfig::default()),
            route: RouteConfig::default(),
            relay: true,
            advert_interval: Duration::from_secs(10),
            filter: FilterLimits::default(),
            aes_gcm: true,
            underlay_mtu: 1500,
            shared: None,
            pmtu_discovery: true,
        }
    }
}

/// Why a datagram or packet was dropped. Each has a counter in [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Failed the (type, length) or header check.
    Malformed,
    /// mac1 did not verify.
    BadMac1,
    /// Under load without a valid mac2; a cookie reply was sent.
    CookieRequired,
    /// A fragment that disagrees with its message.
    FragmentInconsistent,
    /// A duplicate fragment.
    FragmentDuplicate,
    /// No session or pending handshake has this index.
    UnknownIndex,
    /// Counter replayed or behind the window.
    Replay,
    /// Authentication tag did not verify.
    Decrypt,
    /// The session is past its reject time.
    SessionExpired,
    /// Inner source address is not in the sender's certificate.
    SpoofedSource,
    /// The handshake failed (see the handshake failure counters).
    HandshakeFailed,
    /// A handshake from a node that is not a configured peer.
    UnknownPeer,
    /// Queue full while a handshake is in progress.
    QueueFull,
    /// The peer has no known underlay address.
    NoEndpoint,
    /// A cookie reply that does not open.
    BadCookieReply,
    /// Inner packet is not IPv4 or IPv6.
    NotIp,
    /// The send buffer lacked header or tag room (driver bug).
    BufferTooSmall,
    /// Handshake gave up after REKEY_ATTEMPT_TIME; queued packets dropped.
    HandshakeTimeout,
    /// A relayed datagram from an address that is not a peer with a session.
    RelayUnknownHop,
    /// A relayed datagram for a node we have no usable path to.
    RelayNoRoute,
    /// A relayed datagram whose TTL ran out.
    RelayTtlExpired,
    /// A relayed datagram whose next hop is where it came from.
    RelayLoop,
    /// Relaying is disabled on this node.
    RelayRefused,
    /// A control message that does not decode.
    BadControl,
    /// The policy refused the inner packet (see [`Endpoint::filter`] for
    /// the direction and reason).
    PolicyDenied,
    /// The peer's certificate is revoked, or it is outside our enclaves:
    /// no session is kept with it.
    PeerRefused,
    /// The sealed datagram would exceed the underlay MTU on its path (a
    /// relayed path adds a relay header); the driver answers the sender with
    /// an ICMP "packet too big" ([`SendOutcome::TooBig`]).
    TooBig,
}

impl DropReason {
    /// All reasons, in counter order.
    pub const ALL: [DropReason; 27] = [
        Self::Malformed,
        Self::BadMac1,
        Self::CookieRequired,
        Self::FragmentInconsistent,
        Self::FragmentDuplicate,
        Self::UnknownIndex,
        Self::Replay,
        Self::Decrypt,
        Self::SessionExpired,
        Self::SpoofedSource,
        Self::HandshakeFailed,
        Self::UnknownPeer,
        Self::QueueFull,
        Self::NoEndpoint,
        Self::BadCookieReply,
        Self::NotIp,
        Self::BufferTooSmall,
        Self::HandshakeTimeout,
        Self::RelayUnknownHop,
        Self::RelayNoRoute,
        Self::RelayTtlExpired,
        Self::RelayLoop,
        Self::RelayRefused,
        Self::BadControl,
        Self::PolicyDenied,
        Self::PeerRefused,
        Self::TooBig,
    ];

    /// Stable name for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadMac1 => "bad_mac1",
            Self::CookieRequired => "cookie_required",
            Self::FragmentInconsistent => "fragment_inconsistent",
            Self::FragmentDuplicate => "fragment_duplicate",
            Self::UnknownIndex => "unknown_index",
            Self::Replay => "replay",
            Self::Decrypt => "decrypt",
            Self::SessionExpired => "session_expired",
            Self::SpoofedSource => "spoofed_source",
            Self::HandshakeFailed => "handshake_failed",
            Self::UnknownPeer => "unknown_peer",
            Self::QueueFull => "queue_full",
            Self::NoEndpoint => "no_endpoint",
            Self::BadCookieReply => "bad_cookie_reply",
            Self::NotIp => "not_ip",
            Self::BufferTooSmall => "buffer_too_small",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::RelayUnknownHop => "relay_unknown_hop",
            Self::RelayNoRoute => "relay_no_route",
            Self::RelayTtlExpired => "relay_ttl_expired",
            Self::RelayLoop => "relay_loop",
            Self::RelayRefused => "relay_refused",
            Self::BadControl => "bad_control",
            Self::PolicyDenied => "policy_denied",
            Self::PeerRefused => "peer_refused",
            Self::TooBig => "too_big",
        }
    }

    /// Counter index: the declaration order, which `ALL` follows (checked by
    /// a test), so counting a drop costs no search on the flood path.
    fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    drops: [u64; DropReason::ALL.len()],
    /// Handshakes completed (either role).
    pub handshakes_completed: u64,
    /// Handshake failures by [`HandshakeError::reason`].
    pub handshake_failures: HashMap<&'static str, u64>,
    /// Cookie replies sent.
    pub cookie_replies_sent: u64,
    /// Handshake initiations sent (including retransmissions).
    pub initiations_sent: u64,
    /// Relayed datagrams forwarded for other nodes.
    pub relayed_packets: u64,
    /// Bytes of relayed datagrams forwarded for other nodes.
    pub relayed_bytes: u64,
    /// Times a peer's path changed (direct ↔ relay, or relay ↔ relay).
    pub route_changes: u64,
    /// Times a peer's path moved from direct to a relay.
    pub failovers: u64,
    /// Probes sent.
    pub probes_sent: u64,
    /// Link-state advert bytes sent (own and flooded), before encryption.
    pub gossip_bytes_sent: u64,
    /// Link-state advert messages sent (own and flooded).
    pub gossip_messages_sent: u64,
    /// Bundles (policy, revocation) put in force.
    pub bundles_applied: u64,
    /// Bundles refused, by [`BundleError::reason`].
    pub bundle_rejects: HashMap<&'static str, u64>,
    /// Bundle bytes sent in chunks.
    pub bundle_bytes_sent: u64,
    /// Peers retired: introduced themselves, then their link stayed down.
    pub peers_retired: u64,
    /// Adverts refused, by reason: `bad_signature` (not signed by the
    /// origin's advert key: altered or forged on the way), `bad_certificate`
    /// (the certificate offered for the origin failed verification),
    /// `inadmissible_origin` (revoked or outside our enclaves),
    /// `parked_full` (too many adverts waiting for certificates).
    pub advert_rejects: HashMap<&'static str, u64>,
    /// Origin certificates fetched from neighbours.
    pub certs_fetched: u64,
    /// Times this node's timers ran late by the health stall threshold or
    /// more (it was not running; probes in flight were not blamed on peers).
    pub local_stalls: u64,
    /// Path MTU probes sent.
    pub pmtu_probes_sent: u64,
}

impl Stats {
    /// Drops counted for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.slot()]
    }

    /// Total drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    fn drop(&mut self, reason: DropReason) {
        self.drops[reason.slot()] += 1;
    }

    fn handshake_failed(&mut self, e: &HandshakeError) {
        *self.handshake_failures.entry(e.reason()).or_insert(0) += 1;
    }
}

/// A datagram the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination underlay address.
    pub dst: SocketAddr,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// Something the driver may want to log or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer that introduced itself has been unreachable for
    /// [`RETIRE_AFTER`]: no more probes or handshakes until it (or our
    /// traffic for it) comes back.
    PeerRetired {
        /// The peer.
        peer: PeerId,
    },
    /// A handshake completed; for the responder the session is confirmed
    /// when the first packet arrives.
    HandshakeCompleted {
        /// The peer.
        peer: PeerId,
        /// The peer's certificate name.
        name: String,
        /// Whether we initiated.
        initiator: bool,
    },
    /// A handshake message from `src` was rejected.
    HandshakeFailed {
        /// The peer, if known.
        peer: Option<PeerId>,
        /// Where it came from.
        src: SocketAddr,
        /// Why.
        error: HandshakeError,
    },
    /// A handshake was retried for REKEY_ATTEMPT_TIME without success.
    HandshakeTimedOut {
        /// The peer.
        peer: PeerId,
        /// Queued packets dropped.
        dropped: usize,
    },
    /// A cookie reply arrived; the handshake was resent with mac2.
    CookieReceived {
        /// The peer.
        peer: PeerId,
    },
    /// Path MTU discovery changed the largest datagram the direct link to
    /// `peer` carries.
    PathMtuChanged {
        /// The peer.
        peer: PeerId,
        /// Datagram bytes, outer IP and UDP headers included.
        mtu: usize,
    },
    /// Probes found the direct link to `peer` down or back up.
    LinkChanged {
        /// The peer.
        peer: PeerId,
        /// Whether the link is up now.
        up: bool,
    },
    /// A peer's sessions were torn down and further handshakes with it are
    /// refused: its certificate was revoked, or a new policy put it outside
    /// our enclaves.
    PeerRefused {
        /// The peer.
        peer: PeerId,
        /// Why.
        error: HandshakeError,
    },
    /// A bundle was put in force (the driver should persist it).
    BundleApplied {
        /// Which.
        kind: BundleKind,
        /// Its version.
        version: u64,
    },
    /// A bundle received by gossip was refused; the one in force stays.
    BundleRejected {
        /// Which.
        kind: BundleKind,
        /// Why.
        error: BundleError,
    },
    /// Datagrams for `peer` now travel via `via` (`None`: directly).
    PathChanged {
        /// The peer.
        peer: PeerId,
        /// The relay, if any.
        via: Option<PeerId>,
    },
}

/// Outcome of [`Endpoint::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Sealed: send `buf[..len]` to `dst`.
    Send {
        /// Destination.
        dst: SocketAddr,
        /// Datagram length.
        len: usize,
    },
    /// Queued until the handshake completes.
    Queued,
    /// Dropped ([`DropReason::TooBig`]): the path fits inner packets of at
    /// most `mtu` bytes. The driver tells the sender (ICMP fragmentation
    /// needed / packet too big), as a router would.
    TooBig {
        /// Largest inner packet that fits the current path.
        mtu: usize,
    },
    /// Dropped.
    Dropped(DropReason),
}

/// Outcome of [`Endpoint::prepare_send`].
#[derive(Debug)]
pub enum Prepared {
    /// Everything but the AEAD pass is done: [`SealPlan::seal`] it (outside
    /// any lock held around the endpoint) and send.
    Seal(SealPlan),
    /// Queued or dropped (no sealing needed).
    Done(SendOutcome),
}

/// A packet whose counter is reserved and header written: sealing it needs
/// the buffer only.
#[derive(Debug)]
pub struct SealPlan {
    job: crate::session::SealJob,
    dst: SocketAddr,
    relay: Option<RelayHeader>,
}

impl SealPlan {
    /// Seals the packet in `buf` (the buffer [`Endpoint::prepare_send`] saw)
    /// and, on a relayed path, puts the relay header in front. Returns where
    /// to send `buf[..len]`.
    pub fn seal(&self, buf: &mut [u8]) -> (SocketAddr, usize) {
        let mut n = self.job.seal(buf);
        if let Some(h) = self.relay {
            buf.copy_within(..n, RELAY_HEADER_LEN);
            h.write(buf);
            n += RELAY_HEADER_LEN;
        }
        (self.dst, n)
    }
}

/// Outcome of [`Endpoint::prepare_datagram`].
#[derive(Debug)]
pub enum Incoming {
    /// A transport packet for a live session: [`OpenPlan::open`] it (outside
    /// any lock), then hand the result to [`Endpoint::finish_datagram`].
    Open(OpenPlan),
    /// Fully handled.
    Done(Received),
}

/// A transport packet that passed the index and replay checks.
#[derive(Debug)]
pub struct OpenPlan {
    job: crate::session::OpenJob,
    peer: PeerId,
    local_index: u32,
    src: SocketAddr,
}

impl OpenPlan {
    /// Decrypts the datagram in place.
    pub fn open(&self, buf: &mut [u8]) -> Result<usize, SessionError> {
        self.job.open(buf)
    }
}

/// Outcome of [`Endpoint::handle_datagram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// An IP packet from `peer` at `buf[TRANSPORT_HEADER_LEN..][..len]`.
    Data {
        /// The sender.
        peer: PeerId,
        /// Plaintext length.
        len: usize,
    },
    /// A keepalive from `peer`.
    Keepalive {
        /// The sender.
        peer: PeerId,
    },
    /// A handshake or cookie message, consumed (see transmits and events).
    Handshake,
    /// A control message from `peer` (probe, reply, advert), consumed.
    Control {
        /// The sender.
        peer: PeerId,
    },
    /// A relayed datagram for another node: send `buf[..len]` (TTL already
    /// decremented in place) to `dst`.
    Forward {
        /// The next hop's underlay address.
        dst: SocketAddr,
        /// Datagram length.
        len: usize,
    },
    /// Dropped.
    Dropped(DropReason),
}

struct Pending {
    hs: InitiatorHandshake,
    sent_mac1: [u8; MAC_LEN],
    cookie_resent: bool,
}

/// Per-peer traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Payload bytes sent.
    pub tx_bytes: u64,
    /// Payload bytes received.
    pub rx_bytes: u64,
    /// Packets sent (including keepalives).
    pub tx_packets: u64,
    /// Packets received (including keepalives).
    pub rx_packets: u64,
}

struct Peer {
    static_public: [u8; 32],
    node_id: NodeId,
    /// Probe state of the direct link (once it has an address and a session).
    health: Option<LinkHealth>,
    /// Path MTU of the direct link (with `health`, when discovery is on).
    pmtu: Option<PathMtu>,
    /// The relay datagrams go through, or `None` for the direct path.
    via: Option<PeerId>,
    /// Adverts were exchanged with this neighbour since its link last came up.
    synced: bool,
    /// DH(our static, their static), computed once (None: low-order key).
    static_static: Option<[u8; 32]>,
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    endpoint: Option<SocketAddr>,
    cert: Option<Certificate>,
    current: Option<Session>,
    previous: Option<Session>,
    next: Option<Session>,
    pending: Option<Pending>,
    cookie: Option<([u8; MAC_LEN], Instant)>,
    queue: VecDeque<Vec<u8>>,
    persistent_keepalive: Option<Duration>,
    attempt_started: Option<Instant>,
    retransmit_at: Option<Instant>,
    keepalive_at: Option<Instant>,
    new_handshake_at: Option<Instant>,
    persistent_at: Option<Instant>,
    last_handshake: Option<Instant>,
    /// When a packet for an unknown session last made us re-handshake.
    last_resync: Option<Instant>,
    stats: PeerStats,
    /// Policy identities of the peer's addresses, computed under filter
    /// generation `.0`.
    idents: (u64, Vec<(IpAddr, pol::Identity)>),
    /// Revoked or outside our enclaves: no handshake either way.
    refused: bool,
    /// Introduced itself by a handshake rather than being added with
    /// [`Endpoint::add_peer`]: retired when unreachable for long.
    learned: bool,
}

/// The earliest of peer `p`'s timers: everything
/// [`Endpoint::handle_timeout`] acts on for it. A function of the peer alone
/// (the [`Table`] keeps it in a heap and computes it again after a write).
fn peer_deadline(p: &Peer) -> Option<Instant> {
    let keys = (p.current.is_some() || p.previous.is_some() || p.next.is_some())
        .then_some(p.last_handshake)
        .flatten()
        .map(|t| t + ZERO_KEYS_AFTER);
    [
        p.retransmit_at,
        p.keepalive_at,
        p.new_handshake_at,
        p.persistent_at,
        keys,
        p.health.as_ref().map(LinkHealth::next_deadline),
        p.pmtu.as_ref().and_then(PathMtu::next_deadline),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// A read-only view of a peer, for status output.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Id.
    pub id: PeerId,
    /// X25519 static key.
    pub static_public: [u8; 32],
    /// Underlay address, if known.
    pub endpoint: Option<SocketAddr>,
    /// Verified certificate, once a handshake completed.
    pub cert: Option<Certificate>,
    /// When the last handshake completed.
    pub last_handshake: Option<Instant>,
    /// Whether a usable session exists.
    pub has_session: bool,
    /// Counters.
    pub stats: PeerStats,
    /// Wire id.
    pub node_id: NodeId,
    /// The relay traffic goes through, or `None` when direct.
    pub via: Option<PeerId>,
    /// The direct link's probe results, if it is probed.
    pub link: Option<LinkInfo>,
    /// Revoked or outside our enclaves: no sessions either way.
    pub refused: bool,
    /// The current session's transport AEAD.
    pub suite: Option<crate::provider::Suite>,
}

/// Probe results of a direct link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkInfo {
    /// Up by its probes.
    pub up: bool,
    /// Smoothed RTT.
    pub srtt: Option<Duration>,
    /// Last RTT sample.
    pub last_rtt: Option<Duration>,
    /// RTT variation.
    pub jitter: Duration,
    /// Fraction of recent probes lost.
    pub loss: f64,
    /// Largest datagram the link carries (outer headers included): the
    /// underlay MTU until discovery found less.
    pub path_mtu: Option<usize>,
    /// Path MTU discovery is still probing.
    pub pmtu_searching: bool,
}

/// One row of the route table.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteInfo {
    /// Destination.
    pub dst: NodeId,
    /// The destination as a peer, if it is one.
    pub dst_peer: Option<PeerId>,
    /// First hop (the destination itself when direct).
    pub next_hop: NodeId,
    /// The first hop as a peer, if it is one.
    pub next_hop_peer: Option<PeerId>,
    /// Path cost, µs (see `proto::route`).
    pub metric_us: u64,
    /// Links on the path.
    pub hops: u8,
    /// How long this next hop has been chosen.
    pub age: Duration,
}

/// Where a datagram came from: directly, or relayed from `origin` by the
/// neighbour at `hop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Direct(SocketAddr),
    Relayed { origin: NodeId, hop: SocketAddr },
}

impl Source {
    /// The address that keys reassembly and cookies: the real one, or for a
    /// relayed origin an address in the discard prefix 100::/64 (RFC 6666)
    /// carrying its id, which is never sent to.
    fn key(self) -> SocketAddr {
        match self {
            Self::Direct(a) => a,
            Self::Relayed { origin, .. } => SocketAddr::new(
                IpAddr::V6(std::net::Ipv6Addr::from(
                    (0x0100u128 << 112) | u128::from(origin.0),
                )),
                0,
            ),
        }
    }
}

/// All peers of one node. See the module docs for the call order.
pub struct Endpoint {
    node_id: NodeId,
    by_node: HashMap<NodeId, PeerId>,
    router: Router,
    advert_at: Option<Instant>,
    advert_seq: u64,
    last_originated: Option<Instant>,
    last_advert: Option<Advert>,
    last_unix_nanos: u64,
    /// When `handle_timeout` last ran (stall detection).
    last_timeout: Option<Instant>,
    /// The deadline `poll_timeout` last told the driver (stall detection
    /// compares with it instead of scanning every peer again).
    told_deadline: Option<Instant>,
    route_at: Option<Instant>,
    /// A stub's way to destinations it has no route to: its best relaying
    /// neighbour (chosen at each route computation).
    default_relay: Option<PeerId>,
    crypto: Arc<dyn Crypto>,
    ca: TrustedCa,
    identity: Identity,
    config: EndpointConfig,
    cookie_checker: CookieChecker,
    reassembler: Reassembler,
    replay_guard: ReplayGuard,
    /// Every peer ever added (never removed: a `PeerId` is an index), with
    /// their timers in a heap.
    peers: Table<Peer>,
    by_static: HashMap<[u8; 32], PeerId>,
    by_index: HashMap<u32, PeerId>,
    by_endpoint: HashMap<SocketAddr, PeerId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    load_window: Option<Instant>,
    load_count: u32,
    load_prev: u32,
    force_under_load: Option<bool>,
    stats: Stats,
    policy: Option<Arc<Compiled>>,
    filter: Filter,
    /// Own identities under filter generation `.0`.
    own_idents: (u64, Vec<(IpAddr, pol::Identity)>),
    /// Fingerprints of revoked node certificates.
    revoked: HashSet<[u8; 32]>,
    /// Bundles in force, by [`BundleKind::slot`].
    bundles: [Option<Bundle>; 2],
    /// Bundle downloads in progress, by slot.
    transfers: [Option<Transfer>; 2],
    /// When held bundles are next re-offered to every neighbour.
    offer_at: Option<Instant>,
    /// Verified, admissible certificates of advert origins (peers and
    /// nodes we only know from their adverts), by node id.
    origin_certs: HashMap<NodeId, Arc<Certificate>>,
    /// `config.shared` when it is made for our CA.
    shared: Option<Arc<SharedStore>>,
    /// Adverts whose origin's certificate we are fetching: the highest one
    /// per origin, who sent it, and when we asked that neighbour.
    parked: HashMap<NodeId, Parked>,
}

/// An advert waiting for its origin's certificate.
#[derive(Debug)]
struct Parked {
    advert: Advert,
    from: usize,
    asked: Instant,
}

/// Most adverts waiting for a certificate at once (a node joining a mesh of
/// thousands parks one per origin until the certificates arrive).
const MAX_PARKED: usize = 16_384;
/// A certificate request unanswered this long is sent again when the next
/// advert from that origin arrives.
const CERT_RETRY: Duration = Duration::from_secs(1);

/// A bundle being pulled from a neighbour, chunk by chunk.
#[derive(Debug)]
struct Transfer {
    version: u64,
    total: u32,
    buf: Vec<u8>,
    from: usize,
    deadline: Instant,
    retries: u8,
}

/// A chunk request unanswered this long is sent again...
const BUNDLE_RETRY: Duration = Duration::from_millis(500);
/// ...this many times before the download is abandoned (the next offer,
/// from anyone, starts it again).
const BUNDLE_RETRIES: u8 = 4;
/// Held bundles are re-offered to every neighbour this often, so a lost
/// offer delays a node by at most this long.
const BUNDLE_OFFER_INTERVAL: Duration = Duration::from_secs(10);

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.identity.certificate().name())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint for `identity`, trusting `ca`.
    pub fn new(
        crypto: Arc<dyn Crypto>,
        ca: TrustedCa,
        identity: Identity,
        config: EndpointConfig,
    ) -> Self {
        let cookie_checker = CookieChecker::new(&*crypto, identity.static_public());
        let node_id = NodeId::of(identity.static_public());
        let config_filter = config.filter;
        let shared = config.shared.clone().filter(|s| s.ca() == ca.fingerprint());
        let mut identity = identity;
        identity.set_aes(&*crypto, config.aes_gcm);
        Self {
            node_id,
            by_node: HashMap::new(),
            router: {
                let mut r = Router::new(node_id, config.route);
                if !config.relay {
                    r.scope_routes(); // a stub routes for its own peers only
                }
                r
            },
            advert_at: None,
            advert_seq: 0,
            last_originated: None,
            last_advert: None,
            last_unix_nanos: 0,
            last_timeout: None,
            told_deadline: None,
            route_at: None,
            default_relay: None,
            reassembler: Reassembler::new(config.reassembly),
            crypto,
            ca,
            identity,
            config,
            cookie_checker,
            replay_guard: ReplayGuard::default(),
            peers: Table::default(),
            by_static: HashMap::new(),
            by_endpoint: HashMap::new(),
            by_index: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            load_window: None,
            load_count: 0,
            load_prev: 0,
            force_under_load: None,
            stats: Stats::default(),
            policy: None,
            filter: Filter::new(config_filter),
            own_idents: (0, Vec::new()),
            revoked: HashSet::new(),
            bundles: [None, None],
            transfers: [None, None],
            origin_certs: HashMap::new(),
            shared,
            parked: HashMap::new(),
            offer_at: None,
        }
    }

    /// Adds (or updates) a peer known by its static key, optionally with an
    /// underlay address and a persistent keepalive interval.
    pub fn add_peer(
        &mut self,
        static_public: [u8; 32],
        endpoint: Option<SocketAddr>,
        persistent_keepalive: Option<Duration>,
    ) -> PeerId {
        self.insert_peer(static_public, endpoint, persistent_keepalive, false)
    }

    fn insert_peer(
        &mut self,
        static_public: [u8; 32],
        endpoint: Option<SocketAddr>,
        persistent_keepalive: Option<Duration>,
        learned: bool,
    ) -> PeerId {
        if let Some(&id) = self.by_static.get(&static_public) {
            if let Some(e) = endpoint {
                self.set_endpoint(id, e);
            }
            let p = &mut self.peers[id.0 as usize];
            p.persistent_keepalive = persistent_keepalive;
            p.learned &= learned;
            return id;
        }
        let c = &*self.crypto;
        let id = PeerId(self.peers.len() as u32);
        let static_static = handshake::static_static(c, &self.identity, &static_public).ok();
        let node_id = NodeId::of(&static_public);
        self.peers.push(Peer {
            static_public,
            node_id,
            health: None,
            pmtu: None,
            via: None,
            synced: false,
            static_static,
            mac1_key: cookie::mac1_key(c, &static_public),
            cookie_key: cookie::cookie_key(c, &static_public),
            endpoint,
            cert: None,
            current: None,
            previous: None,
            next: None,
            pending: None,
            cookie: None,
            queue: VecDeque::new(),
            persistent_keepalive,
            attempt_started: None,
            retransmit_at: None,
            keepalive_at: None,
            new_handshake_at: None,
            persistent_at: None,
            last_handshake: None,
            last_resync: None,
            stats: PeerStats::default(),
            idents: (0, Vec::new()),
            refused: false,
            learned,
        });
        self.by_static.insert(static_public, id);
        self.by_node.insert(node_id, id);
        self.router.want_route(node_id);
        if let Some(e) = endpoint {
            self.by_endpoint.insert(e, id);
        }
        id
    }

    /// Records `peer`'s underlay address (roaming), keeping the reverse map.
    fn set_endpoint(&mut self, peer: PeerId, addr: SocketAddr) {
        let p = &mut self.peers[peer.0 as usize];
        if p.endpoint == Some(addr) {
            return;
        }
        if let Some(old) = p.endpoint.replace(addr) {
            if self.by_endpoint.get(&old) == Some(&peer) {
                self.by_endpoint.remove(&old);
            }
        }
        // A new path: measured afresh at the next probe (`probe_path_mtu`).
        p.pmtu = None;
        self.by_endpoint.insert(addr, peer);
    }

    /// The peer with this static key.
    pub fn peer_by_static(&self, static_public: &[u8; 32]) -> Option<PeerId> {
        self.by_static.get(static_public).copied()
    }

    /// Status of every peer.
    pub fn peers(&self, now: Instant) -> Vec<PeerInfo> {
        (0..self.peers.len() as u32)
            .filter_map(|i| self.peer(PeerId(i), now))
            .collect()
    }

    /// Status of one peer.
    pub fn peer(&self, id: PeerId, now: Instant) -> Option<PeerInfo> {
        let p = self.peers.get(id.0 as usize)?;
        Some(PeerInfo {
            id,
            static_public: p.static_public,
            endpoint: p.endpoint,
            cert: p.cert.clone(),
            last_handshake: p.last_handshake,
            has_session: p.current.as_ref().is_some_and(|s| usable(s, now)),
            stats: p.stats,
            node_id: p.node_id,
            via: p.via,
            link: p.health.as_ref().map(|h| LinkInfo {
                up: h.status() == LinkStatus::Up,
                srtt: h.srtt(),
                last_rtt: h.last_rtt(),
                jitter: h.jitter(),
                loss: h.loss(),
                path_mtu: p.pmtu.as_ref().map(PathMtu::mtu),
                pmtu_searching: p.pmtu.as_ref().is_some_and(PathMtu::searching),
            }),
            refused: p.refused,
            suite: p.current.as_ref().map(Session::suite),
        })
    }

    /// How often this node re-sends its own advert when nothing changes:
    /// `advert_interval`, stretched to 2 s per node known, so mesh-wide
    /// refresh traffic per node stays constant as the mesh grows. Changes
    /// are flooded at once regardless; a crashed node's stale advert is
    /// harmless (its neighbours stop listing it, see `proto::route`).
    ///
    /// Nodes known = adverts held or nodes reachable, whichever is more: a
    /// stub holds only relays' adverts but reaches every node through them,
    /// so it counts the same as a relay, and every node's refresh interval
    /// (and the 4 × refresh after which adverts expire) agrees.
    pub fn advert_refresh(&self) -> Duration {
        let known = self
            .router
            .advert_count()
            .max(self.router.reachable_count());
        let origins = known as u32 + 1;
        self.config
            .advert_interval
            .max(REFRESH_PER_ORIGIN * origins)
    }

    /// The link-state database and route table (read-only).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// This node's wire id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The route table, sorted by destination.
    pub fn routes(&self, now: Instant) -> Vec<RouteInfo> {
        let mut v: Vec<RouteInfo> = self
            .router
            .routes()
            .map(|(dst, r)| RouteInfo {
                dst: *dst,
                dst_peer: self.by_node.get(dst).copied(),
                next_hop: r.next_hop,
                next_hop_peer: self.by_node.get(&r.next_hop).copied(),
                metric_us: r.metric_us,
                hops: r.hops,
                age: now.saturating_duration_since(r.since),
            })
            .collect();
        v.sort_by_key(|r| r.dst);
        v
    }

    /// The path to `peer` hop by hop, with each link's RTT in µs (see
    /// [`Router::trace`]). A peer with no route is listed as one direct hop.
    pub fn trace(&self, peer: PeerId, now: Instant) -> Vec<(NodeId, u32)> {
        let p = &self.peers[peer.0 as usize];
        let own = self.own_links(now);
        let hops = self.router.trace(&own, p.node_id);
        if hops.is_empty() {
            let rtt = p
                .health
                .as_ref()
                .and_then(LinkHealth::srtt)
                .map_or(0, |d| d.as_micros() as u32);
            return vec![(p.node_id, rtt)];
        }
        hops
    }

    /// The peer with this wire id.
    pub fn peer_by_node(&self, id: NodeId) -> Option<PeerId> {
        self.by_node.get(&id).copied()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// This node's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Forces (or, with `None`, stops forcing) the under-load state that makes
    /// mac2 mandatory; by default it follows the initiation rate.
    pub fn set_under_load(&mut self, forced: Option<bool>) {
        self.force_under_load = forced;
    }

    /// Partial handshake messages held for reassembly.
    pub fn reassembly_len(&self) -> usize {
        self.reassembler.len()
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Seals an IP packet for `peer`. The packet is at
    /// `buf[TRANSPORT_HEADER_LEN..][..len]`; `buf` needs `TRANSPORT_OVERHEAD`
    /// bytes more than `len`, and [`RELAY_HEADER_LEN`] more again while the
    /// peer is reached through a relay. On `Send`, `buf[..len]` is the datagram.
    pub fn send(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        peer: PeerId,
        buf: &mut [u8],
        len: usize,
    ) -> SendOutcome {
        match self.prepare_send(now, unix_nanos, rng, peer, buf, len) {
            Prepared::Seal(plan) => {
                let (dst, len) = plan.seal(buf);
                SendOutcome::Send { dst, len }
            }
            Prepared::Done(out) => out,
        }
    }

    /// [`Endpoint::send`] without the AEAD pass: policy, path, counter,
    /// header, statistics and timers. A driver that shares the endpoint
    /// between threads calls this under its lock and [`SealPlan::seal`]
    /// after releasing it.
    pub fn prepare_send(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        peer: PeerId,
        buf: &mut [u8],
        len: usize,
    ) -> Prepared {
        use Prepared::Done;
        if buf.len() < len + TRANSPORT_OVERHEAD {
            self.stats.drop(DropReason::BufferTooSmall);
            return Done(SendOutcome::Dropped(DropReason::BufferTooSmall));
        }
        let pi = peer.0 as usize;
        if self.peers[pi].refused {
            self.stats.drop(DropReason::PeerRefused);
            return Done(SendOutcome::Dropped(DropReason::PeerRefused));
        }
        // Without a certificate yet (first handshake), the packet is checked
        // when the queue is flushed.
        if self.peers[pi].cert.is_some() {
            let inner = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len];
            if let Err(r) = self.police(now, Direction::Out, pi, inner) {
                return Done(SendOutcome::Dropped(r));
            }
        }
        let Some((dst, relay)) = self.path(pi) else {
            self.stats.drop(DropReason::NoEndpoint);
            return Done(SendOutcome::Dropped(DropReason::NoEndpoint));
        };
        if relay.is_some() && buf.len() < len + TRANSPORT_OVERHEAD + RELAY_HEADER_LEN {
            self.stats.drop(DropReason::BufferTooSmall);
            return Done(SendOutcome::Dropped(DropReason::BufferTooSmall));
        }
        let outer = if dst.is_ipv4() { 28 } else { 48 };
        let extra = TRANSPORT_OVERHEAD + outer + relay.map_or(0, |_| RELAY_HEADER_LEN);
        // The first hop's measured path MTU (the relay's link while relayed).
        let hop = self.peers[pi].via.map_or(pi, |r| r.0 as usize);
        let limit = self.peers[hop]
            .pmtu
            .as_ref()
            .map_or(self.config.underlay_mtu, PathMtu::mtu);
        if len + extra > limit {
            self.stats.drop(DropReason::TooBig);
            return Done(SendOutcome::TooBig {
                mtu: limit.saturating_sub(extra),
            });
        }
        // The first hop's path MTU is confirmed while it carries large
        // datagrams.
        if let Some(m) = self.peers[hop].pmtu.as_mut() {
            m.on_data_sent(len + extra);
        }
        // Data makes the links it uses probed fast: the direct one, and the
        // relay's while relayed.
        if let Some(r) = self.peers[pi].via {
            if let Some(h) = self.peers[r.0 as usize].health.as_mut() {
                h.on_data_sent(now);
            }
        }
        let p = &mut self.peers[pi];
        if let Some(h) = p.health.as_mut() {
            h.on_data_sent(now);
        }
        if let Some(s) = p.current.as_mut().filter(|s| usable(s, now)) {
            let Ok(job) = s.reserve(buf, len) else {
                self.stats.drop(DropReason::SessionExpired);
                return Done(SendOutcome::Dropped(DropReason::SessionExpired));
            };
            let rekey = s.is_initiator()
                && (now.saturating_duration_since(s.established()) >= REKEY_AFTER_TIME
                    || s.send_counter() >= REKEY_AFTER_MESSAGES);
            p.stats.tx_bytes += len as u64;
            p.stats.tx_packets += 1;
            on_data_sent(p, now);
            if rekey && p.pending.is_none() {
                self.initiate(now, unix_nanos, rng, peer);
            }
            return Prepared::Seal(SealPlan { job, dst, relay });
        }
        // No usable session: queue and handshake.
        let mut dropped = false;
        if p.queue.len() >= self.config.queue_limit {
            p.queue.pop_front();
            dropped = true;
        }
        p.queue
            .push_back(buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len].to_vec());
        if dropped {
            self.stats.drop(DropReason::QueueFull);
        }
        if self.peers[pi].pending.is_none() {
            self.initiate(now, unix_nanos, rng, peer);
        }
        Done(SendOutcome::Queued)
    }

    /// Starts (or restarts) a handshake with `peer` now.
    pub fn initiate(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        peer: PeerId,
    ) {
        let pi = peer.0 as usize;
        if self.peers[pi].refused {
            return;
        }
        if self.path(pi).is_none() {
            self.stats.drop(DropReason::NoEndpoint);
            return;
        }
        if let Some(old) = self.peers[pi].pending.take() {
            self.by_index.remove(&old.hs.local_index());
        }
        let index = self.new_index(rng, peer);
        let crypto = &*self.crypto;
        let p = &mut self.peers[pi];
        let (hs, msg) = match handshake::initiate(
            crypto,
            &self.identity,
            &p.static_public,
            p.static_static.as_ref(),
            index,
            unix_nanos,
            rng,
        ) {
            Ok(v) => v,
            Err(e) => {
                // Only a low-order static key in our own peer table gets here.
                self.by_index.remove(&index);
                self.stats.handshake_failed(&e);
                return;
            }
        };
        let cookie = p
            .cookie
            .filter(|(_, at)| now.saturating_duration_since(*at) < COOKIE_VALIDITY)
            .map(|(c, _)| c);
        let frags = fragment(
            crypto,
            MessageKind::Initiation,
            index,
            0,
            &msg,
            &p.mac1_key,
            cookie.as_ref(),
        );
        let sent_mac1 = mac1_of(&frags[0]);
        p.pending = Some(Pending {
            hs,
            sent_mac1,
            cookie_resent: false,
        });
        p.attempt_started.get_or_insert(now);
        let jitter = Duration::from_millis(
            rng.next_u32() as u64 % REKEY_TIMEOUT_JITTER_MAX.as_millis() as u64,
        );
        p.retransmit_at = Some(now + REKEY_TIMEOUT + jitter);
        for f in frags {
            self.push_to_peer(pi, f);
        }
        self.stats.initiations_sent += 1;
    }

    /// Where datagrams for peer `pi` go now: the underlay address, and the
    /// relay header to put in front when that address is a relay's.
    fn path(&self, pi: usize) -> Option<(SocketAddr, Option<RelayHeader>)> {
        let p = &self.peers[pi];
        let via = p.via.or_else(|| self.default_route(pi));
        if let Some(r) = via {
            if let Some(e) = self.peers[r.0 as usize].endpoint {
                let h = RelayHeader {
                    ttl: MAX_RELAY_TTL,
                    dst: p.node_id,
                    src: self.node_id,
                };
                return Some((e, Some(h)));
            }
        }
        p.endpoint.map(|e| (e, None))
    }

    /// A stub's relay for peer `pi` when its routes know no way there and
    /// there is no working direct link: the relay may know more (a hub lists
    /// at most 64 links, and stubs hold no adverts of other stubs).
    fn default_route(&self, pi: usize) -> Option<PeerId> {
        if self.config.relay {
            return None;
        }
        let r = self.default_relay.filter(|r| r.0 as usize != pi)?;
        let p = &self.peers[pi];
        let direct = p.endpoint.is_some()
            && p.health
                .as_ref()
                .is_none_or(|h| h.status() == LinkStatus::Up);
        (!direct && self.router.route(p.node_id).is_none()).then_some(r)
    }

    /// Queues `payload` for peer `pi` on its current path.
    fn push_to_peer(&mut self, pi: usize, payload: Vec<u8>) {
        let Some((dst, relay)) = self.path(pi) else {
            self.stats.drop(DropReason::NoEndpoint);
            return;
        };
        let payload = match relay {
            Some(h) => wrap(h, &payload),
            None => payload,
        };
        self.transmits.push_back(Transmit { dst, payload });
    }

    /// Queues gossip for neighbour `pi` (adverts, sync requests,
    /// certificates, bundle offers, requests and chunks): on the direct link
    /// while its probes say it is up, as a link-state protocol talks to its
    /// neighbours, otherwise on the routed path. Routed gossip would depend
    /// on routes computed from that gossip: a neighbour reached through a
    /// relay that has just lost its sessions (a node being revoked, whose
    /// neighbours refuse it as the list arrives) would miss the very list
    /// that explains it, until the next offer 10 s later.
    fn push_gossip(&mut self, pi: usize, payload: Vec<u8>) {
        let p = &self.peers[pi];
        let up = p
            .health
            .as_ref()
            .is_some_and(|h| h.status() == LinkStatus::Up);
        match p.endpoint.filter(|_| up) {
            Some(dst) => self.transmits.push_back(Transmit { dst, payload }),
            None => self.push_to_peer(pi, payload),
        }
    }

    /// Queues `payload` back the way `source` reached us.
    fn push_reply(&mut self, source: Source, payload: Vec<u8>) {
        let t = match source {
            Source::Direct(dst) => Transmit { dst, payload },
            Source::Relayed { origin, hop } => Transmit {
                dst: hop,
                payload: wrap(
                    RelayHeader {
                        ttl: MAX_RELAY_TTL,
                        dst: origin,
                        src: self.node_id,
                    },
                    &payload,
                ),
            },
        };
        self.transmits.push_back(t);
    }

    fn new_index(&mut self, rng: &mut dyn CryptoRngCore, peer: PeerId) -> u32 {
        loop {
            let i = rng.next_u32();
            if i != 0 && !self.by_index.contains_key(&i) {
                self.by_index.insert(i, peer);
                return i;
            }
        }
    }

    fn under_load(&mut self, now: Instant) -> bool {
        let start = *self.load_window.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Duration::from_secs(1) {
            self.load_prev = if elapsed >= Duration::from_secs(2) {
                0
            } else {
                self.load_count
            };
            self.load_count = 0;
            self.load_window = Some(now);
        }
        self.load_count = self.load_count.saturating_add(1);
        self.force_under_load.unwrap_or(
            self.load_count > self.config.handshake_load_threshold
                || self.load_prev > self.config.handshake_load_threshold,
        )
    }

    /// Verifies a bundle (policy or revocation list) and puts it in force if
    /// it is newer than the one held, then offers it to every neighbour.
    /// On error the bundle in force stays and the refusal is counted.
    pub fn apply_bundle(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        bytes: &[u8],
    ) -> Result<(BundleKind, u64), BundleError> {
        self.last_unix_nanos = unix_nanos;
        let r = self.try_apply_bundle(now, bytes);
        if let Err(e) = &r {
            *self.stats.bundle_rejects.entry(e.reason()).or_insert(0) += 1;
        }
        r
    }

    fn try_apply_bundle(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<(BundleKind, u64), BundleError> {
        let b = Bundle::from_bytes(bytes)?;
        let content = b.verify(
            &*self.crypto,
            &self.ca,
            self.last_unix_nanos / 1_000_000_000,
        )?;
        if let Some(Ok(signer)) = b.signer() {
            if self.revoked.contains(&signer.fingerprint(&*self.crypto)) {
                return Err(BundleError::BadSigner("its certificate is revoked".into()));
            }
        }
        let (kind, version) = (b.kind(), b.version());
        if let Some(cur) = &self.bundles[kind.slot()] {
            if version <= cur.version() {
                return Err(BundleError::NotNewer {
                    in_force: cur.version(),
                    offered: version,
                });
            }
        }
        match content {
            Content::Policy(p) => self.set_policy(now, Some(Arc::new(p.compile()))),
            Content::Revocation(l) => {
                let set = l.entries.iter().map(|e| e.fingerprint).collect();
                self.set_revoked(now, set);
            }
        }
        self.bundles[kind.slot()] = Some(b);
        if self.transfers[kind.slot()]
            .as_ref()
            .is_some_and(|t| t.version <= version)
        {
            self.transfers[kind.slot()] = None;
        }
        for pi in 0..self.peers.len() {
            self.offer(now, pi, kind);
        }
        self.offer_at = Some(now + BUNDLE_OFFER_INTERVAL);
        self.stats.bundles_applied += 1;
        self.events
            .push_back(Event::BundleApplied { kind, version });
        Ok((kind, version))
    }

    /// The bundle of `kind` in force.
    pub fn bundle(&self, kind: BundleKind) -> Option<&Bundle> {
        self.bundles[kind.slot()].as_ref()
    }

    /// Offers our bundle of `kind` to peer `pi` (if we hold one and have a
    /// session).
    fn offer(&mut self, now: Instant, pi: usize, kind: BundleKind) {
        let Some(b) = &self.bundles[kind.slot()] else {
            return;
        };
        if self.peers[pi].refused {
            return;
        }
        let msg = Control::BundleOffer {
            kind: kind.byte(),
            version: b.version(),
            len: b.as_bytes().len() as u32,
        };
        if let Some(d) = self.seal_control(now, pi, &msg) {
            self.push_gossip(pi, d);
        }
    }

    fn request_chunk(&mut self, now: Instant, kind: BundleKind) {
        let Some(t) = &self.transfers[kind.slot()] else {
            return;
        };
        let (pi, msg) = (
            t.from,
            Control::BundleRequest {
                kind: kind.byte(),
                version: t.version,
                offset: t.buf.len() as u32,
            },
        );
        if let Some(d) = self.seal_control(now, pi, &msg) {
            self.push_gossip(pi, d);
        }
    }

    fn on_bundle_offer(&mut self, now: Instant, pi: usize, kind: u8, version: u64, len: u32) {
        let Some(kind) = BundleKind::from_byte(kind) else {
            return;
        };
        let held = self.bundles[kind.slot()].as_ref().map(Bundle::version);
        if held.is_some_and(|v| v >= version) || len as usize > MAX_BUNDLE_LEN || len == 0 {
            return;
        }
        if self.transfers[kind.slot()]
            .as_ref()
            .is_some_and(|t| t.version >= version)
        {
            return;
        }
        self.transfers[kind.slot()] = Some(Transfer {
            version,
            total: len,
            buf: Vec::with_capacity(len as usize),
            from: pi,
            deadline: now + BUNDLE_RETRY,
            retries: 0,
        });
        self.request_chunk(now, kind);
    }

    fn on_bundle_request(&mut self, now: Instant, pi: usize, kind: u8, version: u64, offset: u32) {
        let Some(kind) = BundleKind::from_byte(kind) else {
            return;
        };
        let Some(b) = self.bundles[kind.slot()].as_ref() else {
            return;
        };
        let bytes = b.as_bytes();
        let start = offset as usize;
        if b.version() != version || start >= bytes.len() {
            return;
        }
        let end = (start + control::MAX_CHUNK).min(bytes.len());
        let msg = Control::BundleChunk {
            kind: kind.byte(),
            version,
            offset,
            total: bytes.len() as u32,
            data: bytes[start..end].to_vec(),
        };
        self.stats.bundle_bytes_sent += (end - start) as u64;
        if let Some(d) = self.seal_control(now, pi, &msg) {
            self.push_gossip(pi, d);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_bundle_chunk(
        &mut self,
        now: Instant,
        pi: usize,
        kind: u8,
        version: u64,
        offset: u32,
        total: u32,
        data: &[u8],
    ) {
        let Some(kind) = BundleKind::from_byte(kind) else {
            return;
        };
        let Some(t) = self.transfers[kind.slot()].as_mut() else {
            return;
        };
        if t.from != pi
            || t.version != version
            || t.total != total
            || t.buf.len() != offset as usize
        {
            return;
        }
        t.buf.extend_from_slice(data);
        t.deadline = now + BUNDLE_RETRY;
        t.retries = 0;
        if t.buf.len() < t.total as usize {
            self.request_chunk(now, kind);
            return;
        }
        let Some(t) = self.transfers[kind.slot()].take() else {
            return;
        };
        if let Err(error) = self.apply_bundle(now, self.last_unix_nanos, &t.buf) {
            self.events.push_back(Event::BundleRejected { kind, error });
        }
    }

    /// Retries stalled bundle downloads and re-offers held bundles.
    fn bundle_timers(&mut self, now: Instant) {
        for kind in BundleKind::ALL {
            let Some(t) = self.transfers[kind.slot()].as_mut() else {
                continue;
            };
            if t.deadline > now {
                continue;
            }
            if t.retries >= BUNDLE_RETRIES {
                self.transfers[kind.slot()] = None;
                continue;
            }
            t.retries += 1;
            t.deadline = now + BUNDLE_RETRY;
            self.request_chunk(now, kind);
        }
        if self.offer_at.is_some_and(|t| t <= now) {
            self.offer_at = Some(now + BUNDLE_OFFER_INTERVAL);
            for pi in 0..self.peers.len() {
                for kind in BundleKind::ALL {
                    self.offer(now, pi, kind);
                }
            }
        }
    }

    /// Puts `policy` in force (`None`: everything passes). Tracked flows are
    /// re-checked on their next packet; peers a new enclave definition puts
    /// outside ours are torn down at once.
    pub fn set_policy(&mut self, now: Instant, policy: Option<Arc<Compiled>>) {
        self.policy = policy.clone();
        self.filter.set_policy(policy);
        self.enforce_admission(now);
    }

    /// The policy in force.
    pub fn policy(&self) -> Option<&Arc<Compiled>> {
        self.policy.as_ref()
    }

    /// Puts a revocation list in force: fingerprints of node certificates.
    /// Sessions with revoked peers are torn down at once and their
    /// handshakes refused from now on.
    pub fn set_revoked(&mut self, now: Instant, revoked: HashSet<[u8; 32]>) {
        self.revoked = revoked;
        self.enforce_admission(now);
    }

    /// Whether this certificate fingerprint is revoked.
    pub fn is_revoked(&self, fingerprint: &[u8; 32]) -> bool {
        self.revoked.contains(fingerprint)
    }

    /// The policy filter: counters and tracked flows.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Whether a session with the holder of `cert` may exist.
    fn admissible(&self, cert: &Certificate) -> Result<(), HandshakeError> {
        if !self.revoked.is_empty() && self.revoked.contains(&cert.fingerprint(&*self.crypto)) {
            return Err(HandshakeError::Revoked);
        }
        if let Some(p) = &self.policy {
            let ours = p.enclave_mask(&self.identity.certificate().body().segments);
            if p.enclave_mask(&cert.body().segments) != ours {
                return Err(HandshakeError::OutsideEnclave);
            }
        }
        Ok(())
    }

    fn enforce_admission(&mut self, now: Instant) {
        let gone: Vec<NodeId> = self
            .origin_certs
            .iter()
            .filter(|(_, c)| self.admissible(c).is_err())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.origin_certs.remove(&id);
            self.router.forget(id);
        }
        for pi in 0..self.peers.len() {
            let verdict = match &self.peers[pi].cert {
                Some(c) => self.admissible(c),
                None => Ok(()),
            };
            match verdict {
                Err(e) if !self.peers[pi].refused => self.refuse(now, pi, e),
                Err(_) => {}
                Ok(()) => self.peers[pi].refused = false,
            }
        }
    }

    /// Drops peer `pi`'s sessions, pending handshake, queue, timers and
    /// link health; true if it had a probed link.
    fn drop_peer_state(&mut self, pi: usize) -> bool {
        let p = &mut self.peers[pi];
        let sessions = [p.current.take(), p.next.take(), p.previous.take()];
        for s in sessions.into_iter().flatten() {
            self.by_index.remove(&s.local_index());
        }
        if let Some(pending) = p.pending.take() {
            self.by_index.remove(&pending.hs.local_index());
        }
        p.queue.clear();
        p.attempt_started = None;
        p.retransmit_at = None;
        p.keepalive_at = None;
        p.new_handshake_at = None;
        p.persistent_at = None;
        p.synced = false;
        p.pmtu = None;
        p.health.take().is_some()
    }

    /// A peer that introduced itself (not configured), whose direct link has
    /// been down for [`RETIRE_AFTER`] without carrying data: stop probing
    /// it and re-handshaking with it. It comes back when it initiates again
    /// or when we have traffic for it. (A hub that saw a thousand peers
    /// vanish would otherwise keep probing and re-handshaking with all of
    /// them, forever.)
    fn retire(&mut self, now: Instant, pi: usize) {
        let had_link = self.drop_peer_state(pi);
        self.stats.peers_retired += 1;
        self.events.push_back(Event::PeerRetired {
            peer: PeerId(pi as u32),
        });
        if had_link {
            self.advert_soon(now);
        }
        self.recompute_routes(now);
    }

    /// Tears down every session with peer `pi` and refuses it from now on.
    fn refuse(&mut self, now: Instant, pi: usize, error: HandshakeError) {
        let had_link = self.drop_peer_state(pi);
        let p = &mut self.peers[pi];
        p.refused = true;
        let node = p.node_id;
        let addrs: Vec<IpAddr> = p
            .cert
            .as_ref()
            .map(|c| c.body().addresses.iter().map(|a| a.addr()).collect())
            .unwrap_or_default();
        self.filter.forget(&addrs);
        // Its link state is neither used nor passed on any more.
        self.router.forget(node);
        self.events.push_back(Event::PeerRefused {
            peer: PeerId(pi as u32),
            error,
        });
        if had_link {
            self.advert_soon(now);
        }
        self.recompute_routes(now);
    }

    /// Checks an inner packet against the policy in force (and tracks its
    /// flow). `Err` carries the drop reason, already counted.
    fn police(
        &mut self,
        now: Instant,
        dir: Direction,
        pi: usize,
        packet: &[u8],
    ) -> Result<(), DropReason> {
        let Some(policy) = self.policy.as_deref() else {
            return Ok(());
        };
        let pkt = match filter::parse(packet) {
            Ok(p) => p,
            Err(_) => {
                self.filter.count_unparsable();
                self.stats.drop(DropReason::NotIp);
                return Err(DropReason::NotIp);
            }
        };
        let generation = self.filter.generation();
        let own_cert = self.identity.certificate();
        let own = &mut self.own_idents;
        let Peer { cert, idents, .. } = &mut self.peers[pi];
        let verdict = self.filter.check(now, dir, &pkt, |addr, local| {
            if local {
                cached_identity(policy, generation, own, Some(own_cert), addr)
            } else {
                cached_identity(policy, generation, idents, cert.as_ref(), addr)
            }
        });
        verdict.map_err(|Denied { .. }| {
            self.stats.drop(DropReason::PolicyDenied);
            DropReason::PolicyDenied
        })
    }

    /// Counts and reports a rejected handshake message and drops it.
    fn handshake_failed(
        &mut self,
        peer: Option<PeerId>,
        src: SocketAddr,
        error: HandshakeError,
    ) -> Received {
        self.stats.handshake_failed(&error);
        self.events
            .push_back(Event::HandshakeFailed { peer, src, error });
        self.drop_datagram(DropReason::HandshakeFailed)
    }

    fn drop_datagram(&mut self, reason: DropReason) -> Received {
        self.stats.drop(reason);
        Received::Dropped(reason)
    }

    /// Processes one received UDP datagram from `src`, in place.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        src: SocketAddr,
        buf: &mut [u8],
    ) -> Received {
        self.last_unix_nanos = unix_nanos;
        match classify(buf) {
            Err(_) => self.drop_datagram(DropReason::Malformed),
            Ok(MessageKind::Relay) => self.handle_relay(now, unix_nanos, rng, src, buf),
            Ok(kind) => self.handle_inner(now, unix_nanos, rng, Source::Direct(src), kind, buf),
        }
    }

    /// A datagram of type 1–4, received directly or unwrapped from a relay
    /// header.
    fn handle_inner(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        source: Source,
        kind: MessageKind,
        buf: &mut [u8],
    ) -> Received {
        match kind {
            MessageKind::Transport => self.handle_transport(now, unix_nanos, rng, source, buf),
            MessageKind::Initiation => {
                self.handle_initiation_fragment(now, unix_nanos, rng, source, buf)
            }
            MessageKind::Response => {
                self.handle_response_fragment(now, unix_nanos, rng, source, buf)
            }
            MessageKind::CookieReply => self.handle_cookie_reply(now, unix_nanos, rng, buf),
            // A relay header inside a relay header is never valid.
            MessageKind::Relay => self.drop_datagram(DropReason::Malformed),
        }
    }

    /// A relayed datagram: deliver it if it is for us, else forward it one
    /// hop closer. Only neighbours with a usable session may hand us relayed
    /// datagrams, and we only hand them to such neighbours; the inner
    /// datagram stays end-to-end encrypted and we never open it.
    fn handle_relay(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        src: SocketAddr,
        buf: &mut [u8],
    ) -> Received {
        let Ok(h) = RelayHeader::parse(buf) else {
            return self.drop_datagram(DropReason::Malformed);
        };
        let hop_ok = self.by_endpoint.get(&src).is_some_and(|hop| {
            let p = &self.peers[hop.0 as usize];
            p.endpoint == Some(src) && p.current.as_ref().is_some_and(|s| usable(s, now))
        });
        if !hop_ok {
            return self.drop_datagram(DropReason::RelayUnknownHop);
        }
        if h.dst == self.node_id {
            let inner = &mut buf[RELAY_HEADER_LEN..];
            let Ok(kind) = classify(inner) else {
                return self.drop_datagram(DropReason::Malformed);
            };
            let source = Source::Relayed {
                origin: h.src,
                hop: src,
            };
            let r = self.handle_inner(now, unix_nanos, rng, source, kind, inner);
            if let Received::Data { len, .. } = r {
                // Plaintext where an unrelayed one would be.
                let at = RELAY_HEADER_LEN + TRANSPORT_HEADER_LEN;
                buf.copy_within(at..at + len, TRANSPORT_HEADER_LEN);
            }
            return r;
        }
        if !self.config.relay {
            return self.drop_datagram(DropReason::RelayRefused);
        }
        if h.ttl <= 1 {
            return self.drop_datagram(DropReason::RelayTtlExpired);
        }
        let next = self.router.route(h.dst).map_or(h.dst, |r| r.next_hop);
        let payload = buf.len();
        // Transport packets with a payload: not handshakes, and not the
        // keepalives of sessions that carry nothing.
        let carries_data = buf.get(RELAY_HEADER_LEN) == Some(&TYPE_TRANSPORT)
            && payload > RELAY_HEADER_LEN + TRANSPORT_OVERHEAD;
        let next = self.by_node.get(&next).and_then(|&n| {
            let p = &mut self.peers[n.0 as usize];
            let dst = p
                .current
                .as_ref()
                .filter(|s| usable(s, now))
                .and(p.endpoint)?;
            // Relayed traffic makes the outgoing link probed fast too, and
            // its path MTU confirmed.
            if let Some(h) = p.health.as_mut().filter(|_| carries_data) {
                h.on_data_sent(now);
            }
            if let Some(m) = p.pmtu.as_mut() {
                m.on_data_sent(payload + if dst.is_ipv4() { 28 } else { 48 });
            }
            Some(dst)
        });
        let Some(dst) = next else {
            return self.drop_datagram(DropReason::RelayNoRoute);
        };
        if dst == src {
            return self.drop_datagram(DropReason::RelayLoop);
        }
        buf[1] = h.ttl - 1;
        self.stats.relayed_packets += 1;
        self.stats.relayed_bytes += buf.len() as u64;
        Received::Forward {
            dst,
            len: buf.len(),
        }
    }

    /// Feeds a MAC-checked fragment to the reassembler; `Ok` with the whole
    /// message once complete, otherwise what to report for this datagram.
    fn reassemble(
        &mut self,
        now: Instant,
        source: Source,
        view: FragmentView<'_>,
        verdict: MacVerdict,
    ) -> Result<Vec<u8>, Received> {
        let Some(frag) = view.into_verified(verdict) else {
            return Err(self.drop_datagram(DropReason::BadMac1));
        };
        match self.reassembler.insert(now, source.key(), frag) {
            Reassembly::Complete(m) => Ok(m),
            Reassembly::Pending | Reassembly::PendingAfterEviction => Err(Received::Handshake),
            Reassembly::Duplicate => Err(self.drop_datagram(DropReason::FragmentDuplicate)),
            Reassembly::Inconsistent => Err(self.drop_datagram(DropReason::FragmentInconsistent)),
        }
    }

    fn handle_initiation_fragment(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        source: Source,
        buf: &[u8],
    ) -> Received {
        let src = source.key();
        let Ok(view) = FragmentView::new_checked(buf) else {
            return self.drop_datagram(DropReason::Malformed);
        };
        let under_load = self.under_load(now);
        let verdict = self
            .cookie_checker
            .check(&*self.crypto, now, rng, &src, buf, under_load);
        match verdict {
            MacVerdict::InvalidMac1 => return self.drop_datagram(DropReason::BadMac1),
            MacVerdict::CookieRequired => {
                if view.index() == 0 {
                    let reply = self.cookie_checker.cookie_reply(
                        &*self.crypto,
                        now,
                        rng,
                        &src,
                        buf,
                        view.sender_index(),
                    );
                    self.push_reply(source, reply.to_vec());
                    self.stats.cookie_replies_sent += 1;
                }
                return self.drop_datagram(DropReason::CookieRequired);
            }
            MacVerdict::Valid => {}
        }
        let sender_index = view.sender_index();
        let mut msg = match self.reassemble(now, source, view, verdict) {
            Ok(m) => m,
            Err(r) => return r,
        };
        self.process_initiation(now, unix_nanos, rng, source, &mut msg, sender_index)
    }

    fn process_initiation(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        source: Source,
        msg: &mut [u8],
        sender_index: u32,
    ) -> Received {
        let src = source.key();
        // Reserve an index first; released again on failure.
        let mut index;
        loop {
            index = rng.next_u32();
            if index != 0 && !self.by_index.contains_key(&index) {
                break;
            }
        }
        let crypto = &*self.crypto;
        let result = handshake::respond(
            crypto,
            &self.ca,
            &self.identity,
            &mut self.replay_guard,
            msg,
            sender_index,
            index,
            unix_nanos,
            rng,
        );
        let (reply, mut out) = match result {
            Ok(v) => v,
            Err(error) => {
                return self.handshake_failed(None, src, error);
            }
        };
        if let Err(error) = self.admissible(&out.peer_cert) {
            // No reply: the initiator cannot complete the handshake.
            if let Some(&id) = self.by_static.get(out.peer_cert.public_key()) {
                self.refuse(now, id.0 as usize, error.clone());
            }
            return self.handshake_failed(None, src, error);
        }
        let peer_static = *out.peer_cert.public_key();
        let direct = match source {
            Source::Direct(a) => Some(a),
            Source::Relayed { .. } => None,
        };
        let peer = match self.by_static.get(&peer_static) {
            Some(&id) => id,
            None if self.config.accept_unknown_peers => {
                self.insert_peer(peer_static, direct, None, true)
            }
            None => return self.drop_datagram(DropReason::UnknownPeer),
        };
        self.by_index.insert(index, peer);
        if let Some(a) = direct {
            self.set_endpoint(peer, a);
        } else if let Source::Relayed { hop, .. } = source {
            // Answer and keep talking through the relay it came by, until
            // routes say otherwise.
            let hop = self.by_endpoint.get(&hop).copied();
            self.peers[peer.0 as usize].via = hop;
        }
        self.keep_origin_cert(out.peer_cert.clone());
        let crypto = &*self.crypto;
        let p = &mut self.peers[peer.0 as usize];
        let name = out.peer_cert.name().to_string();
        p.refused = false;
        p.cert = Some(out.peer_cert);
        let session = Session::new(
            crypto,
            index,
            out.peer_index,
            &out.send_key,
            &out.recv_key,
            now,
            false,
            out.suite,
        );
        zeroize::Zeroize::zeroize(&mut out.send_key);
        zeroize::Zeroize::zeroize(&mut out.recv_key);
        if let Some(old) = p.next.replace(session) {
            self.by_index.remove(&old.local_index());
        }
        p.last_handshake = Some(now);
        let frags = fragment(
            crypto,
            MessageKind::Response,
            index,
            sender_index,
            &reply,
            &p.mac1_key,
            None,
        );
        for f in frags {
            self.push_reply(source, f);
        }
        self.stats.handshakes_completed += 1;
        self.events.push_back(Event::HandshakeCompleted {
            peer,
            name,
            initiator: false,
        });
        Received::Handshake
    }

    fn handle_response_fragment(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        source: Source,
        buf: &[u8],
    ) -> Received {
        let src = source.key();
        let Ok(view) = FragmentView::new_checked(buf) else {
            return self.drop_datagram(DropReason::Malformed);
        };
        let Some(&peer) = self.by_index.get(&view.receiver_index()) else {
            return self.drop_datagram(DropReason::UnknownIndex);
        };
        let pi = peer.0 as usize;
        let pending_index = self.peers[pi].pending.as_ref().map(|p| p.hs.local_index());
        if pending_index != Some(view.receiver_index()) {
            return self.drop_datagram(DropReason::UnknownIndex);
        }
        // mac1 on responses is keyed by our own static key.
        let verdict = self
            .cookie_checker
            .check(&*self.crypto, now, rng, &src, buf, false);
        let sender_index = view.sender_index();
        let mut msg = match self.reassemble(now, source, view, verdict) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let Some(pending) = self.peers[pi].pending.take() else {
            return self.drop_datagram(DropReason::UnknownIndex);
        };
        let local_index = pending.hs.local_index();
        let crypto = &*self.crypto;
        let result = pending.hs.read_response(
            crypto,
            &self.ca,
            &self.identity,
            &mut msg,
            sender_index,
            unix_nanos / 1_000_000_000,
        );
        let mut out = match result {
            Ok(out) => out,
            Err(error) => {
                // The pending state is spent; the retransmit timer starts afresh.
                self.by_index.remove(&local_index);
                return self.handshake_failed(Some(peer), src, error);
            }
        };
        if let Err(error) = self.admissible(&out.peer_cert) {
            self.by_index.remove(&local_index);
            self.refuse(now, pi, error.clone());
            return self.handshake_failed(Some(peer), src, error);
        }
        if let Source::Direct(a) = source {
            self.set_endpoint(peer, a);
        }
        self.keep_origin_cert(out.peer_cert.clone());
        let crypto = &*self.crypto;
        let p = &mut self.peers[pi];
        let name = out.peer_cert.name().to_string();
        p.refused = false;
        p.cert = Some(out.peer_cert);
        let session = Session::new(
            crypto,
            local_index,
            out.peer_index,
            &out.send_key,
            &out.recv_key,
            now,
            true,
            out.suite,
        );
        zeroize::Zeroize::zeroize(&mut out.send_key);
        zeroize::Zeroize::zeroize(&mut out.recv_key);
        // As wireguard-go: with an unconfirmed responder session in `next`
        // (the peer's own handshake crossed ours), keep it as `previous` so
        // the peer's packets on it still arrive, and retire `current`.
        let (retire_a, retire_b) = match p.next.take() {
            Some(next) => (p.previous.replace(next), p.current.take()),
            None => {
                let old_previous = p.previous.take();
                p.previous = p.current.take();
                (old_previous, None)
            }
        };
        for old in [retire_a, retire_b].into_iter().flatten() {
            self.by_index.remove(&old.local_index());
        }
        p.current = Some(session);
        p.last_handshake = Some(now);
        p.attempt_started = None;
        p.retransmit_at = None;
        self.stats.handshakes_completed += 1;
        self.events.push_back(Event::HandshakeCompleted {
            peer,
            name,
            initiator: true,
        });
        self.flush_queue(now, peer);
        Received::Handshake
    }

    /// Seals the packets queued during a handshake into transmits, or sends a
    /// keepalive so the responder can confirm the session.
    fn flush_queue(&mut self, now: Instant, peer: PeerId) {
        let pi = peer.0 as usize;
        self.ensure_health(now, pi);
        self.sync_gossip(now, pi);
        if self.peers[pi].current.is_none() {
            return;
        }
        if self.peers[pi].queue.is_empty() {
            self.send_keepalive(now, peer);
            return;
        }
        while let Some(pkt) = self.peers[pi].queue.pop_front() {
            if self.police(now, Direction::Out, pi, &pkt).is_err() {
                continue;
            }
            let p = &mut self.peers[pi];
            let Some(s) = p.current.as_mut() else { break };
            let mut buf = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD];
            buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
            if let Ok(n) = s.seal(&mut buf, pkt.len()) {
                buf.truncate(n);
                p.stats.tx_bytes += pkt.len() as u64;
                p.stats.tx_packets += 1;
                self.push_to_peer(pi, buf);
            }
        }
        on_data_sent(&mut self.peers[pi], now);
    }

    /// Starts probing peer `pi`'s direct link once it has an address and a
    /// session.
    fn ensure_health(&mut self, now: Instant, pi: usize) {
        let Some(config) = self.config.health else {
            return;
        };
        let p = &mut self.peers[pi];
        if p.health.is_none()
            && p.endpoint.is_some()
            && p.current.as_ref().is_some_and(|s| usable(s, now))
        {
            p.health = Some(LinkHealth::new(config, now));
            // A new link changes our advert and maybe our routes.
            self.advert_soon(now);
            self.recompute_routes(now);
        }
    }

    /// Seals a control message in peer `pi`'s current session. `None` without
    /// a usable session.
    fn seal_control(&mut self, now: Instant, pi: usize, msg: &Control) -> Option<Vec<u8>> {
        let plain = msg.encode();
        // Sealing moves a nonce and a counter, never a timer.
        let p = self.peers.quiet_mut(pi);
        let s = p.current.as_mut().filter(|s| usable(s, now))?;
        let mut buf = vec![0u8; plain.len() + TRANSPORT_OVERHEAD];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + plain.len()].copy_from_slice(&plain);
        let n = s.seal(&mut buf, plain.len()).ok()?;
        buf.truncate(n);
        p.stats.tx_packets += 1;
        Some(buf)
    }

    /// Sends an advert to peer `pi` on its current path.
    fn send_advert(&mut self, now: Instant, pi: usize, advert: &Advert) {
        let msg = Control::LinkState(advert.clone());
        if let Some(d) = self.seal_control(now, pi, &msg) {
            self.stats.gossip_bytes_sent += (d.len() - TRANSPORT_OVERHEAD) as u64;
            self.stats.gossip_messages_sent += 1;
            self.push_gossip(pi, d);
        }
    }

    /// A session with peer `pi` just became usable. The first time (and
    /// after the link was down) give it our advert and ask for everything it
    /// holds; a rekey of a link already in sync sends nothing.
    fn sync_gossip(&mut self, now: Instant, pi: usize) {
        if self.peers[pi].synced {
            return;
        }
        self.peers[pi].synced = true;
        for kind in BundleKind::ALL {
            self.offer(now, pi, kind);
        }
        let own = self.current_advert(now);
        self.send_advert(now, pi, &own);
        if let Some(d) = self.seal_control(now, pi, &Control::SyncRequest) {
            self.push_gossip(pi, d);
        }
    }

    /// The advert we last originated (originating one if there is none yet).
    fn current_advert(&mut self, now: Instant) -> Advert {
        match &self.last_advert {
            Some(a) => a.clone(),
            None => {
                let a = self.own_advert(now);
                self.last_advert = Some(a.clone());
                a
            }
        }
    }

    fn own_links(&self, now: Instant) -> Vec<OwnLink> {
        self.peers
            .iter()
            .filter_map(|p| {
                let h = p.health.as_ref()?;
                let session = p.current.as_ref().is_some_and(|s| usable(s, now));
                let up = session && h.status() == LinkStatus::Up;
                Some(OwnLink {
                    neighbor: p.node_id,
                    up,
                    settled: up && h.settled(now),
                    rtt_us: h
                        .srtt()
                        .map_or(1000, |d| d.as_micros().min(u32::MAX as u128) as u32),
                    loss_permille: (h.loss() * 1000.0) as u16,
                })
            })
            .collect()
    }

    /// A fresh advert of this node's links that are up. Sequence numbers
    /// start from the wall clock (ns) and grow by one per advert, so a
    /// restarted node's adverts replace the ones it sent before.
    fn own_advert(&mut self, now: Instant) -> Advert {
        self.advert_seq = (self.advert_seq + 1).max(self.last_unix_nanos);
        // Relays first: a hub with more links than an advert lists keeps
        // its backbone paths; its stubs vouch for their own links.
        let mut links = route::advert_entries(&self.own_links(now), |n| self.router.is_stub(n));
        let truncated = links.len() > MAX_ADVERT_ENTRIES;
        links.truncate(MAX_ADVERT_ENTRIES);
        let mut a = Advert {
            origin: self.node_id,
            seq: self.advert_seq,
            stub: !self.config.relay,
            truncated,
            links,
            signature: [0; 64],
        };
        a.signature = self.identity.sign_advert(&*self.crypto, &a.signed_bytes());
        a
    }

    /// Originates this node's advert at the next opportunity, as its
    /// periodic refresh would. For simulators measuring what a mesh-wide
    /// refresh round costs (meshd itself never calls it).
    pub fn readvertise(&mut self, now: Instant) {
        self.advert_soon(now);
    }

    /// Sends control message `msg` to `peer` in its current session, to its
    /// current path. For tools and tests that play a misbehaving member
    /// (meshd itself never calls it). False without a usable session.
    pub fn send_control(&mut self, now: Instant, peer: PeerId, msg: &Control) -> bool {
        let pi = peer.0 as usize;
        match self.seal_control(now, pi, msg) {
            Some(d) => {
                self.push_to_peer(pi, d);
                true
            }
            None => false,
        }
    }

    fn reject_advert(&mut self, reason: &'static str) {
        *self.stats.advert_rejects.entry(reason).or_default() += 1;
    }

    /// An advert from neighbour `pi`: checked against its origin's
    /// certificate (fetched from `pi` first if we have none), then taken
    /// and flooded on if it is newer than what we hold.
    fn on_advert(&mut self, now: Instant, pi: usize, advert: Advert) {
        let refused = self
            .by_node
            .get(&advert.origin)
            .is_some_and(|p| self.peers[p.0 as usize].refused);
        let held = self.router.advert(advert.origin).map(|a| a.seq);
        if refused || advert.origin == self.node_id || held.is_some_and(|s| s >= advert.seq) {
            return;
        }
        // A stub routes through relays only: another stub's links are of no
        // use to it (a relay may send one before it knows we are a stub).
        if advert.stub && !self.config.relay {
            return;
        }
        let Some(cert) = self.origin_certs.get(&advert.origin) else {
            self.park(now, pi, advert);
            return;
        };
        if let Some(a) = self.shared.as_ref().and_then(|s| s.advert(&advert)) {
            self.take_advert(now, pi, a); // verified by another endpoint
            return;
        }
        let key = cert.body().advert_key;
        let ok = self
            .crypto
            .ed25519_verify(&key, &advert.signed_bytes(), &advert.signature)
            .is_ok();
        if !ok {
            self.reject_advert("bad_signature");
            return;
        }
        let advert = match &self.shared {
            Some(s) => s.put_advert(advert),
            None => Arc::new(advert),
        };
        self.take_advert(now, pi, advert);
    }

    /// Keeps a verified node certificate (shared when there is a store).
    fn keep_origin_cert(&mut self, cert: Certificate) {
        let node = NodeId::of(cert.public_key());
        let cert = match &self.shared {
            Some(s) => s.put_cert(node, cert),
            None => Arc::new(cert),
        };
        self.origin_certs.insert(node, cert);
    }

    /// Parks an advert of an origin whose certificate we lack and asks the
    /// neighbour that sent it (which verified it) for the certificate.
    fn park(&mut self, now: Instant, pi: usize, advert: Advert) {
        let origin = advert.origin;
        let full = self.parked.len() >= MAX_PARKED;
        let ask = match self.parked.get_mut(&origin) {
            Some(p) => {
                let ask = now.saturating_duration_since(p.asked) >= CERT_RETRY;
                if advert.seq > p.advert.seq {
                    p.advert = advert;
                    p.from = pi;
                }
                if ask {
                    p.asked = now;
                    p.from = pi;
                }
                ask
            }
            None if full => {
                self.reject_advert("parked_full");
                false
            }
            None => {
                self.parked.insert(
                    origin,
                    Parked {
                        advert,
                        from: pi,
                        asked: now,
                    },
                );
                true
            }
        };
        if ask {
            if let Some(d) = self.seal_control(now, pi, &Control::CertRequest { node: origin }) {
                self.push_gossip(pi, d);
            }
        }
    }

    /// A certificate a neighbour sent for an origin we asked about.
    fn on_cert(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(cert) = Certificate::from_bytes(bytes) else {
            self.reject_advert("bad_certificate");
            return;
        };
        let origin = NodeId::of(cert.public_key());
        if !self.parked.contains_key(&origin) {
            return; // not asked for (or already resolved)
        }
        let unix = self.last_unix_nanos / 1_000_000_000;
        let known = self
            .shared
            .as_ref()
            .is_some_and(|s| s.cert(origin, bytes).is_some());
        if !known && self.ca.verify_node(&*self.crypto, &cert, unix).is_err() {
            self.reject_advert("bad_certificate");
            return;
        }
        let Some(parked) = self.parked.remove(&origin) else {
            return;
        };
        if self.admissible(&cert).is_err() {
            self.reject_advert("inadmissible_origin");
            return;
        }
        self.stats.certs_fetched += 1;
        self.keep_origin_cert(cert);
        self.on_advert(now, parked.from, parked.advert);
    }

    /// Takes a verified advert and floods it on.
    fn take_advert(&mut self, now: Instant, pi: usize, advert: Arc<Advert>) {
        // A refresh: the origin's links and roles as in the advert it
        // replaces (metrics may differ).
        let refresh = self
            .router
            .advert(advert.origin)
            .is_some_and(|held| same_topology(held, &advert));
        if !self.router.handle_advert(now, advert.clone()) {
            return;
        }
        // A neighbour turned out to relay, and our truncated advert left it
        // out while listing a stub in its place: relays come first. (With
        // more relaying neighbours than an advert lists, and no stub among
        // those listed, a new advert would leave it out again: re-originating
        // then, at every advert of every left-out neighbour, was an advert
        // storm in full meshes of more than 64 nodes.)
        let left_out = !advert.stub
            && self.last_advert.as_ref().is_some_and(|a| {
                a.truncated
                    && !a.links.iter().any(|l| l.neighbor == advert.origin)
                    && a.links.iter().any(|l| self.router.is_stub(l.neighbor))
            });
        let neighbour = || {
            self.by_node
                .get(&advert.origin)
                .is_some_and(|p| self.peers[p.0 as usize].health.is_some())
        };
        if left_out && neighbour() {
            self.advert_soon(now);
        }
        // Flood: every neighbour with a session but the sender and the
        // origin gets it once (sequence numbers stop the echo). A stub
        // floods nothing (no path passes through it, so no advert needs
        // to), and a stub's advert goes only to neighbours known to relay
        // (their own advert says so): a hub's leaves never hear of each
        // other. A neighbour whose advert we do not hold yet just came up;
        // what it misses here it gets in answer to its sync request.
        //
        // A refresh is not passed to neighbours the origin lists as its own:
        // the origin sent it to each of them over that very link. In a full
        // mesh that is everyone, and a refresh costs each node one message
        // per origin instead of one per origin and neighbour (N² per node
        // per round). A change is flooded to all, so one lost datagram does
        // not hide it.
        let covered: HashSet<NodeId> = if refresh {
            advert.links.iter().map(|l| l.neighbor).collect()
        } else {
            HashSet::new()
        };
        if self.config.relay {
            for i in 0..self.peers.len() {
                let q = &self.peers[i];
                if i == pi
                    || q.node_id == advert.origin
                    || q.health.is_none()
                    || covered.contains(&q.node_id)
                {
                    continue;
                }
                let relays = self.router.advert(q.node_id).is_some_and(|a| !a.stub);
                if advert.stub && !relays {
                    continue;
                }
                self.send_advert(now, i, &advert);
            }
        }
        // Batch route computation over a burst of adverts (as OSPF's SPF
        // delay): a node joining a large mesh gets thousands at once.
        let soon = now + ROUTE_BATCH_DELAY;
        self.route_at = Some(self.route_at.map_or(soon, |t| t.min(soon)));
    }

    /// Recomputes routes and moves peers onto their new paths.
    fn recompute_routes(&mut self, now: Instant) {
        self.recompute_routes_if(now, true);
    }

    /// As `recompute_routes`; with `always` false, only if the router's
    /// inputs changed (the periodic pass).
    fn recompute_routes_if(&mut self, now: Instant, always: bool) {
        let own = self.own_links(now);
        if !self.config.relay {
            // The relaying neighbour with the best working link.
            self.default_relay = own
                .iter()
                .filter(|l| l.up && self.router.advert(l.neighbor).is_some_and(|a| !a.stub))
                .min_by_key(|l| (l.rtt_us, l.neighbor))
                .and_then(|l| self.by_node.get(&l.neighbor).copied());
        }
        let changes = if always {
            self.router.recompute(now, &own)
        } else {
            self.router.recompute_if_changed(now, &own)
        };
        for c in changes {
            let Some(&peer) = self.by_node.get(&c.dst) else {
                continue;
            };
            let p = &self.peers[peer.0 as usize];
            // A peer with a direct address whose link is not probed yet (its
            // session is still coming up) stays direct: there is no evidence
            // the direct path is worse, and moving it would flap at startup.
            let unprobed = p.endpoint.is_some() && p.health.is_none();
            let via = match c.new {
                Some(nh) if nh != c.dst && !unprobed => self.by_node.get(&nh).copied(),
                _ => None,
            };
            if p.via == via {
                continue;
            }
            let p = &mut self.peers[peer.0 as usize];
            if p.via.is_none() {
                self.stats.failovers += 1;
            }
            p.via = via;
            self.stats.route_changes += 1;
            self.events.push_back(Event::PathChanged { peer, via });
        }
    }

    fn on_link_change(&mut self, now: Instant, peer: PeerId, change: LinkChange) {
        if change == LinkChange::WentDown {
            // It may miss floods while down: exchange everything again after.
            self.peers[peer.0 as usize].synced = false;
            // And whatever path it comes back on is measured afresh.
            self.peers[peer.0 as usize].pmtu = None;
        }
        self.events.push_back(Event::LinkChanged {
            peer,
            up: change == LinkChange::WentUp,
        });
        self.advert_soon(now);
        self.recompute_routes(now);
        if change == LinkChange::WentUp {
            self.sync_gossip(now, peer.0 as usize);
        }
    }

    /// Schedules our advert: at once, but no sooner than
    /// `MIN_ORIGINATION_INTERVAL` after the previous one, so a burst of link
    /// changes (a node coming up with many neighbours) is one advert, not a
    /// flood per link.
    fn advert_soon(&mut self, now: Instant) {
        // Each origination goes to every neighbour: a hub with a thousand
        // links spaces its adverts out (1 ms per neighbour), so its advert
        // traffic stays near 1,000 messages a second however often its
        // links change.
        let neighbours = self.peers.iter().filter(|p| p.health.is_some()).count() as u32;
        let interval = MIN_ORIGINATION_INTERVAL.max(ORIGINATION_PER_NEIGHBOUR * neighbours);
        let earliest = self
            .last_originated
            .map_or(now, |t| (t + interval).max(now));
        self.advert_at = Some(earliest);
    }

    /// A control message from `peer`, already authenticated by its session.
    fn handle_control(
        &mut self,
        now: Instant,
        peer: PeerId,
        source: Source,
        msg: Control,
    ) -> Received {
        let pi = peer.0 as usize;
        match msg {
            Control::Probe { seq } => {
                // Answer on the path the probe took (it measures that path).
                if let Some(d) = self.seal_control(now, pi, &Control::ProbeReply { seq }) {
                    self.push_reply(source, d);
                }
            }
            Control::ProbeReply { seq } => {
                if matches!(source, Source::Direct(_)) {
                    let change = self.peers[pi]
                        .health
                        .as_mut()
                        .and_then(|h| h.on_reply(now, seq));
                    if let Some(c) = change {
                        self.on_link_change(now, peer, c);
                    }
                }
            }
            Control::SyncRequest => {
                let own = self.current_advert(now);
                // A stub needs the adverts of nodes that relay, not of other
                // stubs (see `take_advert`).
                let to_stub = self.router.is_stub(self.peers[pi].node_id);
                let held: Vec<Advert> = self
                    .router
                    .adverts()
                    .filter(|a| !(to_stub && a.stub))
                    .cloned()
                    .collect();
                for a in std::iter::once(own).chain(held) {
                    self.send_advert(now, pi, &a);
                }
            }
            Control::BundleOffer { kind, version, len } => {
                self.on_bundle_offer(now, pi, kind, version, len);
            }
            Control::BundleRequest {
                kind,
                version,
                offset,
            } => self.on_bundle_request(now, pi, kind, version, offset),
            Control::BundleChunk {
                kind,
                version,
                offset,
                total,
                data,
            } => self.on_bundle_chunk(now, pi, kind, version, offset, total, &data),
            Control::LinkState(advert) => self.on_advert(now, pi, advert),
            Control::CertRequest { node } => {
                let cert = if node == self.node_id {
                    Some(self.identity.certificate().as_bytes().to_vec())
                } else {
                    self.origin_certs.get(&node).map(|c| c.as_bytes().to_vec())
                };
                if let Some(bytes) = cert {
                    if let Some(d) = self.seal_control(now, pi, &Control::Cert { bytes }) {
                        self.push_gossip(pi, d);
                    }
                }
            }
            Control::Cert { bytes } => self.on_cert(now, &bytes),
            Control::MtuProbe { seq, .. } => {
                // Answer on the path the probe took (it measures that path).
                if let Some(d) = self.seal_control(now, pi, &Control::MtuProbeReply { seq }) {
                    self.push_reply(source, d);
                }
            }
            Control::MtuProbeReply { seq } => {
                if matches!(source, Source::Direct(_)) {
                    let changed = self.peers[pi]
                        .pmtu
                        .as_mut()
                        .is_some_and(|m| m.on_ack(now, seq));
                    self.pmtu_changed(peer, changed);
                }
            }
        }
        Received::Control { peer }
    }

    fn handle_cookie_reply(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        buf: &[u8],
    ) -> Received {
        let receiver = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let Some(&peer) = self.by_index.get(&receiver) else {
            return self.drop_datagram(DropReason::UnknownIndex);
        };
        let p = &mut self.peers[peer.0 as usize];
        let Some(pending) = p
            .pending
            .as_mut()
            .filter(|x| x.hs.local_index() == receiver)
        else {
            return self.drop_datagram(DropReason::UnknownIndex);
        };
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        reply.copy_from_slice(buf);
        let Some(cookie) =
            cookie::open_cookie_reply(&*self.crypto, &p.cookie_key, &pending.sent_mac1, &reply)
        else {
            return self.drop_datagram(DropReason::BadCookieReply);
        };
        p.cookie = Some((cookie, now));
        let resend = !pending.cookie_resent;
        self.events.push_back(Event::CookieReceived { peer });
        if resend {
            self.initiate(now, unix_nanos, rng, peer);
            if let Some(pd) = self.peers[peer.0 as usize].pending.as_mut() {
                pd.cookie_resent = true;
            }
        }
        Received::Handshake
    }

    /// Processes one received UDP datagram from `src` up to, not including,
    /// the AEAD pass when it is a transport packet for a live session; any
    /// other datagram is handled completely (as [`Endpoint::handle_datagram`]).
    /// A driver that shares the endpoint between threads calls this under
    /// its lock, [`OpenPlan::open`] after releasing it, and
    /// [`Endpoint::finish_datagram`] under the lock again.
    pub fn prepare_datagram(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        src: SocketAddr,
        buf: &mut [u8],
    ) -> Incoming {
        if !matches!(classify(buf), Ok(MessageKind::Transport)) {
            return Incoming::Done(self.handle_datagram(now, unix_nanos, rng, src, buf));
        }
        self.last_unix_nanos = unix_nanos;
        match self.transport_lookup(now, unix_nanos, rng, Source::Direct(src), buf) {
            Ok((peer, local_index, job)) => Incoming::Open(OpenPlan {
                job,
                peer,
                local_index,
                src,
            }),
            Err(r) => Incoming::Done(r),
        }
    }

    /// The rest of a datagram [`Endpoint::prepare_datagram`] planned:
    /// `opened` is what [`OpenPlan::open`] returned for `buf`.
    pub fn finish_datagram(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        plan: OpenPlan,
        buf: &mut [u8],
        opened: Result<usize, SessionError>,
    ) -> Received {
        self.last_unix_nanos = unix_nanos;
        let source = Source::Direct(plan.src);
        let counter = plan.job.counter();
        self.transport_opened(
            now,
            unix_nanos,
            rng,
            source,
            (plan.peer, plan.local_index, counter),
            buf,
            opened,
        )
    }

    fn handle_transport(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        source: Source,
        buf: &mut [u8],
    ) -> Received {
        match self.transport_lookup(now, unix_nanos, rng, source, buf) {
            Ok((peer, local_index, job)) => {
                let opened = job.open(buf);
                let id = (peer, local_index, job.counter());
                self.transport_opened(now, unix_nanos, rng, source, id, buf, opened)
            }
            Err(r) => r,
        }
    }

    /// Finds the session a transport packet is for and checks its counter
    /// against the replay window.
    fn transport_lookup(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        source: Source,
        buf: &[u8],
    ) -> Result<(PeerId, u32, crate::session::OpenJob), Received> {
        let Ok(h) = TransportHeader::parse(buf) else {
            return Err(self.drop_datagram(DropReason::Malformed));
        };
        let Some(&peer) = self.by_index.get(&h.receiver_index) else {
            self.resync(now, unix_nanos, rng, source);
            return Err(self.drop_datagram(DropReason::UnknownIndex));
        };
        let p = &self.peers[peer.0 as usize];
        let session = [&p.current, &p.next, &p.previous]
            .into_iter()
            .flatten()
            .find(|s| s.local_index() == h.receiver_index);
        let Some(session) = session else {
            return Err(self.drop_datagram(DropReason::UnknownIndex));
        };
        if !usable(session, now) {
            return Err(self.drop_datagram(DropReason::SessionExpired));
        }
        match session.open_job(buf) {
            Ok(job) => Ok((peer, h.receiver_index, job)),
            Err(SessionError::Replay) => Err(self.drop_datagram(DropReason::Replay)),
            Err(SessionError::Wire(_)) => Err(self.drop_datagram(DropReason::Malformed)),
            Err(_) => Err(self.drop_datagram(DropReason::UnknownIndex)),
        }
    }

    /// A transport packet after its AEAD pass: commit the counter, then
    /// session confirmation, timers, and the plaintext's checks.
    #[allow(clippy::too_many_arguments)]
    fn transport_opened(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        source: Source,
        (peer, local_index, counter): (PeerId, u32, u64),
        buf: &mut [u8],
        opened: Result<usize, SessionError>,
    ) -> Received {
        let len = match opened {
            Ok(n) => n,
            Err(SessionError::Wire(_)) => return self.drop_datagram(DropReason::Malformed),
            Err(_) => return self.drop_datagram(DropReason::Decrypt),
        };
        // The session may have moved between slots (or gone) while the
        // packet was being opened outside the lock.
        let p = &mut self.peers[peer.0 as usize];
        let slot = [&p.current, &p.next, &p.previous]
            .into_iter()
            .position(|s| s.as_ref().is_some_and(|s| s.local_index() == local_index));
        let session = match slot {
            Some(0) => p.current.as_mut(),
            Some(1) => p.next.as_mut(),
            Some(_) => p.previous.as_mut(),
            None => None,
        };
        let Some(session) = session else {
            return self.drop_datagram(DropReason::UnknownIndex);
        };
        if !session.commit(counter) {
            return self.drop_datagram(DropReason::Replay);
        }
        let session_is_initiator = session.is_initiator();
        let session_age = now.saturating_duration_since(session.established());
        if slot == Some(1) {
            // First packet on the responder's new session confirms it.
            if let Some(old) = p.previous.take() {
                self.by_index.remove(&old.local_index());
            }
            p.previous = p.current.take();
            p.current = p.next.take();
            if let Source::Direct(a) = source {
                self.set_endpoint(peer, a);
            }
            // Anything queued while we waited can go now; probing and
            // gossip start.
            if self.peers[peer.0 as usize].queue.is_empty() {
                self.ensure_health(now, peer.0 as usize);
                self.sync_gossip(now, peer.0 as usize);
            } else {
                self.flush_queue(now, peer);
            }
        }
        if let Source::Direct(a) = source {
            self.set_endpoint(peer, a);
        }
        let p = &mut self.peers[peer.0 as usize];
        p.stats.rx_packets += 1;
        p.stats.rx_bytes += len as u64;
        p.new_handshake_at = None;
        if len > 0 && p.keepalive_at.is_none() {
            p.keepalive_at = Some(now + KEEPALIVE_TIMEOUT);
        }
        let rekey = session_is_initiator
            && slot == Some(0)
            && session_age >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
            && p.pending.is_none();
        if rekey {
            self.initiate(now, unix_nanos, rng, peer);
        }
        if len == 0 {
            return Received::Keepalive { peer };
        }
        let plain = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len];
        if control::is_control(plain) {
            return match Control::decode(plain) {
                Ok(msg) => self.handle_control(now, peer, source, msg),
                Err(_) => self.drop_datagram(DropReason::BadControl),
            };
        }
        let Some(inner_src) = inner_source(plain) else {
            return self.drop_datagram(DropReason::NotIp);
        };
        let allowed = self.peers[peer.0 as usize]
            .cert
            .as_ref()
            .is_some_and(|c| c.has_address(inner_src));
        if !allowed {
            return self.drop_datagram(DropReason::SpoofedSource);
        }
        let plain = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len];
        if let Err(r) = self.police(now, Direction::In, peer.0 as usize, plain) {
            return Received::Dropped(r);
        }
        Received::Data { peer, len }
    }

    /// A transport packet for a session we do not have, from the address of
    /// a known peer: the peer holds state we lost (we restarted, or it missed
    /// our rekey). Start a handshake at once rather than waiting for its
    /// 15-second new-handshake timer. Limited to once per REKEY_TIMEOUT per
    /// peer, so a spoofed flood costs at most one initiation per 5 s.
    fn resync(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        source: Source,
    ) {
        let known = match source {
            Source::Direct(src) => self.by_endpoint.get(&src),
            Source::Relayed { origin, .. } => self.by_node.get(&origin),
        };
        let Some(&peer) = known else {
            return;
        };
        let p = &mut self.peers[peer.0 as usize];
        let recent = p
            .last_resync
            .is_some_and(|t| now.saturating_duration_since(t) < REKEY_TIMEOUT);
        if p.pending.is_some() || recent {
            return;
        }
        p.last_resync = Some(now);
        self.initiate(now, unix_nanos, rng, peer);
    }

    /// The earliest deadline at which [`Endpoint::handle_timeout`] has work.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.peers.refresh(peer_deadline);
        let next = [
            self.peers.earliest(),
            self.reassembler.next_expiry(),
            self.route_at,
            self.advert_at,
            self.filter.poll_timeout(),
            self.offer_at,
        ]
        .into_iter()
        .chain(self.transfers.iter().flatten().map(|t| Some(t.deadline)))
        .flatten()
        .min();
        self.told_deadline = next;
        next
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, unix_nanos: u64, rng: &mut dyn CryptoRngCore) {
        self.last_unix_nanos = unix_nanos;
        self.detect_stall(now);
        self.reassembler.expire(now);
        self.filter.handle_timeout(now);
        self.bundle_timers(now);
        // The peers due now, and those written since the last call.
        self.peers.refresh(peer_deadline);
        let due = self.peers.take_due(now);
        self.probe_links(now, unix_nanos, rng, &due);
        if self.route_at.is_none_or(|t| t <= now) {
            let max_age = self
                .config
                .route
                .advert_max_age
                .max(4 * self.advert_refresh());
            self.router.expire(now, max_age);
            self.parked
                .retain(|_, p| now.saturating_duration_since(p.asked) < max_age);
            self.recompute_routes_if(now, false);
            // Periodic only while there is something to route over.
            let routing = self.router.adverts().next().is_some()
                || self.peers.iter().any(|p| p.health.is_some());
            self.route_at = routing.then_some(now + ROUTE_INTERVAL);
        }
        if self.advert_at.is_some_and(|t| t <= now) {
            self.last_originated = Some(now);
            let advert = self.own_advert(now);
            self.last_advert = Some(advert.clone());
            for i in 0..self.peers.len() {
                if self.peers[i].health.is_some() {
                    self.send_advert(now, i, &advert);
                }
            }
            self.advert_at = Some(now + self.advert_refresh());
        }
        for &i in &due {
            let peer = PeerId(i as u32);
            let p = &mut self.peers[i];
            if p.retransmit_at.is_some_and(|t| t <= now) {
                let gave_up = p
                    .attempt_started
                    .is_some_and(|t| now.saturating_duration_since(t) >= REKEY_ATTEMPT_TIME);
                if gave_up {
                    let dropped = p.queue.len();
                    p.queue.clear();
                    p.retransmit_at = None;
                    p.attempt_started = None;
                    if let Some(old) = p.pending.take() {
                        self.by_index.remove(&old.hs.local_index());
                    }
                    for _ in 0..dropped {
                        self.stats.drop(DropReason::HandshakeTimeout);
                    }
                    self.events
                        .push_back(Event::HandshakeTimedOut { peer, dropped });
                } else {
                    self.initiate(now, unix_nanos, rng, peer);
                }
            }
            let p = &mut self.peers[i];
            if p.new_handshake_at.is_some_and(|t| t <= now) {
                p.new_handshake_at = None;
                if p.pending.is_none() {
                    self.initiate(now, unix_nanos, rng, peer);
                }
            }
            let p = &mut self.peers[i];
            let keepalive_due = p.keepalive_at.is_some_and(|t| t <= now);
            let persistent_due = p.persistent_at.is_some_and(|t| t <= now);
            if keepalive_due || persistent_due {
                p.keepalive_at = None;
                self.send_keepalive(now, peer);
            }
            let p = &mut self.peers[i];
            if p.persistent_at.is_none() || persistent_due {
                p.persistent_at = p.persistent_keepalive.map(|d| now + d);
            }
            let p = &mut self.peers[i];
            if p.last_handshake
                .is_some_and(|t| now.saturating_duration_since(t) >= ZERO_KEYS_AFTER)
            {
                for s in [p.current.take(), p.previous.take(), p.next.take()]
                    .into_iter()
                    .flatten()
                {
                    self.by_index.remove(&s.local_index());
                }
                p.last_handshake = None;
                p.synced = false;
            }
        }
    }

    /// Were we called late? The deadline we last told the driver, due
    /// `late` ago and only now acted on, with no call in between, means this
    /// node was not running (Lifeguard's local health, see
    /// [`HealthConfig::stall_threshold`]). A deadline merely left in the
    /// past would be acted on at every call, so the gap since the previous
    /// call must cover the lateness.
    fn detect_stall(&mut self, now: Instant) {
        let last = self.last_timeout.replace(now);
        let Some(threshold) = self.config.health.and_then(|h| h.stall_threshold) else {
            return;
        };
        let (Some(due), Some(last)) = (self.told_deadline, last) else {
            return;
        };
        let late = now.saturating_duration_since(due);
        if late < threshold || now.saturating_duration_since(last) < late {
            return;
        }
        self.stats.local_stalls += 1;
        for h in self.peers.iter_mut().filter_map(|p| p.health.as_mut()) {
            h.on_local_stall(late);
        }
    }

    /// Counts lost probes, reacts to link changes, and sends due probes on
    /// the probed direct links of the peers in `due` (those with a timer due
    /// and those written since the last timer call: a peer that got a
    /// session gets its link state here).
    ///
    /// Probing keeps sessions as data does: a probed link whose session is
    /// gone (or, for the initiator, due for rekeying) gets a handshake, so a
    /// quiet mesh keeps measuring its links and can fail over at once.
    fn probe_links(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        rng: &mut dyn CryptoRngCore,
        due: &[usize],
    ) {
        for &i in due {
            self.ensure_health(now, i);
            let p = &mut self.peers[i];
            let Some(h) = p.health.as_mut() else { continue };
            let change = h.handle_timeout(now);
            let gone = h
                .down_since()
                .is_some_and(|t| now.saturating_duration_since(t) >= RETIRE_AFTER);
            if p.learned && gone && !h.carries_data(now) {
                if let Some(c) = change {
                    self.on_link_change(now, PeerId(i as u32), c);
                }
                self.retire(now, i);
                continue;
            }
            let session = p.current.as_ref().is_some_and(|s| usable(s, now));
            let probe = if session {
                h.poll_probe(now)
            } else {
                h.defer_probe(now);
                None
            };
            let stale = p.current.as_ref().is_none_or(|s| {
                !usable(s, now)
                    || (s.is_initiator()
                        && now.saturating_duration_since(s.established()) >= REKEY_AFTER_TIME)
            });
            if stale && p.pending.is_none() && p.endpoint.is_some() {
                self.initiate(now, unix_nanos, rng, PeerId(i as u32));
            }
            if let Some(c) = change {
                self.on_link_change(now, PeerId(i as u32), c);
            }
            let Some(dst) = self.peers[i].endpoint else {
                continue;
            };
            if let Some(seq) = probe {
                if let Some(d) = self.seal_control(now, i, &Control::Probe { seq }) {
                    self.stats.probes_sent += 1;
                    self.transmits.push_back(Transmit { dst, payload: d });
                }
            }
            if session {
                self.probe_path_mtu(now, i, dst);
            }
        }
    }

    /// Path MTU discovery on peer `pi`'s direct link to `dst`: a lost probe
    /// counted, the next one sent.
    fn probe_path_mtu(&mut self, now: Instant, pi: usize, dst: SocketAddr) {
        if !self.config.pmtu_discovery {
            return;
        }
        let ceiling = self.config.underlay_mtu;
        let p = &mut self.peers[pi];
        // Only a working link is measured: a dead one loses every size.
        let Some(h) = p.health.as_ref().filter(|h| h.status() == LinkStatus::Up) else {
            return;
        };
        let m = p.pmtu.get_or_insert_with(|| PathMtu::new(ceiling, now));
        // A few RTTs; an unmeasured link gets a second.
        let timeout = h.srtt().map_or(Duration::from_secs(1), |r| {
            (3 * r).clamp(Duration::from_millis(200), Duration::from_secs(1))
        });
        let changed = m.handle_timeout(now);
        let probe = m.poll_probe(now, timeout);
        self.pmtu_changed(PeerId(pi as u32), changed);
        let Some((seq, size)) = probe else { return };
        let outer = if dst.is_ipv4() { 28 } else { 48 };
        let len = size.saturating_sub(outer + TRANSPORT_OVERHEAD);
        if let Some(d) = self.seal_control(now, pi, &Control::MtuProbe { seq, len }) {
            self.stats.pmtu_probes_sent += 1;
            self.transmits.push_back(Transmit { dst, payload: d });
        }
    }

    fn pmtu_changed(&mut self, peer: PeerId, changed: bool) {
        if let Some(mtu) = self.peers[peer.0 as usize]
            .pmtu
            .as_ref()
            .filter(|_| changed)
            .map(PathMtu::mtu)
        {
            self.events.push_back(Event::PathMtuChanged { peer, mtu });
        }
    }

    fn send_keepalive(&mut self, now: Instant, peer: PeerId) {
        let pi = peer.0 as usize;
        let p = &mut self.peers[pi];
        let Some(s) = p.current.as_mut().filter(|s| usable(s, now)) else {
            return;
        };
        let mut buf = [0u8; TRANSPORT_OVERHEAD];
        if let Ok(n) = s.seal(&mut buf, 0) {
            p.stats.tx_packets += 1;
            self.push_to_peer(pi, buf[..n].to_vec());
        }
    }
}

/// A peer that introduced itself is retired after its direct link has been
/// down, carrying no data, for this long: no more probes or handshakes
/// until it initiates again or we have traffic for it.
pub const RETIRE_AFTER: Duration = Duration::from_secs(60);

/// Routes are recomputed at least this often, to follow RTT and loss.
const ROUTE_INTERVAL: Duration = Duration::from_secs(1);
/// A node originates at most one advert per this long.
const MIN_ORIGINATION_INTERVAL: Duration = Duration::from_millis(200);
/// ...and, on a node with many neighbours, at most one per this much per
/// neighbour.
const ORIGINATION_PER_NEIGHBOUR: Duration = Duration::from_millis(1);
/// Adverts received within this long share one route computation.
const ROUTE_BATCH_DELAY: Duration = Duration::from_millis(20);
/// Refresh adverts no more often than once per this much per known origin,
/// so the refresh traffic a node forwards stays flat as the mesh grows.
const REFRESH_PER_ORIGIN: Duration = Duration::from_secs(2);

fn wrap(h: RelayHeader, datagram: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; RELAY_HEADER_LEN + datagram.len()];
    h.write(&mut v);
    v[RELAY_HEADER_LEN..].copy_from_slice(datagram);
    v
}

/// Whether adverts `a` and `b` describe the same links and roles: the
/// same neighbours, up or settling alike, and the same stub and truncated
/// flags (RTT and loss may differ).
fn same_topology(a: &Advert, b: &Advert) -> bool {
    let links = |x: &Advert| {
        let mut v: Vec<(NodeId, bool)> = x.links.iter().map(|l| (l.neighbor, l.settling)).collect();
        v.sort_unstable();
        v
    };
    a.stub == b.stub && a.truncated == b.truncated && links(a) == links(b)
}

fn usable(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.established()) < REJECT_AFTER_TIME
}

fn on_data_sent(p: &mut Peer, now: Instant) {
    p.keepalive_at = None;
    if p.new_handshake_at.is_none() {
        p.new_handshake_at = Some(now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT);
    }
    if let Some(d) = p.persistent_keepalive {
        p.persistent_at = Some(now + d);
    }
}

/// The policy identity of `addr` on the node holding `cert`, cached per
/// filter generation (a node has few addresses).
fn cached_identity(
    policy: &Compiled,
    generation: u64,
    cache: &mut (u64, Vec<(IpAddr, pol::Identity)>),
    cert: Option<&Certificate>,
    addr: IpAddr,
) -> pol::Identity {
    if cache.0 != generation {
        *cache = (generation, Vec::new());
    }
    if let Some((_, i)) = cache.1.iter().find(|(a, _)| *a == addr) {
        return i.clone();
    }
    let (name, segments) = cert.map_or(("", &[][..]), |c| (c.name(), &c.body().segments[..]));
    let i = policy.identity(&Subject {
        name,
        segments,
        addr,
    });
    if cache.1.len() < 8 {
        cache.1.push((addr, i.clone()));
    }
    i
}

/// The source address of an IPv4 or IPv6 packet.
pub fn inner_source(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let b: [u8; 4] = packet[12..16].try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 if packet.len() >= 40 => {
            let b: [u8; 16] = packet[8..24].try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::DropReason;

    #[test]
    fn drop_reason_slots_follow_all() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.slot(), i, "{r}");
        }
    }
}
