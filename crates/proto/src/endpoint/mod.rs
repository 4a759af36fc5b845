//! The endpoint: every peer of one node, their handshakes, sessions and
//! timers, link state and policy, as one sans-IO state machine.
//!
//! Call order (a driver loop):
//! 1. [`Endpoint::handle_datagram`] for each UDP datagram received;
//!    [`Endpoint::send`] for each IP packet to a peer (or the split forms
//!    [`Endpoint::prepare_datagram`] / [`Endpoint::finish_datagram`] and
//!    [`Endpoint::prepare_send`], which leave the AEAD pass to the caller,
//!    outside any lock);
//! 2. [`Endpoint::handle_timeout`] whenever [`Endpoint::poll_timeout`]'s
//!    deadline passes (early calls are harmless);
//! 3. after any of these, drain [`Endpoint::poll_transmit`] (handshake and
//!    control datagrams to send) and [`Endpoint::poll_event`].
//!
//! Data packets never go through the transmit queue: `send` seals in place
//! and tells the caller where to send the buffer, and `handle_datagram`
//! opens in place and tells the caller where the plaintext is. Time (`now`
//! for timers, `unix_nanos` for certificates and timestamps) is an argument
//! of every call; randomness comes from the generator given to
//! [`Endpoint::new`].
//!
//! The endpoint is a coordinator of parts that each own their state:
//!
//! | part | owns |
//! |---|---|
//! | `peer.rs` `Peers` | every peer: keys, session slots, WireGuard timers, link health, path |
//! | `handshake.rs` `Handshakes` | cookies, reassembly, replay guard, the load meter |
//! | `data.rs` | the send and receive paths of data packets (no state of its own) |
//! | `relay.rs` | forwarding relayed datagrams (no state of its own) |
//! | `gossip/` `Gossip` | link-state adverts, origin certificates, routes |
//! | `bundles.rs` `BundleSync` | policy and revocation bundles and their spread |
//! | `admission.rs` `Admission` | policy, filter, revocation list |
//! | `probes.rs` | link probes, path MTU, stall detection |
//! | `lifecycle.rs` | a peer admitted, refused (with a bundle handover), displaced, retired, removed (no state of its own) |
//!
//! Parts reach peers and the output through one context (`net::Cx`) and
//! report what concerns other parts (a link change, a completed handshake,
//! a complete bundle) back to this file, which acts on it. No part calls
//! another.
//!
//! A datagram in: [`wire::Datagram::parse`] once → initiation or response
//! fragment: `Handshakes` → `complete_handshake` here; cookie reply:
//! `Handshakes`; transport: `data` (index, replay window, open, commit,
//! then control messages to their part, or the inner packet's source check
//! and policy); relay: `relay` forwards it, or unwraps it for us and it
//! goes round again as `Source::Relayed`. A timer: `handle_timeout` here
//! runs each part's due timers and each due peer's.

use core::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;

use crate::cert::TrustedCa;
use crate::control::Control;
use crate::cookie::CookieChecker;
use crate::handshake::{HandshakeError, Identity};
use crate::health::{LinkChange, LinkHealth, LinkStatus};
use crate::provider::Crypto;
use crate::session::Session;
use crate::wire::{self, Datagram, HandshakeDatagram, NodeId, RelayHeader, RELAY_HEADER_LEN};

mod accusations;
mod admission;
mod api;
mod bootstrap;
mod bundles;
mod control_in;
mod data;
mod discovery;
mod flooding;
mod gossip;
mod handshake;
mod in_force;
mod lifecycle;
mod lookup;
mod members;
mod net;
mod news;
mod peer;
mod probes;
mod reconfigure;
mod relay;
mod stats;
mod status;
mod traversal;
mod watch;

pub use api::{
    EndpointConfig, Event, Handover, Incoming, LinkInfo, OpenPlan, PeerId, PeerInfo, Prepared,
    Received, RouteInfo, SealPlan, SendOutcome, Transmit,
};
pub use stats::{DropReason, PeerStats, Stats};
pub use traversal::Traversal;

