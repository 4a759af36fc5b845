//! The node loop.
//!
//! ```text
//! TUN read ──► inner destination ──► route (overlay address → peer)
//!          ──► Endpoint::send (seal in place, or queue + handshake) ──► UDP send
//! UDP recv ──► Endpoint::handle_datagram (open in place, replay, source check)
//!          ──► TUN write
//! timer    ──► Endpoint::handle_timeout
//! after each: drain transmits to UDP, events to the log and the route table
//! admin    ──► answer from the endpoint's state
//! ```
//!
//! One task owns the endpoint; buffers are allocated once and reused, with
//! the transport header's headroom in front of every TUN read.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crypto::RealCrypto;
use proto::bundle::{Bundle, BundleError, BundleKind, Content};
use proto::cert::hex;
use proto::endpoint::{DropReason, Endpoint, EndpointConfig, Event, PeerId, Received, SendOutcome};
use proto::wire::{RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use types::admin::{
    AdminRequest, AdminResponse, HopView, PeerView, PingView, PolicyStatusView, RevokedView,
    RouteView, StatusView, TraceView,
};
use types::config::NodeConfig;

use crate::admin::{self, Pending, SocketGuard};
use crate::io::Udp;
use crate::metrics;
use crate::ping::{self, Pinger, Report};
use crate::setup::Loaded;

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The destination address of an IPv4 or IPv6 packet.
fn inner_destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => Some(IpAddr::from(<[u8; 4]>::try_from(&packet[16..20]).ok()?)),
        6 if packet.len() >= 40 => Some(IpAddr::from(<[u8; 16]>::try_from(&packet[24..40]).ok()?)),
        _ => None,
    }
}

struct Node {
    pinger: Pinger,
    last_rtt: HashMap<PeerId, f64>,
    cfg: NodeConfig,
    ep: Endpoint,
    routes: HashMap<IpAddr, PeerId>,
    /// Peer certificate names, for `meshctl ping NAME`.
    names: HashMap<String, PeerId>,
    started: Instant,
    no_route: u64,
    rng: rand_core::OsRng,
}

