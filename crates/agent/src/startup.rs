//! Everything before the packet loop: loading and checking the files a node
//! needs (CA, own certificate and key, peer certificates, bundles; every
//! error names the file and the field), the endpoint's settings from the
//! node config, the endpoint itself with its bundles and static peers, and
//! the TUN device and UDP sockets.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crypto::files;
use crypto::RealCrypto;
use proto::armor::LABEL_NODE_KEY;
use proto::bundle::{BundleError, BundleKind};
use proto::cert::{Certificate, TrustedCa};
use proto::endpoint::{Endpoint, EndpointConfig};
use proto::handshake::Identity;
use proto::health::HealthConfig;
use tracing::{info, warn};
use types::config::{HealthSection, NodeConfig};

/// A static peer, checked.
pub struct StaticPeer {
    pub cert: Certificate,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: Option<Duration>,
}

/// Everything loaded from disk.
pub struct Loaded {
    pub ca: TrustedCa,
    pub identity: Identity,
    pub peers: Vec<StaticPeer>,
    /// Signed bundles to apply at start: (where from, whether the config
    /// named it, encoding). Verified when applied.
    pub bundles: Vec<(std::path::PathBuf, bool, Vec<u8>)>,
    /// Saved bundles that could not be read, with why.
    pub unreadable: Vec<(std::path::PathBuf, proto::bundle::BundleKind, String)>,
    /// `[[peer]]` entries left out, each with why and the fix: a peer's
    /// certificate that cannot be read, has expired or is not the CA's
    /// never stops this node (one decommissioned host must not keep the
    /// others from starting).
    pub skipped: Vec<String>,
}

/// Where the bundle of `kind` in force is saved.
pub fn bundle_path(dir: &std::path::Path, kind: proto::bundle::BundleKind) -> std::path::PathBuf {
    dir.join(format!("{}.bundle", kind.name()))
}

/// Reads an armoured bundle file.
pub fn read_bundle(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    proto::bundle::Bundle::from_armor(&text)
        .map(|b| b.as_bytes().to_vec())
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub fn unix_now() -> u64 {
    unix_nanos() / 1_000_000_000
}

/// The wall clock, Unix nanoseconds.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn load(cfg: &NodeConfig) -> Result<Loaded, String> {
    let c = RealCrypto;
    let now = unix_now();
    let n = &cfg.node;
    let ca_cert = files::read_certificate(&n.ca_certificate)
        .map_err(|e| format!("node.ca-certificate: {e}"))?;
    let ca = TrustedCa::new(&c, ca_cert, now)
        .map_err(|e| format!("node.ca-certificate: {}: {e}", n.ca_certificate.display()))?;
    let cert =
        files::read_certificate(&n.certificate).map_err(|e| format!("node.certificate: {e}"))?;
    ca.verify_node(&c, &cert, now)
        .map_err(|e| format!("node.certificate: {}: {e}", n.certificate.display()))?;
    let secret = files::read_private_key(&n.private_key, LABEL_NODE_KEY)
        .map_err(|e| format!("node.private-key: {e}"))?;
    let identity = Identity::new(&c, cert, secret).map_err(|_| {
        format!(
            "node.private-key: {} does not belong to the certificate {}; use the key issued with it",
            n.private_key.display(),
            n.certificate.display()
        )
    })?;
    let mut peers = Vec::new();
    let mut skipped = Vec::new();
    for (i, p) in cfg.peers.iter().enumerate() {
        let checked = files::read_certificate(&p.certificate)
            .map_err(|e| e.to_string())
            .and_then(|cert| {
                ca.verify_node(&c, &cert, now)
                    .map(|()| cert)
                    .map_err(|e| format!("{}: {e}", p.certificate.display()))
            });
        let cert = match checked {
            Ok(cert) => cert,
            Err(e) => {
                skipped.push(format!(
                    "peer[{i}].certificate: {e}; this peer is skipped (put its renewed certificate there, or remove the [[peer]] entry; it can still dial in with a valid one)"
                ));
                continue;
            }
        };
        if cert.public_key() == identity.static_public() {
            return Err(format!(
                "peer[{i}].certificate: {} is this node's own certificate; list other nodes as peers",
                p.certificate.display()
            ));
        }
        peers.push(StaticPeer {
            cert,
            endpoint: p.endpoint,
            persistent_keepalive: p
                .persistent_keepalive
                .map(|s| Duration::from_secs(u64::from(s))),
        });
    }
    let mut bundles = Vec::new();
    for (i, path) in cfg.policy.bundles.iter().enumerate() {
        let b = read_bundle(path).map_err(|e| {
            format!("policy.bundles[{i}]: {e} (make it with 'meshctl policy sign' or 'meshctl revoke --out')")
        })?;
        proto::bundle::Bundle::from_bytes(&b)
            .and_then(|bundle| bundle.verify(&c, &ca, now))
            .map_err(|e| {
                format!(
                    "policy.bundles[{i}]: {}: {e} (sign it with this mesh's CA: meshctl policy sign --ca-crt {})",
                    path.display(),
                    n.ca_certificate.display()
                )
            })?;
        bundles.push((path.clone(), true, b));
    }
    let dir = &cfg.policy.state_dir;
    check_state_dir(dir)?;
    let mut unreadable = Vec::new();
    for kind in proto::bundle::BundleKind::ALL {
        let path = bundle_path(dir, kind);
        if path.exists() {
            // A damaged saved bundle does not stop meshd: gossip brings the
            // current one back (and a damaged policy makes it deny all
            // until then, see `endpoint`).
            match read_bundle(&path) {
                Ok(b) => bundles.push((path, false, b)),
                Err(e) => unreadable.push((path, kind, e)),
            }
        }
    }
    Ok(Loaded {
        ca,
        identity,
        peers,
        bundles,
        unreadable,
        skipped,
    })
}

