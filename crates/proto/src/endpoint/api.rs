//! The endpoint's public types: configuration, what the driver gets back
//! from each call, events, and the read-only views of peers and routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bundle::{BundleError, BundleKind};
use crate::cert::Certificate;
use crate::filter::FilterLimits;
use crate::fragment::ReassemblyLimits;
use crate::handshake::HandshakeError;

use super::handshake::RespondPlan;
use crate::health::HealthConfig;
use crate::ids::{Alert, IdsConfig};
use crate::route::RouteConfig;
use crate::session::{OpenJob, SealJob, SessionError};
use crate::store::SharedStore;
use crate::wire::{NodeId, RelayHeader, RELAY_HEADER_LEN};

use super::stats::{DropReason, PeerStats};

/// Identifies a peer within one [`Endpoint`](super::Endpoint). Only the
/// endpoint makes them (`add_peer`, and peers learned from handshakes);
/// a `PeerId` from another endpoint is refused, never a panic.
/// A removed peer's id is refused too, even once its slot holds another
/// peer (the generation tells them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    index: u32,
    gen: u32,
}

impl PeerId {
    pub(crate) fn new(index: usize, gen: u32) -> Self {
        Self {
            index: index as u32,
            gen,
        }
    }

    /// Position in the endpoint's peer table.
    pub(crate) fn index(self) -> usize {
        self.index as usize
    }

    /// Generation of that position.
    pub(crate) fn gen(self) -> u32 {
        self.gen
    }
}

