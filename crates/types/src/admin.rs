//! The admin API: one JSON request per line on the agent's Unix socket,
//! answered by one JSON response line. `meshctl` is its client; `socat` or
//! `nc -U` work too: `echo '{"command":"status"}' | nc -U /run/meshd/meshd.sock`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum AdminRequest {
    /// This node's state.
    Status,
    /// Every peer.
    Peers,
    /// Prometheus text exposition of the node's counters.
    Metrics,
    /// Send one ICMP echo through the overlay and report the round trip.
    Ping {
        /// A peer's name or overlay address.
        target: String,
        /// Give up after this many milliseconds.
        timeout_ms: u64,
    },
    /// The route table.
    Routes,
    /// The path to a node, hop by hop, with each link's RTT, plus a measured
    /// end-to-end round trip.
    Trace {
        /// A peer's name or overlay address.
        target: String,
        /// Give up on the end-to-end ping after this many milliseconds.
        timeout_ms: u64,
    },
    /// Put a signed bundle (policy or revocation list, armoured) in force
    /// and gossip it.
    PushBundle {
        /// The armoured bundle.
        bundle: String,
    },
    /// The revocation list in force.
    Revocations,
    /// The policy in force: its text, version and signer.
    PolicyShow,
    /// Re-read the configuration file and apply what can change while
    /// running (as SIGHUP does).
    Reload,
    /// Intrusion-detection alerts, most recent last, and counts since start.
    Alerts,
    /// Peers under an intrusion-detection sanction (rate limit or
    /// quarantine); with `release`, the sanction on that peer (a name or
    /// overlay address) is lifted first.
    Quarantine {
        /// The peer to release.
        #[serde(default)]
        release: Option<String>,
    },
    /// New session keys with a peer (a name or overlay address) now: a
    /// fresh hybrid handshake, with the current session carrying traffic
    /// until the new one is confirmed.
    Rekey {
        /// The peer.
        peer: String,
    },
}

/// A response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum AdminResponse {
    /// Answer to `status`.
    Status(Box<StatusView>),
    /// Answer to `peers`.
    Peers {
        /// The peers.
        peers: Vec<PeerView>,
    },
    /// Answer to `ping`.
    Ping(PingView),
    /// Answer to `routes`.
    Routes {
        /// One row per destination.
        routes: Vec<RouteView>,
    },
    /// Answer to `trace`.
    Trace(TraceView),
    /// Answer to `metrics`.
    Metrics {
        /// Prometheus text format, version 0.0.4.
        text: String,
    },
    /// Answer to `push-bundle`: now in force.
    #[serde(rename_all = "kebab-case")]
    Pushed {
        /// `policy` or `revocation`.
        kind: String,
        /// Its version.
        version: u64,
        /// Peers the bundle puts outside this node's enclaves, whose
        /// sessions stay open a few seconds to hand it to them (their
        /// outcome shows in `peers`, `bundle-handover`).
        #[serde(default, alias = "handing_over")]
        handing_over: Vec<String>,
    },
    /// Answer to `policy-show`.
    Policy {
        /// Version in force (none: no policy, all traffic allowed).
        version: Option<u64>,
        /// When it was signed (Unix seconds).
        issued: Option<u64>,
        /// Who signed it: `ca` or the policy signer's certificate name.
        signer: Option<String>,
        /// The policy text as signed (TOML).
        text: Option<String>,
    },
    /// Answer to `revocations`.
    Revocations {
        /// Version of the list in force, if any.
        version: Option<u64>,
        /// The revoked certificates.
        entries: Vec<RevokedView>,
    },
    /// Answer to `reload`: the new configuration is in force, but for what
    /// `restart_needed` names.
    Reloaded(ReloadView),
    /// Answer to `alerts`.
    Alerts {
        /// Detection in force: `prevent`, `detect` (alerts only) or `off`.
        mode: String,
        /// The most recent alerts (at most 256), oldest first.
        alerts: Vec<AlertView>,
        /// Alerts since start, keyed `scenario/response`.
        counts: BTreeMap<String, u64>,
        /// Accusations (signed alerts of other members) held now.
        #[serde(default)]
        accusations: Vec<AccusationView>,
        /// Distinct accusers that quarantine a member mesh-wide.
        #[serde(default)]
        quorum: usize,
    },
    /// Answer to `quarantine`.
    Quarantine {
        /// The peer released, if one was asked for and held.
        released: Option<String>,
        /// Peers under a sanction now.
        sanctioned: Vec<SanctionView>,
    },
    /// Answer to `rekey`: the handshake is under way.
    #[serde(rename_all = "kebab-case")]
    Rekeying {
        /// The peer's name.
        peer: String,
        /// Whether a session was in force (false: this is its first
        /// handshake since it lost or never had one).
        had_session: bool,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// One intrusion-detection alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AlertView {
    /// Seconds since it was raised.
    pub age_secs: f64,
    /// The peer it is against.
    pub peer: String,
    /// The scenario that overflowed (`scan`, `denied-flood`, `spoofing`,
    /// `bad-control`).
    pub scenario: String,
    /// What was done: `alert`, `rate-limit` or `quarantine`.
    pub response: String,
    /// The peer's offences in that scenario, this one included.
    pub offence: u32,
    /// How long the rate limit or quarantine was set for, seconds.
    pub for_secs: Option<u64>,
    /// For a quarantine by agreement (scenario `quorum`): the members
    /// whose accusations made the quorum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accusers: Vec<String>,
}