/// `[policy] state-dir` must be a directory meshd can write (created if
/// missing): bundles put in force are saved there.
pub fn check_state_dir(dir: &std::path::Path) -> Result<(), String> {
    let fix = "set [policy] state-dir to a writable directory";
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "policy.state-dir: {} is not a directory; {fix}",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "policy.state-dir: cannot create {}: {e}; {fix}",
            dir.display()
        )
    })?;
    let probe = dir.join(".meshd-write-check");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            format!(
                "policy.state-dir: {} is not writable: {e}; make it writable by the user meshd runs as, or {fix}",
                dir.display()
            )
        })
}

/// The probe settings of `[health]`; what the file does not set keeps the
/// protocol's defaults (stall detection among them).
pub fn health_config(h: &HealthSection) -> HealthConfig {
    HealthConfig {
        probe_interval: Duration::from_millis(h.active_probe_interval_ms),
        idle_probe_interval: Duration::from_millis(h.idle_probe_interval_ms),
        down_after_misses: h.down_after_misses,
        hold_down: Duration::from_millis(h.hold_down_ms),
        ..HealthConfig::default()
    }
}

/// The endpoint's settings from the node config.
pub fn endpoint_config(cfg: &NodeConfig) -> EndpointConfig {
    EndpointConfig {
        aes_gcm: cfg.crypto.aes_gcm,
        underlay_mtu: usize::from(cfg.listen.underlay_mtu),
        relay: cfg.routing.relay.relays(),
        relay_behind_nat: cfg.routing.relay == types::config::RelayMode::On,
        accept_unknown_peers: cfg.admission.accept_unknown_peers,
        answer_key_requests: cfg.discovery.answer_key_probes,
        accept_segments: cfg.admission.accept_segments.clone(),
        pmtu_discovery: cfg.listen.pmtu_discovery,
        health: Some(health_config(&cfg.health)),
        route: proto::route::RouteConfig {
            direct_margin_us: u64::from(cfg.routing.direct_margin_us),
            ..proto::route::RouteConfig::default()
        },
        ids: ids_config(&cfg.ids),
        // The checks thread (`node.rs`) runs them off the packet path.
        defer_signature_checks: true,
        ..EndpointConfig::default()
    }
}

