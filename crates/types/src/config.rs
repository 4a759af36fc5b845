//! The node configuration file (`meshd --config node.toml`).
//!
//! Kebab-case TOML; unknown fields are errors (a typo is never silently
//! ignored). Paths are relative to the configuration file's directory.
//! [`NodeConfig::load`] returns errors that name the file, the field and
//! the fix.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Smallest TUN MTU (the IPv6 minimum).
pub const MIN_TUN_MTU: u16 = 1280;
/// Largest TUN MTU.
pub const MAX_TUN_MTU: u16 = 9000;

/// A whole node configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's identity files.
    pub node: NodeSection,
    /// The UDP underlay socket.
    #[serde(default)]
    pub listen: ListenSection,
    /// The TUN device.
    #[serde(default)]
    pub tun: TunSection,
    /// The admin API socket.
    #[serde(default)]
    pub admin: AdminSection,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// Static peers (`[[peer]]` tables).
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerSection>,
    /// Signed policy and revocation bundles.
    #[serde(default)]
    pub policy: PolicySection,
    /// Transport cryptography.
    #[serde(default)]
    pub crypto: CryptoSection,
    /// Routing role.
    #[serde(default)]
    pub routing: RoutingSection,
    /// Link probing: how fast a failed link is noticed.
    #[serde(default)]
    pub health: HealthSection,
    /// Which nodes besides the configured peers may hold a session.
    #[serde(default)]
    pub admission: AdmissionSection,
    /// Joining the mesh by bootstrap addresses.
    #[serde(default)]
    pub discovery: DiscoverySection,
    /// Intrusion detection over what peers do in their sessions.
    #[serde(default)]
    pub ids: IdsSection,
}

/// `[discovery]`: how this node finds the mesh without listing its members.
/// With `bootstrap` set, a node needs no `[[peer]]` at all: it asks each
/// bootstrap address for the static key of the member there (a key probe),
/// handshakes with it, and learns every other member (certificate, overlay
/// address, name, routes) from the mesh's link state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DiscoverySection {
    /// Underlay addresses of any members (`"198.18.0.1:51820"`); each is
    /// asked until it answers, and again whenever its member is gone.
    pub bootstrap: Vec<SocketAddr>,
    /// Answer other nodes' key probes with this node's static public key
    /// (32 bytes, in a reply smaller than the request), so that any member
    /// can serve as a bootstrap address. `false` keeps the key to nodes that
    /// list this one.
    pub answer_key_probes: bool,
    /// Answer DNS queries (A, AAAA) for `<member name>.<this domain>` on
    /// this node's overlay addresses, port 53, from the certificates it
    /// holds; empty: no DNS.
    pub dns_domain: String,
}

impl Default for DiscoverySection {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            answer_key_probes: true,
            dns_domain: "mesh".into(),
        }
    }
}

/// `[admission]`: which nodes that are not `[[peer]]`s may hold a session
/// with this one. Any node with a valid certificate of the mesh's CA, by
/// default; a node never lets one certificate take an overlay address or
/// name another node's valid certificate holds, whatever this says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdmissionSection {
    /// Accept handshakes from nodes that are not configured peers. `false`:
    /// only the `[[peer]]`s.
    pub accept_unknown_peers: bool,
    /// With `accept-unknown-peers`, only nodes in one of these segments
    /// (empty: any segment).
    pub accept_segments: Vec<String>,
}

impl Default for AdmissionSection {
    fn default() -> Self {
        Self {
            accept_unknown_peers: true,
            accept_segments: Vec::new(),
        }
    }
}

/// `[health]`: how each direct link is probed. A link is down after
/// `down-after-misses` probes in a row go unanswered, so a failure is
/// noticed after about that many probe intervals: with the defaults ~0.3 s
/// on a link carrying data, ~4.8 s on an idle one (whose routes nobody is
/// using). Faster idle detection costs probe traffic: each probe and its
/// answer are about 140 bytes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct HealthSection {
    /// Probe interval on a link that carried data in the last 5 s (and on
    /// a link that just went down), in ms.
    pub active_probe_interval_ms: u64,
    /// Probe interval on an idle link, in ms.
    pub idle_probe_interval_ms: u64,
    /// Unanswered probes in a row that make a link down.
    pub down_after_misses: u32,
    /// How long a link that came back must stay up before routes use it
    /// again, in ms (no flapping on a link that comes and goes).
    pub hold_down_ms: u64,
}

