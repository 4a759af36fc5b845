//! What an endpoint counts: drops by reason, handshakes, gossip, relaying.

use core::fmt;
use std::collections::HashMap;

use crate::handshake::HandshakeError;

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
    /// Under load, a fragment other than the first of a message whose first
    /// fragment was not taken (dropped before any MAC).
    FragmentOrphan,
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
    /// The policy refused the inner packet (see [`Endpoint::filter`](super::Endpoint::filter) for
    /// the direction and reason).
    PolicyDenied,
    /// The peer's certificate is revoked, or it is outside our enclaves:
    /// no session is kept with it.
    PeerRefused,
    /// The sealed datagram would exceed the underlay MTU on its path (a
    /// relayed path adds a relay header); the driver answers the sender with
    /// an ICMP "packet too big" ([`SendOutcome::TooBig`](super::SendOutcome::TooBig)).
    TooBig,
    /// Under handshake load, an initiation fragment beyond its source
    /// address's share, or beyond what all sources together may have
    /// looked at in a second; dropped before any MAC is computed.
    RateLimited,
    /// A complete initiation while [`MAX_PLANS`](super::handshake::MAX_PLANS)
    /// responder plans are outstanding (the driver is behind).
    HandshakeBacklog,
    /// A key reply that answers no request of ours in flight (wrong
    /// sender, nonce, or nothing asked).
    UnexpectedKeyReply,
    /// Data from or to a peer that intrusion detection quarantined
    /// ([`crate::ids`]).
    Quarantined,
    /// Data from a peer that intrusion detection rate-limited, over its
    /// rate.
    PeerRateLimited,
}

impl DropReason {
    /// All reasons, in counter order.
    pub const ALL: [DropReason; 33] = [
        Self::Malformed,
        Self::BadMac1,
        Self::CookieRequired,
        Self::FragmentInconsistent,
        Self::FragmentDuplicate,
        Self::FragmentOrphan,
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
        Self::RateLimited,
        Self::HandshakeBacklog,
        Self::UnexpectedKeyReply,
        Self::Quarantined,
        Self::PeerRateLimited,
    ];

    /// Stable name for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadMac1 => "bad_mac1",
            Self::CookieRequired => "cookie_required",
            Self::FragmentInconsistent => "fragment_inconsistent",
            Self::FragmentDuplicate => "fragment_duplicate",
            Self::FragmentOrphan => "fragment_orphan",
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
            Self::RateLimited => "rate_limited",
            Self::HandshakeBacklog => "handshake_backlog",
            Self::UnexpectedKeyReply => "unexpected_key_reply",
            Self::Quarantined => "quarantined",
            Self::PeerRateLimited => "peer_rate_limited",
        }
    }

    /// Counter index: the declaration order, which `ALL` follows (checked by
    /// a test), so counting a drop costs no search on the flood path.
    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Drops by reason, in [`DropReason::ALL`] order.
#[derive(Debug, Clone)]
struct Drops([u64; DropReason::ALL.len()]);

impl Default for Drops {
    fn default() -> Self {
        Self([0; DropReason::ALL.len()])
    }
}