use admission::{Admission, Claimant};
use bundles::BundleSync;
use gossip::Gossip;
pub use gossip::{CheckPlan, Checked, CHECK_BATCH};
use handshake::{Completed, Handshakes, Role};
pub use handshake::{RespondPlan, Responded, MAX_PLANS, PLANS_UNDER_LOAD};
use net::{Local, Output, Source};
use peer::{Peers, Rotation};

/// A peer that introduced itself is retired after its direct link has been
/// down, carrying no data, for this long: no more probes or handshakes
/// until it initiates again or we have traffic for it.
pub const RETIRE_AFTER: Duration = Duration::from_secs(60);

/// How long a peer that a new policy puts outside our enclaves keeps its
/// session for bundle transfers alone ([`Handover`]): a policy of a few
/// chunks crosses in a few round trips, or in 4 retries of 500 ms.
pub const HANDOVER: Duration = Duration::from_secs(5);
/// Learned peers are looked at this often, and removed when they hold
/// nothing (no confirmed session, handshake, queue or probed link: a
/// session the initiator never confirmed holds nothing) and have not
/// completed a handshake for [`RETIRE_AFTER`].
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// A handover ends this long after the peer fetched a bundle's last chunk
/// (time for a lost chunk to be asked for again).
const HANDOVER_LINGER: Duration = Duration::from_secs(1);

/// Why a completed handshake does not become a session.
pub(super) enum Refusal {
    /// Inadmissible (revoked, outside our enclaves): refused from now on.
    Refuse(HandshakeError),
    /// Not accepted, or claiming what another node holds: this handshake
    /// fails.
    Fail(HandshakeError),
}

/// All peers of one node. See the module docs for the call order.
pub struct Endpoint {
    local: Local,
    peers: Peers,
    out: Output,
    handshakes: Handshakes,
    gossip: Gossip,
    bundles: BundleSync,
    admission: Admission,
    stall: probes::StallDetector,
    /// Peers in an open [`Handover`].
    handing_over: Vec<PeerId>,
    /// When learned peers are next looked at for removal (while any exist).
    sweep_at: Option<Instant>,
    bootstraps: bootstrap::Bootstraps,
    /// Our candidate endpoints (see `traversal.rs`).
    candidates: traversal::Candidates,
    /// Member lookups this stub has outstanding, and a relay's answer budget.
    lookups: lookup::Lookups,
    /// Intrusion detection (`watch.rs`); `None` when configured off.
    ids: Option<crate::ids::Detector>,
    /// Accusations, ours and others' (`accusations.rs`).
    accusations: accusations::Accusations,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.local.identity.certificate().name())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

/// The context for one call, from the endpoint's own fields (so that the
/// parts beside it stay borrowable).
macro_rules! cx {
    ($self:ident) => {
        &mut $crate::endpoint::net::Cx {
            local: &mut $self.local,
            peers: &mut $self.peers,
            out: &mut $self.out,
        }
    };
}
use cx;