impl Default for HealthSection {
    fn default() -> Self {
        Self {
            active_probe_interval_ms: 50,
            idle_probe_interval_ms: 1000,
            down_after_misses: 4,
            hold_down_ms: 2000,
        }
    }
}

/// `[routing]`: this node's part in other nodes' paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RoutingSection {
    /// Carry relayed traffic for other nodes. `"auto"` (the default) relays
    /// unless a neighbour sees this node behind a NAT (at an address that is
    /// none of its own): it then keeps full link state but its adverts say
    /// *no transit*, so no path passes through it. `true` relays behind a
    /// NAT as well. `false` makes the node a *stub*: its adverts say so, no
    /// path passes through it, and it holds only the link state of relaying
    /// nodes (a hub's leaves should be stubs).
    pub relay: RelayMode,
    /// A working direct link keeps its destination unless a relayed path
    /// is cheaper by more than this many µs, or by more than the link's
    /// measured RTT spread (largest minus smallest probe RTT of the last
    /// 10 s), whichever is more.
    pub direct_margin_us: u32,
}

impl Default for RoutingSection {
    fn default() -> Self {
        Self {
            relay: RelayMode::Auto,
            direct_margin_us: 1_000,
        }
    }
}

/// `[routing] relay`: `true`, `false` or `"auto"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RelayMode {
    /// Relay unless behind a NAT.
    #[default]
    Auto,
    /// Relay, behind a NAT too.
    On,
    /// A stub: relay for nobody.
    Off,
}

impl RelayMode {
    /// Whether the node relays at all (is not a stub).
    pub fn relays(self) -> bool {
        self != Self::Off
    }
}

impl std::fmt::Display for RelayMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "true",
            Self::Off => "false",
        })
    }
}

impl Serialize for RelayMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::On => s.serialize_bool(true),
            Self::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for RelayMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RelayMode;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RelayMode, E> {
                Ok(if v { RelayMode::On } else { RelayMode::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RelayMode, E> {
                match v {
                    "auto" => Ok(RelayMode::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `[crypto]`: transport cryptography.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct CryptoSection {
    /// Offer AES-256-GCM for transport packets when this machine has AES
    /// hardware; a session uses it when both ends offer it, otherwise
    /// ChaCha20-Poly1305. The handshake is the same either way.
    pub aes_gcm: bool,
}

impl Default for CryptoSection {
    fn default() -> Self {
        Self { aes_gcm: true }
    }
}

/// `[ids]`: intrusion detection over what peers do inside their sessions
/// (docs/threat-model.md, "Detection and quarantine").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct IdsSection {
    /// `prevent`: alert, then rate-limit, then quarantine a peer whose
    /// evidence keeps overflowing a scenario; `detect`: alerts only;
    /// `off`.
    pub mode: IdsMode,
    /// The first quarantine's length, seconds (each further one doubles,
    /// up to an hour).
    pub quarantine_secs: u32,
    /// Data packets a second a rate-limited peer may send.
    pub rate_limit_pps: u32,
    /// Distinct members whose accusations (signed alerts) must agree
    /// before this node quarantines a member it has no evidence against
    /// itself (2 to 64): no fewer can get a member quarantined mesh-wide.
    pub quorum: u8,
}

impl Default for IdsSection {
    fn default() -> Self {
        Self {
            mode: IdsMode::Prevent,
            quarantine_secs: 60,
            rate_limit_pps: 100,
            quorum: 3,
        }
    }
}

/// `[ids] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdsMode {
    /// Alert, rate-limit, quarantine.
    Prevent,
    /// Alerts only.
    Detect,
    /// No detection.
    Off,
}

/// `[policy]`: where signed bundles (the segment policy and the revocation
/// list, from `meshctl policy push` / `meshctl revoke`) come from and are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PolicySection {
    /// Bundle files to load at start (e.g. the first policy, shipped with
    /// the node). A newer version received by gossip replaces them.
    pub bundles: Vec<PathBuf>,
    /// Directory where the bundles in force are saved (`policy.bundle`,
    /// `revocation.bundle`) and loaded from at start, so a restarted node
    /// enforces them before it hears from anyone. It must be a writable
    /// directory (created if missing).
    pub state_dir: PathBuf,
}

/// Where bundles are saved unless `[policy] state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/meshd";

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            bundles: Vec::new(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// `[node]`: identity files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeSection {
    /// This node's certificate (from `meshctl cert issue`).
    pub certificate: PathBuf,
    /// This node's private key (mode 0600).
    pub private_key: PathBuf,
    /// The mesh CA certificate.
    pub ca_certificate: PathBuf,
    /// Log a warning (daily) when this node's certificate, or a peer's,
    /// ends within this many days (0: never).
    #[serde(default = "default_expiry_warning_days")]
    pub expiry_warning_days: u32,
}

fn default_expiry_warning_days() -> u32 {
    30
}

/// `[listen]`: the UDP socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ListenSection {
    /// Address and port to bind, e.g. `0.0.0.0:51820`.
    pub address: SocketAddr,
    /// MTU of the underlay path, 1280..=9000. A packet whose datagram would
    /// not fit (for example a full-size packet through a relay, which adds
    /// 20 bytes) gets an ICMP "packet too big" back, as from a router.
    pub underlay_mtu: u16,
    /// Measure each direct link's path MTU with padded probes (up to
    /// `underlay-mtu`) and answer packets too big for it with ICMP, so a
    /// narrower path than configured is no black hole.
    pub pmtu_discovery: bool,
}

impl Default for ListenSection {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([0, 0, 0, 0], 51820)),
            underlay_mtu: 1500,
            pmtu_discovery: true,
        }
    }
}