/// Endpoint settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Accept handshakes from nodes not added with [`Endpoint::add_peer`](super::Endpoint::add_peer)
    /// (any node with a valid certificate from the mesh CA).
    pub accept_unknown_peers: bool,
    /// With `accept_unknown_peers`: the segments such a node must be in
    /// (one of them); empty accepts any segment.
    pub accept_segments: Vec<String>,
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
    /// Carry traffic for others also while behind a NAT. Without it, a
    /// relaying node that a neighbour sees at an address none of its own
    /// (`Candidates::behind_nat`) flags its adverts *no transit*: it keeps
    /// full link state and floods, but no path passes through it, since its
    /// links last only as long as its NAT's mappings.
    pub relay_behind_nat: bool,
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
    /// Answer key requests (type 6) with this node's static public key, so
    /// that a joining node configured with only our address can handshake
    /// with us (see `endpoint::bootstrap`).
    pub answer_key_requests: bool,
    /// Intrusion detection over what peers do in their sessions, and the
    /// responses it may take ([`crate::ids`]); `None`: off.
    pub ids: Option<IdsConfig>,
    /// Queue the signature checks of adverts and origin certificates for
    /// the driver ([`Endpoint::take_checks`](super::Endpoint::take_checks))
    /// instead of running them inside the call that received them: a
    /// burst of thousands then holds no lock and delays no probe answer.
    /// A driver that sets this must run the plans.
    pub defer_signature_checks: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            accept_unknown_peers: true,
            accept_segments: Vec::new(),
            handshake_load_threshold: 1000,
            queue_limit: 64,
            reassembly: ReassemblyLimits::default(),
            health: Some(HealthConfig::default()),
            route: RouteConfig::default(),
            relay: true,
            relay_behind_nat: false,
            advert_interval: Duration::from_secs(10),
            filter: FilterLimits::default(),
            aes_gcm: true,
            underlay_mtu: 1500,
            shared: None,
            pmtu_discovery: true,
            answer_key_requests: true,
            ids: Some(IdsConfig::default()),
            defer_signature_checks: false,
        }
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
    /// [`RETIRE_AFTER`](super::RETIRE_AFTER): no more probes or handshakes until it (or our
    /// traffic for it) comes back.
    PeerRetired {
        /// The peer.
        peer: PeerId,
    },
    /// A learned peer that held nothing any more (retired, or its sessions
    /// gone for [`RETIRE_AFTER`](super::RETIRE_AFTER)) was removed: its id
    /// is refused from now on, and it is learned afresh from its next
    /// handshake.
    PeerRemoved {
        /// The peer (its id no longer resolves).
        peer: PeerId,
        /// The name its certificate gave, if known.
        name: Option<String>,
    },
    /// A handshake completed: for the initiator when the response arrives,
    /// for the responder when the first packet on the new session confirms
    /// it.
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
    /// Intrusion detection raised an alert against `alert.node`, and took
    /// the response it names ([`crate::ids`]).
    Alert {
        /// The peer, if the node is one.
        peer: Option<PeerId>,
        /// The alert.
        alert: Alert,
    },
    /// An accusation arrived that is news (`crate::quorum`): `accuser`
    /// quarantines `accused` for `scenario`, or (withdrawn) no longer.
    Accusation {
        /// Who accuses.
        accuser: NodeId,
        /// Who is accused (maybe this node).
        accused: NodeId,
        /// The scenario named.
        scenario: String,
        /// The accuser's quarantine ended.
        withdrawn: bool,
    },
    /// Path MTU discovery changed the largest datagram the direct link to
    /// `peer` carries.
    PathMtuChanged {
        /// The peer.
        peer: PeerId,
        /// Datagram bytes, outer IP and UDP headers included.
        mtu: usize,
    },
    /// Handshakes sent to `peer`'s direct address went unanswered (the
    /// first retransmission was due): its traffic goes through a relay
    /// where one is known, and punching looks for a direct path.
    EndpointSilent {
        /// The peer.
        peer: PeerId,
        /// The address that does not answer.
        endpoint: SocketAddr,
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
    /// A handover ended and the peer's session is gone: whether it
    /// fetched the bundles in force before (if not, it keeps its old
    /// policy until another node hands it the new one).
    HandoverEnded {
        /// The peer.
        peer: PeerId,
        /// Whether it fetched the last chunk of a bundle in force.
        delivered: bool,
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

/// Outcome of [`Endpoint::send`](super::Endpoint::send).
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

/// Outcome of [`Endpoint::prepare_send`](super::Endpoint::prepare_send).
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
    pub(super) job: SealJob,
    pub(super) dst: SocketAddr,
    pub(super) relay: Option<RelayHeader>,
}

impl SealPlan {
    /// Seals the packet in `buf` (the buffer [`Endpoint::prepare_send`](super::Endpoint::prepare_send) saw)
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

/// Outcome of [`Endpoint::prepare_datagram`](super::Endpoint::prepare_datagram).
#[derive(Debug)]
pub enum Incoming {
    /// A transport packet for a live session: [`OpenPlan::open`] it (outside
    /// any lock), then hand the result to [`Endpoint::finish_datagram`](super::Endpoint::finish_datagram).
    Open(OpenPlan),
    /// A complete initiation: [`RespondPlan::run`] it (outside any lock,
    /// off the packet path if the driver can), then hand the result to
    /// [`Endpoint::finish_respond`](super::Endpoint::finish_respond).
    Respond(Box<RespondPlan>),
    /// Fully handled.
    Done(Received),
}

impl From<Result<Box<RespondPlan>, Received>> for Incoming {
    fn from(r: Result<Box<RespondPlan>, Received>) -> Self {
        match r {
            Ok(plan) => Self::Respond(plan),
            Err(r) => Self::Done(r),
        }
    }
}

/// A transport packet that passed the index and replay checks, received
/// directly or through a relay.
#[derive(Debug)]
pub struct OpenPlan {
    pub(super) job: OpenJob,
    pub(super) peer: PeerId,
    pub(super) local_index: u32,
    pub(super) source: super::Source,
}

impl OpenPlan {
    /// Decrypts the datagram in place (behind its relay header, if it came
    /// through a relay); `Ok` is the plaintext length.
    pub fn open(&self, buf: &mut [u8]) -> Result<usize, SessionError> {
        self.job.open(&mut buf[self.source.offset()..])
    }
}

/// Outcome of [`Endpoint::handle_datagram`](super::Endpoint::handle_datagram).
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
    /// Its certificate's name (from the handshake, or the configured
    /// certificate before one): the name it holds on this node.
    pub name: Option<String>,
    /// The overlay addresses it holds on this node (its certificate's).
    pub addresses: Vec<std::net::IpAddr>,
    /// When the last handshake completed.
    pub last_handshake: Option<Instant>,
    /// Whether a usable session exists.
    pub has_session: bool,
    /// Counters.
    pub stats: PeerStats,
    /// Wire id.
    pub node_id: NodeId,
    /// The relay traffic goes through, or `None` when direct: routed, or
    /// (a stub with no route there) its default relay.
    pub via: Option<PeerId>,
    /// The direct link's probe results, if it is probed.
    pub link: Option<LinkInfo>,
    /// Revoked or outside our enclaves: no sessions either way.
    pub refused: bool,
    /// The current session's transport AEAD.
    pub suite: Option<crate::provider::Suite>,
    /// The index the current session's packets from the peer carry (it
    /// is on the wire in clear).
    pub receiver_index: Option<u32>,
    /// A policy put it outside our enclaves while it had a session: how
    /// handing it the bundles went (see [`Handover`]).
    pub handover: Handover,
    /// Why it is not reached directly, while it is not.
    pub traversal: super::Traversal,
    /// Its direct address did not answer our handshakes (no packet came
    /// from it directly since): traffic goes through a relay.
    pub endpoint_silent: bool,
    /// Its clock minus ours, in ms, from the timestamp of its latest
    /// handshake initiation this node answered (none until it initiated
    /// one); the one-way delay is in it.
    pub clock_offset_ms: Option<i64>,
}

/// A peer that a new policy puts outside this node's enclaves may not hold
/// that policy yet (every path to it may run through nodes the policy cuts
/// off), so its session stays for [`HANDOVER`](super::HANDOVER), carrying
/// bundle transfers alone: no data, no link state, no relaying, no
/// handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handover {
    /// None took place.
    #[default]
    None,
    /// The session is open for bundles.
    Open {
        /// When it closes.
        until: Instant,
        /// The peer fetched the last chunk of a bundle in force.
        delivered: bool,
    },
    /// Over: the session is gone.
    Closed {
        /// The peer fetched the last chunk of a bundle in force first.
        delivered: bool,
    },
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
    /// Times it went down in the last ten minutes
    /// ([`crate::health::FLAP_WINDOW`]).
    pub recent_failures: usize,
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