/// An accusation held: another member says it quarantines one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AccusationView {
    /// Who is accused.
    pub accused: String,
    /// Who accuses.
    pub accuser: String,
    /// The scenario the accuser named.
    pub scenario: String,
    /// Seconds it holds unless its accuser refreshes it.
    pub holds_secs: u64,
    /// Whether it counts towards a quorum (not discounted by a release
    /// here, accuser not quarantined here).
    pub counts: bool,
}

/// A drop reason out of its normal range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UnusualDropView {
    /// The reason (as in `drops`).
    pub reason: String,
    /// Drops in the unusual 10 s window.
    pub count: u64,
    /// What is usual for it per 10 s, as learned.
    pub usual: f64,
    /// Seconds since that window.
    pub age_secs: u64,
}

/// A peer under a sanction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SanctionView {
    /// The peer.
    pub peer: String,
    /// `quarantine` or `rate-limit`.
    pub response: String,
    /// Seconds until it ends.
    pub remaining_secs: u64,
    /// Quarantines it has had (each doubles the next).
    pub quarantines: u32,
    /// Whose decision: `this-node` (its own evidence) or `quorum`
    /// (accusations of other members agreed).
    #[serde(default)]
    pub by: String,
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReloadView {
    /// Changes put in force, one line each (`peer h3 added`, …).
    pub applied: Vec<String>,
    /// Settings that changed in the file but take effect only after a
    /// restart, each with the field named.
    pub restart_needed: Vec<String>,
    /// Entries left out (a peer's certificate expired, missing or not the
    /// CA's), each naming the field and the fix.
    pub warnings: Vec<String>,
}

/// This node, as `meshctl status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatusView {
    /// meshd version.
    pub version: String,
    /// Certificate name.
    pub name: String,
    /// Overlay addresses.
    pub addresses: Vec<String>,
    /// Segments.
    pub segments: Vec<String>,
    /// Fingerprint of the mesh CA, hex.
    pub ca_fingerprint: String,
    /// UDP listen address.
    pub listen: String,
    /// TUN interface name.
    pub tun: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// End of this node's certificate validity, Unix seconds.
    #[serde(default)]
    pub certificate_not_after: u64,
    /// Peers known.
    pub peers: usize,
    /// Peers with a usable session.
    pub sessions: usize,
    /// Handshakes completed.
    pub handshakes_completed: u64,
    /// Handshake failures by reason.
    pub handshake_failures: BTreeMap<String, u64>,
    /// Drops by reason (only reasons with a count).
    pub drops: BTreeMap<String, u64>,
    /// Drop reasons that had a 10 s window far above their learned habit
    /// in the last 10 minutes.
    #[serde(default)]
    pub unusual_drops: Vec<UnusualDropView>,
    /// Policy and revocation state.
    #[serde(default)]
    pub policy: PolicyStatusView,
    /// Routing: this node's role and what its link-state database holds.
    #[serde(default)]
    pub routing: RoutingStatusView,
}