/// `[tun]`: the TUN device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TunSection {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// MTU of the overlay interface, 1280..=9000. Leave 80 bytes below the
    /// underlay MTU for IPv6 + UDP + meshd's 32 bytes.
    pub mtu: u16,
    /// Packet-processing workers, each with its own TUN queue and UDP
    /// socket (multiqueue TUN, SO_REUSEPORT). 0 = one per CPU meshd may run
    /// on, at most [`MAX_TUN_QUEUES`].
    pub queues: u16,
    /// Microseconds a worker keeps polling its TUN queue and socket after
    /// its last packet before it sleeps (0 = sleep at once), at most
    /// [`MAX_BUSY_POLL_US`]: a reply that comes back within it finds the
    /// worker awake, at the price of that much CPU per burst of traffic.
    pub busy_poll_us: u32,
}

/// Longest busy poll (`tun.busy-poll-us`).
pub const MAX_BUSY_POLL_US: u32 = 2000;

/// Most packet-processing workers (`tun.queues`).
pub const MAX_TUN_QUEUES: u16 = 16;

impl Default for TunSection {
    fn default() -> Self {
        Self {
            name: "meshd0".into(),
            mtu: 1420,
            queues: 0,
            busy_poll_us: 0,
        }
    }
}

/// `[admin]`: the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdminSection {
    /// Unix socket path (created with mode 0600).
    pub socket: PathBuf,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/meshd/meshd.sock"),
        }
    }
}

/// `[metrics]`: Prometheus text exposition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address to serve `/metrics` on (default 127.0.0.1:9720). Any other
    /// than loopback needs `allow`.
    pub address: Option<SocketAddr>,
    /// Source networks that may scrape a listener on a non-loopback
    /// address, as `ADDRESS/PREFIX` (e.g. the monitoring host's overlay
    /// address, `100.64.0.10/32`: bound on this node's overlay address, the
    /// scrape is then encrypted and its source authenticated by the mesh).
    /// Connections from elsewhere are closed unanswered.
    pub allow: Vec<String>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            address: Some(SocketAddr::from(([127, 0, 0, 1], 9720))),
            allow: Vec::new(),
        }
    }
}