impl Endpoint {
    /// An endpoint for `identity`, trusting `ca`, drawing randomness
    /// (session indices, ephemeral keys, cookie secrets, jitter) from `rng`.
    pub fn new(
        crypto: Arc<dyn Crypto>,
        ca: TrustedCa,
        identity: Identity,
        config: EndpointConfig,
        rng: Box<dyn CryptoRngCore + Send>,
    ) -> Self {
        let cookies = CookieChecker::new(&*crypto, identity.static_public());
        let node_id = NodeId::of(identity.static_public());
        let mut identity = identity;
        identity.set_aes(&*crypto, config.aes_gcm);
        let local = Local {
            crypto,
            ca: Arc::new(ca),
            identity: Arc::new(identity),
            node_id,
            config,
            rng,
            unix_nanos: 0,
        };
        Self {
            peers: Peers::new(node_id, local.config.relay),
            out: Output::default(),
            handshakes: Handshakes::new(cookies, &local.config),
            gossip: Gossip::new(&local),
            ids: local.config.ids.clone().map(crate::ids::Detector::new),
            accusations: accusations::Accusations::new(
                (local.config.ids.as_ref()).map_or_else(Default::default, |c| c.agreement),
            ),
            bundles: BundleSync::default(),
            admission: Admission::new(local.config.filter, local.config.accept_segments.clone()),
            stall: probes::StallDetector::default(),
            handing_over: Vec::new(),
            sweep_at: None,
            bootstraps: bootstrap::Bootstraps::new(),
            candidates: traversal::Candidates::default(),
            lookups: lookup::Lookups::default(),
            local,
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
        let (id, new) = self.peers.insert(
            &*self.local.crypto,
            &self.local.identity,
            static_public,
            endpoint,
            persistent_keepalive,
            learned,
        );
        if new {
            let node = self.peers[id].node_id;
            let routed = self.gossip.add_peer(node);
            self.peers.quiet_mut(id).routed = routed;
            // Known by key alone: reached the way the routes go now.
            if endpoint.is_none() {
                self.peers[id].via = self.gossip.next_hop(&self.peers, node);
            }
        }
        id
    }

    /// Forces (or, with `None`, stops forcing) the under-load state that
    /// makes mac2 mandatory; by default it follows the initiation rate.
    pub fn set_under_load(&mut self, forced: Option<bool>) {
        self.handshakes.set_under_load(forced);
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Starts (or restarts) a handshake with `peer` now.
    pub fn initiate(&mut self, now: Instant, unix_nanos: u64, peer: PeerId) {
        self.local.unix_nanos = unix_nanos;
        if let Some(peer) = self.peers.checked(peer) {
            self.handshakes.initiate(cx!(self), now, peer);
        }
    }

    /// Processes one received UDP datagram from `src`, in place.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        src: SocketAddr,
        buf: &mut [u8],
    ) -> Received {
        self.local.unix_nanos = unix_nanos;
        self.dispatch(now, Source::Direct(src), buf)
    }

    /// One datagram, parsed once, to the part that handles its kind.
    fn dispatch(&mut self, now: Instant, source: Source, buf: &mut [u8]) -> Received {
        match Datagram::parse(buf) {
            Err(_) => self.out.drop(DropReason::Malformed),
            Ok(Datagram::Transport(h)) => self.handle_transport(now, source, h, buf),
            Ok(Datagram::Relay(h)) => self.handle_relay(now, source, h, buf),
            Ok(Datagram::Handshake(d)) => self.handle_handshake(now, source, d),
        }
    }

    /// A handshake fragment or cookie reply, in one call: a complete
    /// initiation's plan is run here.
    fn handle_handshake(
        &mut self,
        now: Instant,
        source: Source,
        d: HandshakeDatagram<'_>,
    ) -> Received {
        match self.handshake_datagram(now, source, d) {
            Ok(plan) => {
                let done = plan.run();
                self.responded(now, done)
            }
            Err(r) => r,
        }
    }

    /// A handshake fragment or cookie reply: `Ok` with the plan of the
    /// responder's cryptography once an initiation is complete, `Err` with
    /// what became of anything else.
    fn handshake_datagram(
        &mut self,
        now: Instant,
        source: Source,
        d: HandshakeDatagram<'_>,
    ) -> Result<Box<RespondPlan>, Received> {
        let done = match d {
            HandshakeDatagram::CookieReply(v) => {
                return Err(self.handshakes.on_cookie_reply(cx!(self), now, v))
            }
            HandshakeDatagram::Initiation(v) => {
                return self.handshakes.on_initiation(cx!(self), now, source, v)
            }
            HandshakeDatagram::Response(v) => {
                self.handshakes.on_response(cx!(self), now, source, v)
            }
            HandshakeDatagram::KeyRequest(v) => {
                return Err(self.bootstraps.on_request(cx!(self), now, source, v))
            }
            HandshakeDatagram::KeyReply(v) => {
                return Err(match self.bootstraps.on_reply(cx!(self), source, v) {
                    Ok(a) => self.bootstrap_answered(now, a),
                    Err(r) => r,
                })
            }
        };
        Err(match done {
            Ok(c) => self.complete_handshake(now, c),
            Err(r) => r,
        })
    }

    /// The rest of an initiation [`Endpoint::prepare_datagram`] planned
    /// ([`Incoming::Respond`]): `done` is what [`RespondPlan::run`]
    /// returned. Message 2 goes out with the next transmits.
    pub fn finish_respond(&mut self, now: Instant, unix_nanos: u64, done: Responded) -> Received {
        self.local.unix_nanos = unix_nanos;
        self.responded(now, done)
    }

    /// Signature checks queued under
    /// [`EndpointConfig::defer_signature_checks`], waiting for
    /// [`Endpoint::take_checks`].
    pub fn checks_pending(&self) -> usize {
        self.gossip.checks_pending()
    }

    /// Up to `max` queued signature checks, oldest first, as a plan to run
    /// with no lock on the endpoint held ([`CheckPlan::run`]); the result
    /// goes to [`Endpoint::finish_checks`]. `None`: nothing queued.
    pub fn take_checks(&mut self, max: usize) -> Option<CheckPlan> {
        self.gossip.take_checks(&self.local, max)
    }

    /// Takes back what [`CheckPlan::run`] found: adverts still newer than
    /// those held are taken and flooded on, certificates admitted and
    /// their parked adverts queued, as inline checks would.
    pub fn finish_checks(&mut self, now: Instant, unix_nanos: u64, done: Checked) {
        self.local.unix_nanos = unix_nanos;
        self.gossip
            .finish_checks(cx!(self), now, done, &self.admission);
    }

    fn responded(&mut self, now: Instant, done: Responded) -> Received {
        match Handshakes::on_responded(cx!(self), done) {
            Ok(c) => self.complete_handshake(now, c),
            Err(r) => r,
        }
    }

    /// A relayed datagram: deliver it if it is for us, else forward it one
    /// hop closer. Only neighbours with a usable session may hand us relayed
    /// datagrams; the inner datagram stays end-to-end encrypted.
    fn handle_relay(
        &mut self,
        now: Instant,
        source: Source,
        h: RelayHeader,
        buf: &mut [u8],
    ) -> Received {
        let src = match self.relayed_to_us(now, source, h, buf) {
            Ok(src) => src,
            Err(r) => return r,
        };
        let source = Source::Relayed {
            origin: h.src,
            hop: src,
        };
        let inner = &mut buf[RELAY_HEADER_LEN..];
        let r = match Datagram::parse(inner) {
            Ok(Datagram::Transport(t)) => self.handle_transport(now, source, t, inner),
            Ok(Datagram::Handshake(d)) => self.handle_handshake(now, source, d),
            // A relay header inside a relay header is never valid.
            Ok(Datagram::Relay(_)) | Err(_) => self.out.drop(DropReason::Malformed),
        };
        if let Received::Data { len, .. } = r {
            relay::move_plaintext(buf, len);
        }
        r
    }

    /// Checks a relayed datagram's hop, and forwards it unless it is for
    /// us: `Ok` with the hop's address when it is ours to open.
    fn relayed_to_us(
        &mut self,
        now: Instant,
        source: Source,
        h: RelayHeader,
        buf: &mut [u8],
    ) -> Result<SocketAddr, Received> {
        let Some(src) = source.direct() else {
            return Err(self.out.drop(DropReason::Malformed));
        };
        if !relay::from_neighbour(&self.peers, now, src) {
            return Err(self.out.drop(DropReason::RelayUnknownHop));
        }
        if h.dst != self.local.node_id {
            let relaying = self.local.config.relay;
            let router = self.gossip.router();
            return Err(relay::forward(
                cx!(self),
                router,
                relaying,
                now,
                src,
                h,
                buf,
            ));
        }
        Ok(src)
    }

    /// The part of a completed handshake both roles share: admission, the
    /// peer (a responder may meet it for the first time), its certificate,
    /// the session in its slot, and what follows (message 2 for a responder,
    /// the queued packets for an initiator).
    fn complete_handshake(&mut self, now: Instant, done: Completed) -> Received {
        let Completed {
            role,
            mut out,
            source,
        } = done;
        let src = source.key();
        let peer_static = *out.peer_cert.public_key();
        let known = match &role {
            Role::Initiator { peer, .. } => Some(*peer),
            Role::Responder { .. } => self.peers.by_static(&peer_static),
        };
        let learned = known.is_none_or(|p| self.peers[p].learned);
        let claimant = Claimant {
            key: &peer_static,
            cert: &out.peer_cert,
            configured: !learned,
        };
        match self.gate(&claimant) {
            Ok(displaced) => {
                for d in displaced {
                    self.displace(now, d, &claimant);
                }
            }
            Err(refusal) => {
                // A responder sends no reply: the initiator cannot complete it.
                if let Role::Initiator { local_index, .. } = role {
                    self.peers.release([local_index]);
                }
                let error = match refusal {
                    Refusal::Refuse(e) => {
                        if let Some(peer) = known {
                            self.refuse(now, peer, e.clone());
                        }
                        e
                    }
                    Refusal::Fail(e) => e,
                };
                let peer = known.filter(|_| matches!(role, Role::Initiator { .. }));
                return handshake::failed(cx!(self), peer, src, error);
            }
        }
        let peer = match &role {
            Role::Initiator { peer, .. } => *peer,
            Role::Responder { local_index, .. } => {
                let peer = match self.peers.by_static(&peer_static) {
                    Some(id) => id,
                    None if self.local.config.accept_unknown_peers => {
                        self.sweep_at.get_or_insert(now + SWEEP_INTERVAL);
                        self.insert_peer(peer_static, source.direct(), None, true)
                    }
                    None => return self.out.drop(DropReason::UnknownPeer),
                };
                self.peers.record_index(*local_index, peer);
                // Answer and keep talking through the relay it came by,
                // until routes say otherwise; unless our direct link to it
                // answers probes: then the relayed initiation says only
                // that the peer's view of the link lags ours (after its
                // NAT was renumbered, say), and nothing would move traffic
                // back, since the routes to it do not change.
                let proven = (self.peers[peer].health.as_ref())
                    .is_some_and(|h| h.status() == LinkStatus::Up && h.srtt().is_some());
                if let Source::Relayed { hop, .. } = source {
                    if !proven {
                        self.peers[peer].via = self.peers.by_endpoint(&hop);
                    }
                }
                peer
            }
        };
        let initiator_role = matches!(role, Role::Initiator { .. });
        if !initiator_role {
            self.report(now, peer, crate::ids::Evidence::Handshake);
        }
        // The initiator's address is taken from its answer; a responder keeps
        // the address it knows until the new session is confirmed (a message
        // 1 replayed from elsewhere must not redirect the peer's traffic).
        if let Some(a) = source.direct() {
            if initiator_role || self.peers[peer].endpoint.is_none() {
                self.peers.set_endpoint(peer, a);
            }
            if initiator_role {
                self.peers.heard_directly(peer);
            }
        }
        let claimant = Claimant {
            key: &peer_static,
            cert: &out.peer_cert,
            configured: !learned,
        };
        (self.admission).record_claims(&*self.local.crypto, peer, &claimant);
        self.gossip.keep_origin_cert(out.peer_cert.clone());
        let (local_index, how, initiator) = match &role {
            Role::Initiator { local_index, .. } => (*local_index, Rotation::Initiated, true),
            Role::Responder { local_index, .. } => (*local_index, Rotation::Responded, false),
        };
        let keys = out.session_keys(local_index);
        zeroize::Zeroize::zeroize(&mut out.send_key);
        zeroize::Zeroize::zeroize(&mut out.recv_key);
        let session = Session::new(&*self.local.crypto, &keys, now, initiator);
        drop(keys);
        let name = out.peer_cert.name().to_string();
        let p = &mut self.peers[peer];
        p.refused = false;
        if let Some(ns) = out.peer_clock_offset_ns {
            p.clock_offset_ms = Some(ns / 1_000_000);
        }
        p.cert = Some(out.peer_cert);
        let retired = p.sessions.rotate(session, how);
        p.timers.on_handshake_complete(now, initiator);
        self.peers.release(retired);
        if let Role::Responder {
            reply,
            sender_index,
            ..
        } = role
        {
            let frags = crate::fragment::fragment(
                &*self.local.crypto,
                wire::MessageKind::Response,
                local_index,
                sender_index,
                &reply,
                &self.peers[peer].mac1_key,
                None,
            );
            let cx = cx!(self);
            for f in frags {
                cx.send_reply(source, f);
            }
        }
        // A responder's handshake completes when the initiator's first
        // packet confirms it (`data.rs`): until then it is only a replayable
        // message 1 answered.
        if initiator {
            self.out.stats.handshakes_completed += 1;
            self.out.event(Event::HandshakeCompleted {
                peer,
                name,
                initiator,
            });
            self.flush_queue(now, peer);
        }
        Received::Handshake
    }

    /// A session with `peer` just became usable: start probing its direct
    /// link, and the first time (or after the link was down) exchange
    /// everything with it: bundles, our advert, a sync request.
    ///
    /// Not while its direct link is down (a session renewed through
    /// relays after the link failed): the exchange waits for the link to
    /// come back up. Floods reach the neighbour meanwhile over the routed
    /// path, acknowledged; a whole link-state database sent through relays
    /// is 10,000 adverts in a mesh that size, a burst of ~10 kB/s at a
    /// relay for half a minute.
    fn session_ready(&mut self, now: Instant, peer: PeerId) {
        self.ensure_health(now, peer);
        traversal::arm(cx!(self), now, peer);
        let down =
            (self.peers[peer].health.as_ref()).is_some_and(|h| h.status() == LinkStatus::Down);
        if self.peers[peer].synced || down {
            return;
        }
        self.peers[peer].synced = true;
        self.bundles.session_up(cx!(self), now, peer);
        self.gossip.send_sync(cx!(self), now, peer);
        self.send_accusations(now, peer);
    }

    /// Starts probing `peer`'s direct link once it has an address and a
    /// session; a new link changes our advert and maybe our routes.
    fn ensure_health(&mut self, now: Instant, peer: PeerId) {
        let Some(config) = self.local.config.health else {
            return;
        };
        let p = &mut self.peers[peer];
        // A silent address is not a link until a punch's answer proves it.
        if p.health.is_none() && p.endpoint.is_some() && !p.silent && p.session(now).is_some() {
            let salt = self.local.rng.next_u64();
            p.health = Some(LinkHealth::new(config, now).with_salt(salt));
            self.gossip.advert_soon(&self.peers, now);
            self.gossip.recompute_routes(cx!(self), now, true);
        }
    }

    fn on_link_change(&mut self, now: Instant, peer: PeerId, change: LinkChange) {
        if change == LinkChange::WentDown {
            // It may miss floods while down: exchange everything again
            // after; and whatever path it comes back on is measured afresh.
            let p = &mut self.peers[peer];
            p.synced = false;
            p.pmtu = None;
            self.gossip.link_down(peer);
            traversal::arm(cx!(self), now, peer);
        } else {
            traversal::on_link_up(cx!(self), peer);
        }
        self.out.event(Event::LinkChanged {
            peer,
            up: change == LinkChange::WentUp,
        });
        self.gossip.advert_soon(&self.peers, now);
        self.gossip.recompute_routes(cx!(self), now, true);
        if change == LinkChange::WentUp {
            self.session_ready(now, peer);
        } else if self.peers[peer].pending.is_none() {
            // The peer may have restarted and lost our session (its
            // answers stop just the same, and a node that does not list us
            // cannot ask for a new one): a handshake now, along whatever
            // path the routes give, finds out at once instead of after the
            // data timers' 15 s.
            self.handshakes.initiate(cx!(self), now, peer);
        }
    }

    /// Originates this node's advert at the next opportunity, as its
    /// periodic refresh would. For simulators measuring what a mesh-wide
    /// refresh round costs (meshd itself never calls it).
    pub fn readvertise(&mut self, now: Instant) {
        self.gossip.refresh_soon(&self.peers, now);
    }

    /// Sends control message `msg` to `peer` in its current session, to its
    /// current path. For tools and tests that play a misbehaving member
    /// (meshd itself never calls it). False without a usable session.
    pub fn send_control(&mut self, now: Instant, peer: PeerId, msg: &Control) -> bool {
        let Some(peer) = self.peers.checked(peer) else {
            return false;
        };
        let cx = cx!(self);
        match cx.seal_control(now, peer, msg) {
            Some(d) => {
                cx.send_on_path(peer, d);
                true
            }
            None => false,
        }
    }

    /// The earliest deadline at which [`Endpoint::handle_timeout`] has work.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.peers.refresh();
        self.gossip.check_routed(&self.peers);
        let next = [
            self.peers.earliest(),
            self.handshakes.poll_timeout(),
            self.gossip.poll_timeout(),
            self.admission.filter().poll_timeout(),
            self.bundles.poll_timeout(),
            self.handover_deadline(),
            self.sweep_at,
            self.bootstraps.poll_timeout(),
            self.accusations.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        self.stall.told(next);
        next
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, unix_nanos: u64) {
        self.local.unix_nanos = unix_nanos;
        if let Some(late) = self.stall.check(now, self.local.config.health.as_ref()) {
            self.out.stats.local_stalls += 1;
            for h in self.peers.iter_mut().filter_map(|p| p.health.as_mut()) {
                h.on_local_stall(now, late);
            }
        }
        self.handshakes.handle_timeout(now);
        self.bootstraps.handle_timeout(cx!(self), now);
        self.admission.filter_mut().handle_timeout(now);
        self.bundles.handle_timeout(cx!(self), now);
        self.end_handovers(now);
        if self.sweep_at.is_some_and(|t| t <= now) {
            self.sweep_learned(now);
        }
        // The peers due now, and those written since the last call: link
        // probes first (a peer that got a session gets its link state
        // here), then the gossip timers, then WireGuard's.
        let due = self.peers.take_due(now);
        for &peer in &due {
            self.probe_link(now, peer);
            if self.peers.checked(peer).is_some() {
                traversal::tick(cx!(self), &self.candidates, now, peer);
            }
        }
        self.update_transit(now);
        self.gossip.handle_timeout(cx!(self), now);
        self.expire_evidence(now);
        self.accusations_tick(now);
        // A retired peer is gone by now.
        for &peer in &due {
            if self.peers.checked(peer).is_some() {
                self.peer_timers(now, peer);
            }
        }
    }

    /// Refuses transit in our adverts while a neighbour sees us behind a
    /// NAT, unless configured to relay anyway.
    fn update_transit(&mut self, now: Instant) {
        let config = &self.local.config;
        let behind = config.relay && !config.relay_behind_nat && self.candidates.behind_nat(now);
        self.gossip.set_no_transit(&self.peers, now, behind);
    }

    /// One due peer's link: probes counted, link changes acted on, the
    /// session kept (probing keeps sessions as data does), the next probe.
    fn probe_link(&mut self, now: Instant, peer: PeerId) {
        self.ensure_health(now, peer);
        let Some(t) = probes::tick(&mut self.peers, now, peer) else {
            return;
        };
        if t.retire {
            if let Some(c) = t.change {
                self.on_link_change(now, peer, c);
            }
            self.retire(now, peer);
            return;
        }
        let p = &self.peers[peer];
        if t.stale && p.pending.is_none() && p.endpoint.is_some() {
            self.handshakes.initiate(cx!(self), now, peer);
        }
        if let Some(c) = t.change {
            self.on_link_change(now, peer, c);
        }
        probes::send(cx!(self), now, peer, &t);
    }

    /// One due peer's WireGuard timers.
    fn peer_timers(&mut self, now: Instant, peer: PeerId) {
        let due = self.peers[peer].timers.take_due(now);
        if due.give_up {
            let p = &mut self.peers[peer];
            let dropped = p.queue.len();
            p.queue.clear();
            let pending = p.pending.take().map(|h| h.local_index());
            self.peers.release(pending);
            for _ in 0..dropped {
                self.out.stats.drop(DropReason::HandshakeTimeout);
            }
            self.out.event(Event::HandshakeTimedOut { peer, dropped });
        }
        if due.retransmit {
            self.handshakes.initiate(cx!(self), now, peer);
        }
        if due.new_handshake && self.peers[peer].pending.is_none() {
            self.handshakes.initiate(cx!(self), now, peer);
        }
        if due.keepalive {
            self.send_keepalive(now, peer);
        }
        if due.zero_keys {
            let p = &mut self.peers[peer];
            let retired = p.sessions.clear();
            p.synced = false;
            self.peers.release(retired);
        }
    }
}