/// This node's part in routing, as `meshctl status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RoutingStatusView {
    /// Carries traffic for others: `[routing] relay` is not `false`, and
    /// not `"auto"` behind a NAT.
    pub relay: bool,
    /// `relay`, `stub` (`[routing] relay = false`) or `no-transit` (behind
    /// a NAT with `relay = "auto"`: full link state, no path through it).
    #[serde(default)]
    pub role: String,
    /// Link-state adverts held (a stub holds only relays').
    pub adverts_held: usize,
    /// Nodes the last route computation reached.
    pub nodes_reachable: usize,
    /// Times this node found itself stalled (timers 100 ms or more late).
    pub local_stalls: u64,
    /// Members known from the mesh (not configured, not dialled in) that
    /// became peers when traffic or a name lookup asked for them.
    #[serde(default)]
    pub members_learned: u64,
    /// Bootstrap addresses (`[discovery] bootstrap`), each with the name of
    /// the member that answered there, if one has.
    #[serde(default)]
    pub bootstrap: Vec<BootstrapView>,
    /// This node's candidate endpoints, as its punches name them: the
    /// reflexive addresses its direct neighbours observe, then its local
    /// ones.
    #[serde(default)]
    pub candidates: Vec<String>,
    /// What its neighbours' observations say of a NAT in front of it:
    /// `none`, `endpoint-independent` (one public port for every
    /// destination: punchable), or `per-destination` (a new port per
    /// destination, symmetric: punchable only towards open nodes).
    #[serde(default)]
    pub nat: String,
}

/// One bootstrap address, as `meshctl status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BootstrapView {
    /// The underlay address.
    pub address: String,
    /// The member that answered there (its name once its handshake
    /// completed), or none yet.
    pub member: Option<String>,
}

/// The policy in force, as `meshctl status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyStatusView {
    /// Version of the policy bundle in force (none: all traffic allowed,
    /// unless `fail_closed`).
    pub policy_version: Option<u64>,
    /// No valid policy, but this node had one (its saved policy did not
    /// load): it denies all traffic until a valid policy arrives.
    #[serde(default)]
    pub fail_closed: bool,
    /// Rules in it.
    pub rules: usize,
    /// Its enclaves.
    pub enclaves: Vec<String>,
    /// Version of the revocation list in force.
    pub revocation_version: Option<u64>,
    /// Certificates it revokes.
    pub revoked: usize,
    /// Peers refused (revoked, or outside our enclaves).
    pub refused_peers: usize,
    /// Flows tracked now.
    pub tracked_flows: usize,
    /// Packets refused, keyed `direction/reason` (e.g. `in/default`).
    pub denied: BTreeMap<String, u64>,
    /// Bundles refused, by reason.
    pub bundle_rejects: BTreeMap<String, u64>,
    /// A newer policy version neighbours offer and this node has not put
    /// in force: the version, and for how many seconds it has been offered.
    #[serde(default)]
    pub newer_policy_offered: Option<(u64, u64)>,
    /// The same for the revocation list.
    #[serde(default)]
    pub newer_revocation_offered: Option<(u64, u64)>,
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RevokedView {
    /// Certificate fingerprint, hex.
    pub fingerprint: String,
    /// Its name.
    pub name: String,
}