/// `ADDRESS/PREFIX` parsed, or why not.
fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s.split_once('/').ok_or("no /PREFIX")?;
    let ip: IpAddr = a
        .parse()
        .map_err(|_| format!("'{a}' is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let p: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("prefix '{p}' is not 0 to {max}"))?;
    Ok((ip, p))
}

impl MetricsSection {
    /// Whether a connection from `ip` may scrape: always on loopback,
    /// otherwise when an `allow` network holds it.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_loopback()
            || self
                .allow
                .iter()
                .filter_map(|s| parse_cidr(s).ok())
                .any(|(net, p)| match (net, ip) {
                    (IpAddr::V4(n), IpAddr::V4(a)) => {
                        let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                        u32::from(n) & mask == u32::from(a) & mask
                    }
                    (IpAddr::V6(n), IpAddr::V6(a)) => {
                        let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                        u128::from(n) & mask == u128::from(a) & mask
                    }
                    _ => false,
                })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct LogSection {
    /// `error`, `warn`, `info`, `debug` or `trace` (a tracing filter).
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `[[peer]]`: a static peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PeerSection {
    /// The peer's certificate: gives its name, static key and overlay addresses.
    pub certificate: PathBuf,
    /// Its underlay address, e.g. `198.18.0.2:51820`; absent: wait for it to connect.
    #[serde(default)]
    pub endpoint: Option<SocketAddr>,
    /// Send a keepalive this often (seconds), e.g. to hold NAT mappings open.
    #[serde(default)]
    pub persistent_keepalive: Option<u16>,
}

/// A configuration error, naming the file, the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// What is wrong, including the field and the fix.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

impl NodeConfig {
    /// Reads, parses and checks a configuration file; resolves relative paths
    /// against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut cfg = Self::parse(&text).map_err(err)?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    /// Parses and checks configuration text (paths left as written).
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: Self = toml::from_str(text).map_err(|e| format_toml_error(text, &e))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        if !(MIN_TUN_MTU..=MAX_TUN_MTU).contains(&self.listen.underlay_mtu) {
            return Err(format!(
                "field `listen.underlay-mtu`: {} is out of range; use {MIN_TUN_MTU} to {MAX_TUN_MTU} (1500 for Ethernet)",
                self.listen.underlay_mtu
            ));
        }
        let t = &self.tun;
        if !(MIN_TUN_MTU..=MAX_TUN_MTU).contains(&t.mtu) {
            return Err(format!(
                "field `tun.mtu`: {} is out of range; use {MIN_TUN_MTU} to {MAX_TUN_MTU} (1420 suits a 1500-byte underlay)",
                t.mtu
            ));
        }
        if t.queues > MAX_TUN_QUEUES {
            return Err(format!(
                "field `tun.queues`: {} is too many; use 0 (one per CPU) or 1 to {MAX_TUN_QUEUES}",
                t.queues
            ));
        }
        if t.busy_poll_us > MAX_BUSY_POLL_US {
            return Err(format!(
                "field `tun.busy-poll-us`: {} is too long; use 0 (sleep at once) to {MAX_BUSY_POLL_US}",
                t.busy_poll_us
            ));
        }
        if t.name.is_empty()
            || t.name.len() > 15
            || !t
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(format!(
                "field `tun.name`: '{}' is not a valid interface name; use 1 to 15 characters of letters, digits, - _ .",
                t.name
            ));
        }
        let d = self.discovery.dns_domain.trim_end_matches('.');
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !d.is_empty() && (d.len() > 200 || !d.split('.').all(label_ok)) {
            return Err(format!(
                "field `discovery.dns-domain`: '{}' is not a domain name; use labels of letters, digits and - joined by dots (e.g. \"mesh\"), or \"\" for no DNS",
                self.discovery.dns_domain
            ));
        }
        if self.node.expiry_warning_days > 3650 {
            return Err(format!(
                "field `node.expiry-warning-days`: {} is out of range; use 0 (never) to 3650 (default 30)",
                self.node.expiry_warning_days
            ));
        }
        if self.routing.direct_margin_us > 1_000_000 {
            return Err(format!(
                "field `routing.direct-margin-us`: {} is out of range; use 0 to 1000000 (default 1000)",
                self.routing.direct_margin_us
            ));
        }
        if !(1..=86_400).contains(&self.ids.quarantine_secs) {
            return Err(format!(
                "field `ids.quarantine-secs`: {} is out of range; use 1 to 86400 (default 60)",
                self.ids.quarantine_secs
            ));
        }
        if !(1..=1_000_000).contains(&self.ids.rate_limit_pps) {
            return Err(format!(
                "field `ids.rate-limit-pps`: {} is out of range; use 1 to 1000000 (default 100)",
                self.ids.rate_limit_pps
            ));
        }
        if !(2..=64).contains(&self.ids.quorum) {
            return Err(format!(
                "field `ids.quorum`: {} is out of range; use 2 to 64 (default 3): with 1, any single member could get another quarantined mesh-wide",
                self.ids.quorum
            ));
        }
        for (i, a) in self.metrics.allow.iter().enumerate() {
            parse_cidr(a).map_err(|e| {
                format!("field `metrics.allow[{i}]`: '{a}': {e}; write ADDRESS/PREFIX, e.g. 100.64.0.10/32")
            })?;
        }
        if let Some(m) = self.metrics.address {
            if !m.ip().is_loopback() && self.metrics.allow.is_empty() {
                return Err(format!(
                    "field `metrics.address`: {m} is not a loopback address and `metrics.allow` names no source network; add the scraper's network (e.g. allow = [\"100.64.0.10/32\"], best with the address on this node's overlay address) or serve on 127.0.0.1:9720"
                ));
            }
        }
        let level = self.log.level.to_ascii_lowercase();
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            return Err(format!(
                "field `log.level`: '{}' is not a level; use error, warn, info, debug or trace",
                self.log.level
            ));
        }
        let h = &self.health;
        if !(10..=1000).contains(&h.active_probe_interval_ms) {
            return Err(format!(
                "field `health.active-probe-interval-ms`: {} is out of range; use 10 to 1000 (default 50)",
                h.active_probe_interval_ms
            ));
        }
        if !(h.active_probe_interval_ms..=60_000).contains(&h.idle_probe_interval_ms) {
            return Err(format!(
                "field `health.idle-probe-interval-ms`: {} is out of range; use {} (active-probe-interval-ms) to 60000 (default 1000)",
                h.idle_probe_interval_ms, h.active_probe_interval_ms
            ));
        }
        if !(2..=16).contains(&h.down_after_misses) {
            return Err(format!(
                "field `health.down-after-misses`: {} is out of range; use 2 to 16 (default 4; 1 would call a link down for one lost packet)",
                h.down_after_misses
            ));
        }
        if h.hold_down_ms > 600_000 {
            return Err(format!(
                "field `health.hold-down-ms`: {} is too long; use 0 to 600000 (default 2000)",
                h.hold_down_ms
            ));
        }
        for (i, seg) in self.admission.accept_segments.iter().enumerate() {
            let ok = (1..=63).contains(&seg.len())
                && seg.starts_with(|c: char| c.is_ascii_alphanumeric())
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(format!(
                    "field `admission.accept-segments[{i}]`: '{seg}' is not a segment name; use 1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit, as in the certificates"
                ));
            }
        }
        for (i, p) in self.peers.iter().enumerate() {
            if p.persistent_keepalive == Some(0) {
                return Err(format!(
                    "field `peer[{i}].persistent-keepalive`: 0 is not an interval; remove it to disable, or use e.g. 25"
                ));
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.node.certificate);
        fix(&mut self.node.private_key);
        fix(&mut self.node.ca_certificate);
        fix(&mut self.admin.socket);
        for p in &mut self.peers {
            fix(&mut p.certificate);
        }
        for b in &mut self.policy.bundles {
            fix(b);
        }
        fix(&mut self.policy.state_dir);
    }
}

fn format_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    let Some(span) = e.span() else { return msg };
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let src = text.lines().nth(line - 1).unwrap_or("").trim();
    // Name the field as `section.key`: the last table header above the
    // error, and the key on the error's line.
    let section = text
        .lines()
        .take(line)
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("[[")
                .and_then(|r| r.strip_suffix("]]"))
                .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        })
        .last();
    let key = src
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty());
    let field = match (section, key) {
        (Some(s), Some(k)) => format!(", field `{s}.{k}`"),
        (None, Some(k)) => format!(", field `{k}`"),
        (Some(s), None) => format!(", table `[{s}]`"),
        (None, None) => String::new(),
    };
    let hint = if msg.contains("unknown field") {
        "; check the spelling against configs/node.example.toml"
    } else if msg.contains("missing field") {
        "; add it (see configs/node.example.toml)"
    } else {
        "; see configs/node.example.toml for the expected form"
    };
    format!("line {line}{field}: {msg} (in `{src}`){hint}")
}

#[cfg(test)]
mod tests;