/// Intrusion detection from `[ids]` (`None`: off).
pub fn ids_config(s: &types::config::IdsSection) -> Option<proto::ids::IdsConfig> {
    use types::config::IdsMode;
    let prevent = match s.mode {
        IdsMode::Off => return None,
        IdsMode::Detect => false,
        IdsMode::Prevent => true,
    };
    Some(proto::ids::IdsConfig {
        prevent,
        quarantine: Duration::from_secs(u64::from(s.quarantine_secs)),
        rate_limit_pps: s.rate_limit_pps,
        agreement: proto::quorum::QuorumConfig {
            quorum: usize::from(s.quorum),
            ..proto::quorum::QuorumConfig::default()
        },
        ..proto::ids::IdsConfig::default()
    })
}

/// Builds the endpoint: bundles first (the policy is in force from the
/// first packet), then the static peers, with a handshake started to each
/// that has an address (so sessions are ready before the first packet, and
/// a restarted node resyncs). A configured bundle that fails is an error;
/// a saved one is skipped with a warning.
pub fn endpoint(cfg: &NodeConfig, loaded: Loaded) -> Result<Endpoint, String> {
    let Loaded {
        ca,
        identity,
        peers,
        bundles,
        unreadable,
        skipped,
    } = loaded;
    for s in &skipped {
        warn!("{s}");
    }
    let mut ep = Endpoint::new(
        Arc::new(RealCrypto),
        ca,
        identity,
        endpoint_config(cfg),
        Box::new(rand_core::OsRng),
    );
    // The saved policy's failure, if it failed: this node had a policy.
    let saved_policy = bundle_path(&cfg.policy.state_dir, BundleKind::Policy);
    let mut policy_lost = None;
    for (path, configured, bytes) in &bundles {
        match ep.apply_bundle(Instant::now(), unix_nanos(), bytes) {
            Ok((kind, version)) => info!(file = %path.display(), %kind, version, "bundle in force"),
            Err(BundleError::NotNewer { .. }) => {}
            Err(e) if *configured => {
                return Err(format!("policy.bundles: {}: {e}", path.display()));
            }
            Err(e) => {
                warn!(file = %path.display(), "saved bundle ignored: {e}");
                if *path == saved_policy {
                    policy_lost = Some(e.to_string());
                }
            }
        }
    }
    for (path, kind, e) in &unreadable {
        warn!(file = %path.display(), "saved bundle unreadable: {e}");
        if *kind == BundleKind::Policy {
            policy_lost = Some(e.clone());
        }
    }
    match policy_lost {
        // Fail closed: a node that had a policy never forwards without one.
        Some(why) if ep.policy().is_none() => {
            let deny_all = proto::policy::Policy::parse("")
                .map_err(|e| format!("the built-in deny-all policy: {e}"))?;
            ep.set_policy(Instant::now(), Some(Arc::new(deny_all.compile())));
            tracing::error!(
                file = %saved_policy.display(),
                "saved policy did not load ({why}): this node had a policy, so it denies all traffic until a valid one arrives (meshctl policy push), or remove the file to allow all"
            );
        }
        _ if ep.policy().is_none() => {
            warn!("no policy bundle in force: all traffic between mesh members is allowed until one is pushed (meshctl policy push)");
        }
        _ => {}
    }
    // Static peers hold their certificates' addresses and names from the
    // start; two holding the same one is a configuration error.
    for (i, p) in peers.iter().enumerate() {
        let id = ep
            .add_peer_certificate(
                Instant::now(),
                unix_nanos(),
                &p.cert,
                p.endpoint,
                p.persistent_keepalive,
            )
            .map_err(|e| {
                format!("peer[{i}].certificate: {e}; give each node its own address and name")
            })?;
        if p.endpoint.is_some() {
            ep.initiate(Instant::now(), unix_nanos(), id);
        }
    }
    for addr in &cfg.discovery.bootstrap {
        ep.add_bootstrap(Instant::now(), *addr);
    }
    Ok(ep)
}

/// How long start waits for a TUN device that is still held.
const TUN_BUSY_WAIT: Duration = Duration::from_secs(5);