pub async fn run(cfg: NodeConfig, loaded: Loaded) -> Result<(), String> {
    let Loaded {
        ca,
        identity,
        peers,
        bundles,
    } = loaded;
    let own = identity.certificate().clone();
    let first_v4 = own
        .body()
        .addresses
        .iter()
        .find(|a| a.addr().is_ipv4())
        .copied();
    let mut builder = tun_rs::DeviceBuilder::new()
        .name(&cfg.tun.name)
        .mtu(cfg.tun.mtu);
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
    let tun = builder
        .offload(true)
        .build_async()
        .map_err(|e| format!("tun.name: cannot create TUN device '{}': {e} (meshd needs root or CAP_NET_ADMIN and /dev/net/tun)", cfg.tun.name))?;
    let sock = UdpSocket::bind(cfg.listen.address)
        .await
        .map_err(|e| format!("listen.address: cannot bind {}: {e}", cfg.listen.address))?;
    let mut udp = Udp::new(sock).map_err(|e| format!("listen.address: UDP socket setup: {e}"))?;
    let listener = admin::bind(&cfg.admin.socket)?;
    let _socket_guard = SocketGuard(cfg.admin.socket.clone());
    let (admin_tx, mut admin_rx) = mpsc::channel::<Pending>(16);
    if let Some(addr) = cfg.metrics.address {
        let l = metrics::bind(addr).await?;
        tokio::spawn(metrics::serve(l, admin_tx.clone()));
    }
    tokio::spawn(admin::serve(listener, admin_tx));

    let crypto: Arc<dyn proto::provider::Crypto> = Arc::new(RealCrypto);
    let mut ep = Endpoint::new(
        crypto,
        ca,
        identity,
        EndpointConfig {
            aes_gcm: cfg.crypto.aes_gcm,
            ..EndpointConfig::default()
        },
    );
    // Saved and configured bundles, before any peer: the policy is in force
    // from the first packet.
    for (path, configured, bytes) in &bundles {
        match ep.apply_bundle(Instant::now(), unix_nanos(), bytes) {
            Ok((kind, version)) => info!(file = %path.display(), %kind, version, "bundle in force"),
            Err(BundleError::NotNewer { .. }) => {}
            Err(e) if *configured => {
                return Err(format!("policy.bundles: {}: {e}", path.display()));
            }
            Err(e) => warn!(file = %path.display(), "saved bundle ignored: {e}"),
        }
    }
    if ep.policy().is_none() {
        warn!("no policy bundle in force: all traffic between mesh members is allowed until one is pushed (meshctl policy push)");
    }
    let mut routes = HashMap::new();
    let mut names = HashMap::new();
    let mut rng = rand_core::OsRng;
    for p in &peers {
        let id = ep.add_peer(*p.cert.public_key(), p.endpoint, p.persistent_keepalive);
        names.insert(p.cert.name().to_string(), id);
        for a in &p.cert.body().addresses {
            routes.insert(a.addr(), id);
        }
        // Handshake with every reachable static peer now, so sessions are
        // ready before the first packet (and a restarted node resyncs).
        if p.endpoint.is_some() {
            ep.initiate(Instant::now(), unix_nanos(), &mut rng, id);
        }
    }
    info!(
        name = own.name(),
        tun = %cfg.tun.name,
        listen = %cfg.listen.address,
        peers = peers.len(),
        "meshd started"
    );
    let mut node = Node {
        pinger: Pinger::new(rand_core::RngCore::next_u32(&mut rng) as u16),
        last_rtt: HashMap::new(),
        cfg,
        ep,
        routes,
        names,
        started: Instant::now(),
        no_route: 0,
        rng,
    };
    node.flush(&mut udp).await;

    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| format!("signal handler: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("signal handler: {e}"))?;
    // Buffers, allocated once. TUN reads land after the transport header's
    // headroom with room for the tag behind; UDP receives take a GRO batch.
    let mut tun_raw = vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + 65_535];
    let mut segments: Vec<Vec<u8>> = (0..tun_rs::IDEAL_BATCH_SIZE)
        .map(|_| vec![0u8; TRANSPORT_HEADER_LEN + 65_535 + TRANSPORT_OVERHEAD])
        .collect();
    let mut sizes = vec![0usize; tun_rs::IDEAL_BATCH_SIZE];
    let mut udp_buf = vec![0u8; 65_535 * udp.gro_segments().clamp(1, 64)];
    let mut to_tun: Vec<Vec<u8>> = Vec::with_capacity(tun_rs::IDEAL_BATCH_SIZE);
    let mut gro = tun_rs::GROTable::default();
    loop {
        let deadline = [node.ep.poll_timeout(), node.pinger.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
        tokio::select! {
            r = tun.recv_multiple(&mut tun_raw, &mut segments, &mut sizes, TRANSPORT_HEADER_LEN) => {
                match r {
                    Ok(n) => {
                        let (now, unix) = (Instant::now(), unix_nanos());
                        for i in 0..n {
                            node.handle_tun_packet(now, unix, &mut udp, &mut segments[i], sizes[i]).await;
                        }
                    }
                    Err(e) => debug!("TUN read: {e}"),
                }
            }
            r = udp.recv(&mut udp_buf) => {
                match r {
                    Ok(meta) => {
                        let stride = meta.stride.max(1);
                        let mut used = 0;
                        let (now, unix) = (Instant::now(), unix_nanos());
                        for chunk in udp_buf[..meta.len].chunks_mut(stride) {
                            node.handle_udp_datagram(now, unix, chunk, meta.addr, &mut udp, &mut to_tun, &mut used).await;
                        }
                        if used > 0 {
                            if let Err(e) = tun.send_multiple(&mut gro, &mut to_tun[..used], TRANSPORT_HEADER_LEN).await {
                                debug!("TUN write: {e}");
                            }
                        }
                    }
                    Err(e) => debug!("UDP receive error: {e}"),
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                node.ep.handle_timeout(Instant::now(), unix_nanos(), &mut node.rng);
                node.pinger.expire(Instant::now());
            }
            Some((req, reply)) = admin_rx.recv() => {
                match req {
                    AdminRequest::Ping { target, timeout_ms } => node.start_ping(&mut udp, &target, timeout_ms, false, reply).await,
                    AdminRequest::Trace { target, timeout_ms } => node.start_ping(&mut udp, &target, timeout_ms, true, reply).await,
                    req => { let _ = reply.send(node.answer(req)); }
                }
            }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
        }
        node.flush(&mut udp).await;
    }
    Ok(())
}

impl Node {
    /// One packet read from the TUN device, at `buf[TRANSPORT_HEADER_LEN..][..n]`.
    /// `now` and `unix` are read once per batch by the caller.
    async fn handle_tun_packet(
        &mut self,
        now: Instant,
        unix: u64,
        udp: &mut Udp,
        buf: &mut [u8],
        n: usize,
    ) {
        let packet = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n];
        let Some(dst) = inner_destination(packet) else {
            return;
        };
        let Some(&peer) = self.routes.get(&dst) else {
            self.no_route += 1;
            return;
        };
        // Room for the tag, and for a relay header should the peer be
        // reached through a relay.
        let room = (n + TRANSPORT_OVERHEAD + RELAY_HEADER_LEN).min(buf.len());
        let out = self
            .ep
            .send(now, unix, &mut self.rng, peer, &mut buf[..room], n);
        if let SendOutcome::Send { dst, len } = out {
            udp.queue(dst, &buf[..len]).await;
        }
    }

    /// One received datagram, opened in place; an IP packet for the TUN
    /// device is copied into the next `to_tun` buffer (its headroom kept for
    /// the virtio header).
    #[allow(clippy::too_many_arguments)]
    async fn handle_udp_datagram(
        &mut self,
        now: Instant,
        unix: u64,
        buf: &mut [u8],
        src: SocketAddr,
        udp: &mut Udp,
        to_tun: &mut Vec<Vec<u8>>,
        used: &mut usize,
    ) {
        match self.ep.handle_datagram(now, unix, &mut self.rng, src, buf) {
            Received::Data { len, peer } => {
                let packet = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len];
                if let Some(seq) = ping::echo_reply_seq(packet, self.pinger.ident) {
                    if let Some(rtt) = self.pinger.complete(seq, now) {
                        self.last_rtt.insert(peer, rtt.as_secs_f64() * 1e3);
                        return;
                    }
                }
                if *used == to_tun.len() {
                    to_tun.push(Vec::with_capacity(TRANSPORT_HEADER_LEN + 65_535));
                }
                let out = &mut to_tun[*used];
                out.clear();
                out.resize(TRANSPORT_HEADER_LEN, 0);
                out.extend_from_slice(packet);
                *used += 1;
            }
            Received::Forward { dst, len } => udp.queue(dst, &buf[..len]).await,
            Received::Dropped(reason) => debug!(%src, %reason, "dropped datagram"),
            Received::Keepalive { .. } | Received::Handshake | Received::Control { .. } => {}
        }
    }

    /// A peer's certificate name, or its key prefix before a handshake.
    fn peer_name(&self, peer: PeerId) -> String {
        match self.ep.peer(peer, Instant::now()) {
            Some(p) => self.display_name(&p),
            None => format!("{peer:?}"),
        }
    }

    /// A peer's certificate name: from its handshake, else from the
    /// certificate configured for it (verified at start), else its key.
    fn display_name(&self, p: &proto::endpoint::PeerInfo) -> String {
        if let Some(c) = &p.cert {
            return c.name().to_string();
        }
        self.names
            .iter()
            .find(|(_, id)| **id == p.id)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| format!("({})", &hex(&p.static_public)[..16]))
    }

    /// "direct", or "via NAME" while the peer is reached through a relay.
    fn path_name(&self, info: Option<&proto::endpoint::PeerInfo>) -> String {
        match info.and_then(|p| p.via) {
            Some(r) => format!("via {}", self.peer_name(r)),
            None => "direct".into(),
        }
    }

    /// Resolves a peer name or overlay address.
    fn resolve(&self, target: &str) -> Option<(PeerId, IpAddr)> {
        if let Ok(ip) = target.parse::<IpAddr>() {
            return self.routes.get(&ip).map(|p| (*p, ip));
        }
        // Names of configured peers are known from their certificates before
        // any handshake; others once their handshake completed.
        let peer = *self.names.get(target)?;
        self.routes
            .iter()
            .filter(|(a, p)| **p == peer && a.is_ipv4())
            .map(|(a, _)| (peer, *a))
            .min()
    }

    /// Sends one ICMP echo to `target` along the real path; answers a ping,
    /// or with `trace` the hop-by-hop path plus that round trip.
    async fn start_ping(
        &mut self,
        udp: &mut Udp,
        target: &str,
        timeout_ms: u64,
        trace: bool,
        reply: tokio::sync::oneshot::Sender<AdminResponse>,
    ) {
        let fail = |message: String| AdminResponse::Error { message };
        let Some((peer, IpAddr::V4(dst))) = self.resolve(target) else {
            let _ = reply.send(fail(format!("no peer named or addressed '{target}' (see meshctl peers); only IPv4 overlay addresses can be pinged")));
            return;
        };
        let Some(IpAddr::V4(src)) = self
            .ep
            .identity()
            .certificate()
            .body()
            .addresses
            .iter()
            .map(|a| a.addr())
            .find(IpAddr::is_ipv4)
        else {
            let _ = reply.send(fail("this node has no IPv4 overlay address".into()));
            return;
        };
        let now = Instant::now();
        let info = self.ep.peer(peer, now);
        let seq = self.pinger.next_seq();
        let packet = ping::echo_request(src, dst, self.pinger.ident, seq);
        let name = info
            .as_ref()
            .and_then(|p| p.cert.as_ref())
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| target.to_string());
        let report = if trace {
            let mut cumulative = 0.0;
            let hops = self
                .ep
                .trace(peer, now)
                .into_iter()
                .map(|(node, rtt_us)| {
                    let ms = f64::from(rtt_us) / 1e3;
                    cumulative += ms;
                    HopView {
                        node: self
                            .ep
                            .peer_by_node(node)
                            .map_or_else(|| node.to_string(), |p| self.peer_name(p)),
                        link_rtt_ms: ms,
                        cumulative_ms: cumulative,
                    }
                })
                .collect();
            Report::Trace(TraceView {
                peer: name,
                hops,
                rtt_ms: None,
            })
        } else {
            Report::Ping(PingView {
                peer: name,
                address: dst.to_string(),
                seq,
                path: self.path_name(info.as_ref()),
                endpoint: info
                    .as_ref()
                    .and_then(|p| p.endpoint)
                    .map(|e| e.to_string()),
                rtt_ms: None,
            })
        };
        self.pinger.probes.insert(
            seq,
            ping::Probe {
                sent: now,
                deadline: now + std::time::Duration::from_millis(timeout_ms.clamp(1, 60_000)),
                report,
                reply,
            },
        );
        let mut buf = vec![0u8; packet.len() + TRANSPORT_OVERHEAD + RELAY_HEADER_LEN];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + packet.len()].copy_from_slice(&packet);
        match self.ep.send(
            now,
            unix_nanos(),
            &mut self.rng,
            peer,
            &mut buf,
            packet.len(),
        ) {
            SendOutcome::Send { dst, len } => udp.queue(dst, &buf[..len]).await,
            SendOutcome::Dropped(r @ (DropReason::PolicyDenied | DropReason::PeerRefused)) => {
                // Say why at once rather than time out.
                if let Some(p) = self.pinger.probes.remove(&seq) {
                    let why = match r {
                        DropReason::PolicyDenied => "the policy in force does not allow ICMP echo to this peer (meshctl status shows the policy)",
                        _ => "this peer is refused (revoked, or outside this node's enclaves)",
                    };
                    let _ = p.reply.send(fail(why.into()));
                }
            }
            _ => {}
        }
    }

    /// Sends handshake and control datagrams and the pending data batch;
    /// logs events and learns routes from new peers.
    async fn flush(&mut self, udp: &mut Udp) {
        while let Some(t) = self.ep.poll_transmit() {
            udp.queue(t.dst, &t.payload).await;
        }
        udp.flush().await;
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::HandshakeCompleted {
                    peer,
                    name,
                    initiator,
                } => {
                    let info = self.ep.peer(peer, Instant::now());
                    let cipher = info
                        .as_ref()
                        .and_then(|p| p.suite)
                        .map_or("-", |s| s.name());
                    info!(peer = %name, initiator, cipher, "hybrid post-quantum handshake completed");
                    if let Some(cert) = info.and_then(|p| p.cert) {
                        for a in &cert.body().addresses {
                            self.routes.insert(a.addr(), peer);
                        }
                        self.names.insert(cert.name().to_string(), peer);
                    }
                }
                Event::HandshakeFailed { src, error, .. } => {
                    warn!(%src, %error, "handshake failed")
                }
                Event::PeerRefused { peer, error } => {
                    warn!(peer = %self.peer_name(peer), %error, "sessions torn down; peer refused")
                }
                Event::BundleApplied { kind, version } => {
                    info!(%kind, version, "bundle in force");
                    self.save_bundle(kind);
                }
                Event::BundleRejected { kind, error } => {
                    warn!(%kind, %error, "bundle from gossip refused; the one in force stays")
                }
                Event::HandshakeTimedOut { peer, dropped } => {
                    warn!(?peer, dropped, "handshake timed out")
                }
                Event::LinkChanged { peer, up } => {
                    let name = self.peer_name(peer);
                    if up {
                        info!(peer = %name, "direct link up");
                    } else {
                        warn!(peer = %name, "direct link down");
                    }
                }
                Event::PathChanged { peer, via } => {
                    let name = self.peer_name(peer);
                    match via {
                        Some(r) => {
                            warn!(peer = %name, via = %self.peer_name(r), "path changed: relayed")
                        }
                        None => info!(peer = %name, "path changed: direct"),
                    }
                }
                other => debug!(?other, "event"),
            }
        }
    }

    /// Saves the bundle of `kind` in force to the state directory (write and
    /// rename, so a crash never leaves half a file).
    fn save_bundle(&self, kind: BundleKind) {
        let (Some(dir), Some(b)) = (&self.cfg.policy.state_dir, self.ep.bundle(kind)) else {
            return;
        };
        let path = crate::setup::bundle_path(dir, kind);
        let tmp = path.with_extension("bundle.tmp");
        let r = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, b.to_armor()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            warn!(file = %path.display(), "cannot save bundle: {e} (policy.state-dir must be writable)");
        }
    }

    fn policy_status(&self) -> PolicyStatusView {
        let f = self.ep.filter();
        let st = f.stats();
        let mut denied = BTreeMap::new();
        for (d, dir) in ["out", "in"].iter().enumerate() {
            for (r, reason) in proto::filter::REASON_NAMES.iter().enumerate() {
                if st.denied[d][r] > 0 {
                    denied.insert(format!("{dir}/{reason}"), st.denied[d][r]);
                }
            }
        }
        let revoked = match self.ep.bundle(BundleKind::Revocation).map(Bundle::content) {
            Some(Ok(Content::Revocation(l))) => l.entries.len(),
            _ => 0,
        };
        PolicyStatusView {
            policy_version: self.ep.bundle(BundleKind::Policy).map(Bundle::version),
            rules: self.ep.policy().map_or(0, |p| p.rules().len()),
            enclaves: self
                .ep
                .policy()
                .map(|p| p.enclaves().to_vec())
                .unwrap_or_default(),
            revocation_version: self.ep.bundle(BundleKind::Revocation).map(Bundle::version),
            revoked,
            refused_peers: self
                .ep
                .peers(Instant::now())
                .iter()
                .filter(|p| p.refused)
                .count(),
            tracked_flows: f.flow_count(),
            denied,
            bundle_rejects: self
                .ep
                .stats()
                .bundle_rejects
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }

    fn answer(&mut self, req: AdminRequest) -> AdminResponse {
        let now = Instant::now();
        match req {
            AdminRequest::PushBundle { bundle } => {
                let bytes = match Bundle::from_armor(&bundle) {
                    Ok(b) => b.as_bytes().to_vec(),
                    Err(e) => {
                        return AdminResponse::Error {
                            message: e.to_string(),
                        }
                    }
                };
                match self.ep.apply_bundle(now, unix_nanos(), &bytes) {
                    Ok((kind, version)) => {
                        info!(%kind, version, "bundle pushed by meshctl");
                        AdminResponse::Pushed {
                            kind: kind.name().into(),
                            version,
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "pushed bundle refused; the one in force stays");
                        AdminResponse::Error {
                            message: format!("{e}; the bundle in force stays"),
                        }
                    }
                }
            }
            AdminRequest::PolicyShow => {
                let b = self.ep.bundle(BundleKind::Policy);
                AdminResponse::Policy {
                    version: b.map(Bundle::version),
                    issued: b.map(|b| b.body().issued),
                    signer: b.map(|b| match b.signer() {
                        Some(Ok(c)) => c.name().to_string(),
                        _ => "ca".to_string(),
                    }),
                    text: b.map(|b| String::from_utf8_lossy(&b.body().content).into_owned()),
                }
            }
            AdminRequest::Revocations => {
                let b = self.ep.bundle(BundleKind::Revocation);
                let entries = match b.map(Bundle::content) {
                    Some(Ok(Content::Revocation(l))) => l
                        .entries
                        .iter()
                        .map(|e| RevokedView {
                            fingerprint: hex(&e.fingerprint),
                            name: e.name.clone(),
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                AdminResponse::Revocations {
                    version: b.map(Bundle::version),
                    entries,
                }
            }
            AdminRequest::Status => {
                let id = self.ep.identity().certificate();
                let s = self.ep.stats();
                let peers = self.ep.peers(now);
                let mut drops: BTreeMap<String, u64> = DropReason::ALL
                    .iter()
                    .filter(|r| s.drops(**r) > 0)
                    .map(|r| (r.name().to_string(), s.drops(*r)))
                    .collect();
                if self.no_route > 0 {
                    drops.insert("no_route".into(), self.no_route);
                }
                AdminResponse::Status(Box::new(StatusView {
                    version: env!("CARGO_PKG_VERSION").into(),
                    name: id.name().into(),
                    addresses: id.body().addresses.iter().map(|a| a.to_string()).collect(),
                    segments: id.body().segments.clone(),
                    ca_fingerprint: hex(&id.body().issuer),
                    listen: self.cfg.listen.address.to_string(),
                    tun: self.cfg.tun.name.clone(),
                    uptime_secs: self.started.elapsed().as_secs(),
                    peers: peers.len(),
                    sessions: peers.iter().filter(|p| p.has_session).count(),
                    handshakes_completed: s.handshakes_completed,
                    handshake_failures: s
                        .handshake_failures
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect(),
                    drops,
                    policy: self.policy_status(),
                }))
            }
            AdminRequest::Ping { .. } | AdminRequest::Trace { .. } => AdminResponse::Error {
                message: "ping and trace are answered asynchronously".into(),
            },
            AdminRequest::Routes => AdminResponse::Routes {
                routes: self
                    .ep
                    .routes(now)
                    .into_iter()
                    .map(|r| {
                        let name = |peer: Option<PeerId>, id: proto::wire::NodeId| {
                            peer.map_or_else(|| id.to_string(), |p| self.peer_name(p))
                        };
                        RouteView {
                            destination: name(r.dst_peer, r.dst),
                            next_hop: name(r.next_hop_peer, r.next_hop),
                            metric_us: r.metric_us,
                            hops: r.hops,
                            age_secs: r.age.as_secs_f64(),
                        }
                    })
                    .collect(),
            },
            AdminRequest::Metrics => AdminResponse::Metrics {
                text: metrics::render(
                    &self.ep,
                    now,
                    self.started.elapsed().as_secs(),
                    self.no_route,
                ),
            },
            AdminRequest::Peers => AdminResponse::Peers {
                peers: self
                    .ep
                    .peers(now)
                    .into_iter()
                    .map(|p| PeerView {
                        name: self.display_name(&p),
                        addresses: p
                            .cert
                            .as_ref()
                            .map(|c| c.body().addresses.iter().map(|a| a.to_string()).collect())
                            .unwrap_or_default(),
                        endpoint: p.endpoint.map(|e| e.to_string()),
                        handshake_age_secs: p
                            .last_handshake
                            .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                        // Every meshd session comes from the hybrid handshake; there is no classical-only mode.
                        hybrid_post_quantum: p.last_handshake.is_some(),
                        cipher: p.suite.map(|s| s.name().to_string()),
                        session: p.has_session,
                        tx_bytes: p.stats.tx_bytes,
                        rx_bytes: p.stats.rx_bytes,
                        tx_packets: p.stats.tx_packets,
                        rx_packets: p.stats.rx_packets,
                        last_rtt_ms: self.last_rtt.get(&p.id).copied(),
                        path: self.path_name(Some(&p)),
                        link: p.link.map(|l| if l.up { "up" } else { "down" }.to_string()),
                        link_rtt_ms: p.link.and_then(|l| l.srtt).map(|d| d.as_secs_f64() * 1e3),
                        link_jitter_ms: p.link.map(|l| l.jitter.as_secs_f64() * 1e3),
                        link_loss: p.link.map(|l| l.loss),
                    })
                    .collect(),
            },
        }
    }
}