/// One peer, as `meshctl peers` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerView {
    /// Certificate name (once known).
    pub name: String,
    /// Overlay addresses from its certificate.
    pub addresses: Vec<String>,
    /// Segments from its certificate (once known).
    #[serde(default)]
    pub segments: Vec<String>,
    /// Underlay endpoint.
    pub endpoint: Option<String>,
    /// Seconds since the last handshake completed.
    pub handshake_age_secs: Option<f64>,
    /// Whether the session's keys come from the hybrid X25519 + ML-KEM-768 handshake.
    pub hybrid_post_quantum: bool,
    /// The session's transport AEAD (`chacha20-poly1305` or `aes-256-gcm`).
    #[serde(default)]
    pub cipher: Option<String>,
    /// Whether a usable session exists.
    pub session: bool,
    /// Payload bytes sent.
    pub tx_bytes: u64,
    /// Payload bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Last measured round-trip time in milliseconds, if any.
    pub last_rtt_ms: Option<f64>,
    /// How traffic to the peer travels: `direct` or `via RELAY`.
    pub path: String,
    /// The direct link's state from probes: `up`, `down`, or absent when
    /// it is not probed (no direct address or no session).
    pub link: Option<String>,
    /// The direct link's smoothed probe RTT in milliseconds.
    pub link_rtt_ms: Option<f64>,
    /// The direct link's RTT variation (jitter) in milliseconds.
    pub link_jitter_ms: Option<f64>,
    /// Fraction of recent probes on the direct link that were lost.
    pub link_loss: Option<f64>,
    /// Times the direct link went down in the last ten minutes.
    #[serde(default)]
    pub link_failures_10m: Option<usize>,
    /// Largest datagram the direct link carries, outer headers included
    /// (path MTU discovery; the underlay MTU until it found less).
    #[serde(default)]
    pub path_mtu: Option<usize>,
    /// Its clock minus this node's, in ms, from the timestamp of its latest
    /// handshake initiation this node answered.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    /// The index the current session's packets from the peer carry (as
    /// they show on the wire, for matching a capture).
    #[serde(default)]
    pub receiver_index: Option<u32>,
    /// Refused by this node (revoked, or outside its enclaves).
    #[serde(default)]
    pub refused: bool,
    /// Why it is refused: `revoked` (its certificate is on the revocation
    /// list in force) or `enclave` (the policy puts it outside this
    /// node's enclaves).
    #[serde(default)]
    pub refused_because: Option<String>,
    /// End of its certificate's validity, Unix seconds (once known).
    #[serde(default)]
    pub certificate_not_after: Option<u64>,
    /// When a policy put it outside this node's enclaves while it had a
    /// session, handing it the bundles over that session: `open` (still
    /// under way), `delivered` (it fetched them), `undelivered` (the
    /// session closed first).
    #[serde(default)]
    pub bundle_handover: Option<String>,
    /// Why traffic to it goes through a relay while it does: `punching
    /// (attempt N)`, or `both ends behind NATs that map per destination`
    /// (no direct path can be opened; the relayed one stays).
    #[serde(default)]
    pub relayed_because: Option<String>,
}

/// One route, as `meshctl routes` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RouteView {
    /// Destination name (or node id when it is not a peer).
    pub destination: String,
    /// First hop name (the destination itself when direct).
    pub next_hop: String,
    /// Path cost in microseconds (RTT plus loss and hop penalties).
    pub metric_us: u64,
    /// Links on the path.
    pub hops: u8,
    /// Seconds since this next hop was chosen.
    pub age_secs: f64,
}

/// One hop of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HopView {
    /// The node reached by this hop.
    pub node: String,
    /// This link's RTT in milliseconds (from probes or adverts).
    pub link_rtt_ms: f64,
    /// Sum of link RTTs up to here, in milliseconds.
    pub cumulative_ms: f64,
}

/// The answer to `trace`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TraceView {
    /// The destination.
    pub peer: String,
    /// Every hop in order; the last is the destination.
    pub hops: Vec<HopView>,
    /// A measured ICMP round trip along the real path, in milliseconds.
    pub rtt_ms: Option<f64>,
}

/// One ping probe's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PingView {
    /// Peer name.
    pub peer: String,
    /// Overlay address pinged.
    pub address: String,
    /// ICMP sequence number.
    pub seq: u16,
    /// The path taken: `direct` (to the peer's endpoint) or `via RELAY`.
    pub path: String,
    /// Underlay endpoint used.
    pub endpoint: Option<String>,
    /// Round trip in milliseconds; absent if no reply came in time.
    pub rtt_ms: Option<f64>,
}