/// The TUN device with one queue per worker, addressed from the node's
/// certificate.
pub fn tun_queues(
    cfg: &NodeConfig,
    own: &Certificate,
    workers: usize,
) -> Result<Vec<tun_rs::SyncDevice>, String> {
    let build = || {
        let mut builder = tun_rs::DeviceBuilder::new()
            .name(&cfg.tun.name)
            .mtu(cfg.tun.mtu)
            .multi_queue(workers > 1);
        let first_v4 = own.body().addresses.iter().find(|a| a.addr().is_ipv4());
        if let Some(a) = first_v4 {
            if let IpAddr::V4(v4) = a.addr() {
                builder = builder.ipv4(v4, a.prefix_len(), None);
            }
        }
        for a in own.body().addresses.iter().filter(|a| a.addr().is_ipv6()) {
            if let IpAddr::V6(v6) = a.addr() {
                builder = builder.ipv6(v6, a.prefix_len());
            }
        }
        builder.offload(true).build_sync()
    };
    // A restart can find the device of the meshd that just exited still
    // being torn down by the kernel (EBUSY, for up to about a second on a
    // busy host): wait for it rather than fail the restart.
    let started = Instant::now();
    let mut warned = false;
    let tun = loop {
        match build() {
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error())
                    && started.elapsed() < TUN_BUSY_WAIT =>
            {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(tun = %cfg.tun.name, "TUN device still held (a meshd that just exited?): waiting for the kernel to release it");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            r => {
                break r.map_err(|e| format!("tun.name: cannot create TUN device '{}': {e} (meshd needs root or CAP_NET_ADMIN and /dev/net/tun; another running meshd may hold it)", cfg.tun.name))?;
            }
        }
    };
    let mut queues = Vec::with_capacity(workers);
    for i in 1..workers {
        queues.push(tun.try_clone().map_err(|e| {
            format!("tun.queues: cannot open TUN queue {i} of {workers}: {e} (set tun.queues = 1 if the kernel lacks multiqueue TUN)")
        })?);
    }
    queues.insert(0, tun);
    Ok(queues)
}

/// The underlay addresses this node receives on, for the candidates its
/// punches name: the address bound, or, bound to all addresses of a family,
/// every address of that family on an interface that is up, except
/// loopback, IPv6 link-local (it needs a scope a candidate cannot carry),
/// the TUN device's own and this node's overlay addresses (which would
/// send the underlay into the tunnel).
pub fn local_candidates(bound: SocketAddr, tun: &str, own: &Certificate) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let overlay: Vec<IpAddr> = own.body().addresses.iter().map(|a| a.addr()).collect();
    let Ok(interfaces) = getifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for i in interfaces {
        let flags = i.flags;
        if !flags.contains(getifaddrs::InterfaceFlags::UP)
            || flags.contains(getifaddrs::InterfaceFlags::LOOPBACK)
            || i.name == tun
        {
            continue;
        }
        let Some(ip) = i.address.ip_addr() else {
            continue;
        };
        let link_local = matches!(ip, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80);
        if ip.is_ipv4() != bound.is_ipv4() || link_local || overlay.contains(&ip) {
            continue;
        }
        let a = SocketAddr::new(ip, bound.port());
        if !v.contains(&a) {
            v.push(a);
        }
    }
    v
}

/// The workers' UDP sockets on the listen port, and the main thread's own
/// descriptor of the first one.
pub struct Sockets {
    pub workers: Vec<std::net::UdpSocket>,
    /// For the timer/admin thread's sends. It never reads, so it does not
    /// join the port's group, and it stays out of the main thread's
    /// reactor: registered there, every datagram arriving for worker 0
    /// would wake the main thread too (measured: ~10,000 wake-ups a second
    /// under load).
    pub control: std::net::UdpSocket,
    /// The address bound (the kernel picks the port when the config says 0).
    pub bound: SocketAddr,
}