/// Counters of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    drops: Drops,
    /// Handshakes completed (either role; a responder's when the first packet
    /// on its new session confirms it).
    pub handshakes_completed: u64,
    /// Handshake failures by [`HandshakeError::reason`].
    pub handshake_failures: HashMap<&'static str, u64>,
    /// Cookie replies sent.
    pub cookie_replies_sent: u64,
    /// Members known from the mesh (not configured, not dialled in) that
    /// became peers because traffic or a name lookup asked for them.
    pub members_learned: u64,
    /// Key requests sent to bootstrap addresses.
    pub key_requests_sent: u64,
    /// Key requests answered.
    pub key_replies_sent: u64,
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
    /// Relays suspected: another relay's advert stopped listing them while
    /// theirs still listed it (routes left them for a short hold).
    pub suspicions: u64,
    /// Syncs a stub sent to a relay that became its designated one (the
    /// relay that passes it other relays' changes).
    pub stub_catch_ups: u64,
    /// Probes sent.
    pub probes_sent: u64,
    /// Link-state bytes sent (adverts own, flooded and sent again,
    /// acknowledgements, sync requests), before encryption.
    pub gossip_bytes_sent: u64,
    /// Link-state messages sent (as `gossip_bytes_sent`).
    pub gossip_messages_sent: u64,
    /// Adverts sent (own, flooded, in answer to a sync request or an older
    /// copy; retransmissions apart).
    pub adverts_sent: u64,
    /// Adverts sent again because a neighbour did not acknowledge them.
    pub adverts_retransmitted: u64,
    /// Adverts received that were already held at that sequence number
    /// (floods crossing, retransmissions of acknowledgements lost, syncs).
    pub adverts_duplicate: u64,
    /// Bundles (policy, revocation) put in force.
    pub bundles_applied: u64,
    /// Bundles refused, by [`BundleError::reason`](crate::bundle::BundleError::reason).
    pub bundle_rejects: HashMap<&'static str, u64>,
    /// Bundle bytes sent in chunks.
    pub bundle_bytes_sent: u64,
    /// Bundle offers sent.
    pub bundle_offers_sent: u64,
    /// Control messages sent to neighbours and peers in sessions, probes
    /// and path traversal apart (link state, certificates, bundles,
    /// lookups, accusations), and their bytes before encryption: the
    /// mesh's overhead besides probing.
    pub control_messages_sent: u64,
    /// See `control_messages_sent`.
    pub control_bytes_sent: u64,
    /// `control_bytes_sent` by message kind ([`Control::kind_name`](crate::control::Control::kind_name)).
    pub control_bytes_by_kind: HashMap<&'static str, u64>,
    /// Peers retired: introduced themselves, then their link stayed down.
    pub peers_retired: u64,
    /// Learned peers removed (see [`Event::PeerRemoved`](super::Event::PeerRemoved)).
    pub peers_removed: u64,
    /// Adverts refused, by reason: `bad_signature` (not signed by the
    /// origin's advert key: altered or forged on the way), `bad_certificate`
    /// (the certificate offered for the origin failed verification),
    /// `inadmissible_origin` (revoked or outside our enclaves),
    /// `parked_full` (too many adverts waiting for certificates).
    pub advert_rejects: HashMap<&'static str, u64>,
    /// Origin certificates fetched from neighbours.
    pub certs_fetched: u64,
    /// Ed25519 signatures checked for gossip: adverts, origin and accuser
    /// certificates, accusations (counted too where the simulator's
    /// shared store spared the work: what a real node would spend).
    pub signatures_checked: u64,
    /// Accusations (signed alerts) this node originated: its own
    /// quarantines, their refreshes and withdrawals.
    pub accusations_originated: u64,
    /// Accusations of others taken as news (and flooded on).
    pub accusations_taken: u64,
    /// Accusation messages sent (own and flooded on).
    pub accusations_sent: u64,
    /// Accusations refused, by reason: `bad_signature`, `bad_certificate`
    /// (the carried certificate failed verification or is not the
    /// accuser's), `inadmissible_accuser` (revoked or outside our
    /// enclaves), `expired`, `self_accusation`, `too_many` (the accuser
    /// holds its maximum), `rate` (the accuser sends news faster than
    /// allowed), `book_full`.
    pub accusation_rejects: HashMap<&'static str, u64>,
    /// Times this node's timers ran late by the health stall threshold or
    /// more (it was not running; probes in flight were not blamed on peers).
    pub local_stalls: u64,
    /// Path MTU probes sent.
    pub pmtu_probes_sent: u64,
    /// Punches sent (our candidates, to a member reached through a relay).
    pub punches_sent: u64,
    /// Punches of other members answered with probes.
    pub punches_answered: u64,
    /// Probes sent directly to a member's candidates.
    pub punch_probes_sent: u64,
    /// Punches not acted on, by reason: `rate` (a member's punches came
    /// faster than one a second, or all together above the budget) and
    /// `candidate` (a loopback, unspecified, multicast or broadcast
    /// address, not probed).
    pub punch_refusals: HashMap<&'static str, u64>,
    /// Direct links that came up after punching.
    pub direct_paths_punched: u64,
    /// Times a peer's direct address went silent (handshakes sent there
    /// unanswered; see [`Event::EndpointSilent`](super::Event::EndpointSilent)).
    pub endpoints_silent: u64,
    /// Member lookups sent to the default relay (a stub that met traffic
    /// or a name for a member it holds no certificate of).
    pub lookups_sent: u64,
    /// Lookups of other members answered with a certificate.
    pub lookups_answered: u64,
    /// Lookups not answered for being above the budget of a second.
    pub lookups_refused: u64,
    /// Members learned from the answer to a lookup.
    pub members_looked_up: u64,
    /// Answers to lookups refused: the certificate failed the CA check,
    /// is revoked, or is outside our enclaves.
    pub lookup_answers_refused: u64,
}

impl Stats {
    /// Drops counted for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.0[reason.slot()]
    }

    /// Total drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.0.iter().sum()
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.drops.0[reason.slot()] += 1;
    }

    pub(crate) fn handshake_failed(&mut self, e: &HandshakeError) {
        *self.handshake_failures.entry(e.reason()).or_insert(0) += 1;
    }
}

/// Per-peer traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Plaintext bytes sent in its sessions: data and control alike.
    pub tx_bytes: u64,
    /// Plaintext bytes received in its sessions: data and control alike.
    pub rx_bytes: u64,
    /// Packets sent (including keepalives).
    pub tx_packets: u64,
    /// Packets received (including keepalives).
    pub rx_packets: u64,
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