/// Binds one socket per worker; with several they share the port
/// (SO_REUSEPORT) and the kernel spreads senders across them.
pub fn sockets(cfg: &NodeConfig, workers: usize) -> Result<Sockets, String> {
    let bind_err =
        |e: std::io::Error| format!("listen.address: cannot bind {}: {e}", cfg.listen.address);
    // SO_REUSEPORT would let this meshd share a port another process (a
    // second meshd) holds, silently taking part of its datagrams: bind it
    // alone once first, which fails if anyone holds it.
    if workers > 1 && cfg.listen.address.port() != 0 {
        std::net::UdpSocket::bind(cfg.listen.address).map_err(|e| {
            format!(
                "listen.address: {} is in use ({e}): another process (another meshd?) holds the port; stop it or choose another port",
                cfg.listen.address
            )
        })?;
    }
    let first = bind_udp(cfg.listen.address, workers > 1).map_err(bind_err)?;
    // With port 0 the kernel picked one; the other workers join it.
    let bound = first.local_addr().map_err(bind_err)?;
    let control = first
        .try_clone()
        .map_err(|e| format!("listen.address: UDP socket setup: {e}"))?;
    let mut socks = vec![first];
    for _ in 1..workers {
        socks.push(bind_udp(bound, true).map_err(bind_err)?);
    }
    Ok(Sockets {
        workers: socks,
        control,
        bound,
    })
}

fn bind_udp(addr: SocketAddr, shared_port: bool) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if shared_port {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// How many packet workers: `tun.queues`, or one per CPU this process may
/// run on (its affinity mask and cgroup quota).
pub fn worker_count(cfg: &NodeConfig) -> usize {
    match cfg.tun.queues {
        0 => std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(usize::from(types::config::MAX_TUN_QUEUES)),
        n => usize::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_files_health_defaults_are_the_protocols() {
        assert_eq!(
            health_config(&HealthSection::default()),
            HealthConfig::default()
        );
        let h = health_config(&HealthSection {
            idle_probe_interval_ms: 250,
            down_after_misses: 3,
            ..HealthSection::default()
        });
        assert_eq!(h.idle_probe_interval, Duration::from_millis(250));
        assert_eq!(h.down_after_misses, 3);
        assert_eq!(h.stall_threshold, HealthConfig::default().stall_threshold);
    }

    #[test]
    fn the_endpoint_takes_its_settings_from_the_config_file() {
        let base = "[node]\ncertificate = \"a.crt\"\nprivate-key = \"a.key\"\nca-certificate = \"ca.crt\"\n";
        let cfg = NodeConfig::parse(&format!(
            "{base}[listen]\naddress = \"198.18.0.1:51820\"\nunderlay-mtu = 1400\npmtu-discovery = false\n[crypto]\naes-gcm = false\n[routing]\nrelay = false\n[health]\ndown-after-misses = 3\n[admission]\naccept-unknown-peers = false\naccept-segments = [\"ops\"]\n"
        ))
        .expect("config");
        let e = endpoint_config(&cfg);
        assert_eq!(e.underlay_mtu, 1400);
        assert!(!e.pmtu_discovery && !e.aes_gcm && !e.relay);
        assert_eq!(e.health.map(|h| h.down_after_misses), Some(3));
        assert!(!e.accept_unknown_peers);
        assert_eq!(e.accept_segments, ["ops"]);
        assert!(e.defer_signature_checks, "meshd runs its checks thread");
        // What the file does not set is the protocol's default.
        let cfg = NodeConfig::parse(&format!("{base}[listen]\naddress = \"198.18.0.1:51820\"\n"))
            .expect("config");
        let (e, d) = (endpoint_config(&cfg), EndpointConfig::default());
        assert_eq!(
            (e.underlay_mtu, e.pmtu_discovery, e.aes_gcm, e.relay),
            (d.underlay_mtu, d.pmtu_discovery, d.aes_gcm, d.relay)
        );
        assert_eq!(e.health, d.health);
        assert_eq!(e.queue_limit, d.queue_limit);
        assert_eq!(
            (e.accept_unknown_peers, e.accept_segments),
            (d.accept_unknown_peers, d.accept_segments)
        );
    }

    #[test]
    fn the_state_directory_must_be_a_writable_directory() {
        let base = std::env::temp_dir().join(format!("meshd-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // Missing: created.
        let dir = base.join("a/b");
        check_state_dir(&dir).unwrap();
        assert!(dir.is_dir());
        // A file: refused, naming the field and the fix.
        let file = base.join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = check_state_dir(&file).unwrap_err();
        assert!(
            e.contains("policy.state-dir")
                && e.contains("not a directory")
                && e.contains("writable directory"),
            "{e}"
        );
        // Under a file: cannot be created.
        let e = check_state_dir(&file.join("sub")).unwrap_err();
        assert!(e.contains("cannot create"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
