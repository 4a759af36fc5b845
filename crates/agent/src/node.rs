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
//! N packet workers (`tun.queues`, default one per CPU), each a thread with
//! its own current-thread runtime, its own TUN queue (multiqueue TUN: the
//! kernel spreads flows across queues) and its own UDP socket on the shared
//! port (SO_REUSEPORT: spread by sender), run the two paths above. They
//! share the endpoint behind one lock, held for the endpoint's bookkeeping
//! only: sealing, opening and every system call happen outside it, so the
//! workers run those in parallel. The main thread runs the endpoint's
//! timers, the admin API and signals. Buffers are allocated once per worker
//! and reused, with the transport header's headroom in front of every TUN
//! read.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crypto::RealCrypto;
use proto::bundle::{Bundle, BundleError, BundleKind, Content};
use proto::cert::hex;
use proto::endpoint::{
    DropReason, Endpoint, EndpointConfig, Event, Incoming, OpenPlan, PeerId, Prepared, Received,
    SealPlan, SendOutcome,
};
use proto::health::HealthConfig;
use proto::wire::{RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};
use types::admin::{
    AdminRequest, AdminResponse, HopView, PeerView, PingView, PolicyStatusView, RevokedView,
    RouteView, RoutingStatusView, StatusView, TraceView,
};
use types::config::{HealthSection, NodeConfig};

use crate::admin::{self, Pending, SocketGuard};
use crate::io::Udp;
use crate::metrics;
use crate::ping::{self, Pinger, Report};
use crate::setup::Loaded;

/// The probe settings of `[health]`; what the file does not set keeps the
/// protocol's defaults (stall detection among them).
fn health_config(h: &HealthSection) -> HealthConfig {
    HealthConfig {
        probe_interval: Duration::from_millis(h.active_probe_interval_ms),
        idle_probe_interval: Duration::from_millis(h.idle_probe_interval_ms),
        down_after_misses: h.down_after_misses,
        hold_down: Duration::from_millis(h.hold_down_ms),
        ..HealthConfig::default()
    }
}

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
    /// The deadline the timer task sleeps to; a worker whose batch makes the
    /// endpoint's next deadline earlier wakes it.
    timer_at: Option<Instant>,
    /// Packets each worker took from the TUN device and from UDP.
    worker_packets: Vec<[u64; 2]>,
}

/// The node state, shared by the packet workers and the timer/admin task.
/// A worker holds the lock for one batch's endpoint work and releases it
/// before any system call, so workers overlap in TUN and UDP I/O.
struct Shared {
    node: Mutex<Node>,
    timer: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Node> {
        // A worker that panicked holding the lock has stopped; the main task
        // sees it stop and exits, so continuing here is only until then.
        self.node.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Datagrams produced while the lock is held, sent after it is released.
/// Slots are reused: no allocation per datagram once warm.
#[derive(Default)]
struct Outbox {
    slots: Vec<(SocketAddr, Vec<u8>)>,
    len: usize,
}

impl Outbox {
    fn push(&mut self, dst: SocketAddr, bytes: &[u8]) {
        if self.len == self.slots.len() {
            self.slots.push((dst, Vec::new()));
        }
        let slot = &mut self.slots[self.len];
        slot.0 = dst;
        slot.1.clear();
        slot.1.extend_from_slice(bytes);
        self.len += 1;
    }

    fn push_owned(&mut self, dst: SocketAddr, bytes: Vec<u8>) {
        if self.len == self.slots.len() {
            self.slots.push((dst, bytes));
        } else {
            self.slots[self.len] = (dst, bytes);
        }
        self.len += 1;
    }

    /// Sends each datagram with its own `sendto` on a socket that is not in
    /// any reactor (the timer/admin task's few handshake and control
    /// datagrams). The socket is non-blocking: a full send buffer drops the
    /// datagram, which handshakes and probes recover from.
    fn send_direct(&mut self, sock: &std::net::UdpSocket) {
        for (dst, bytes) in &self.slots[..self.len] {
            if let Err(e) = sock.send_to(bytes, dst) {
                debug!("UDP send to {dst}: {e}");
            }
        }
        self.len = 0;
    }

    async fn send(&mut self, udp: &mut Udp) {
        for (dst, bytes) in &self.slots[..self.len] {
            udp.queue(*dst, bytes).await;
        }
        self.len = 0;
        udp.flush().await;
    }
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

/// Binds one of the workers' UDP sockets; with several workers they share
/// the port (SO_REUSEPORT) and the kernel spreads senders across them.
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

pub async fn run(cfg: NodeConfig, loaded: Loaded) -> Result<(), String> {
    let Loaded {
        ca,
        identity,
        peers,
        bundles,
    } = loaded;
    let workers = worker_count(&cfg);
    let own = identity.certificate().clone();
    let first_v4 = own
        .body()
        .addresses
        .iter()
        .find(|a| a.addr().is_ipv4())
        .copied();
    let mut builder = tun_rs::DeviceBuilder::new()
        .name(&cfg.tun.name)
        .mtu(cfg.tun.mtu)
        .multi_queue(workers > 1);
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
        .build_sync()
        .map_err(|e| format!("tun.name: cannot create TUN device '{}': {e} (meshd needs root or CAP_NET_ADMIN and /dev/net/tun)", cfg.tun.name))?;
    let mut queues = Vec::with_capacity(workers);
    for i in 1..workers {
        queues.push(tun.try_clone().map_err(|e| {
            format!("tun.queues: cannot open TUN queue {i} of {workers}: {e} (set tun.queues = 1 if the kernel lacks multiqueue TUN)")
        })?);
    }
    queues.insert(0, tun);
    let bind_err =
        |e: std::io::Error| format!("listen.address: cannot bind {}: {e}", cfg.listen.address);
    let first = bind_udp(cfg.listen.address, workers > 1).map_err(bind_err)?;
    // With port 0 the kernel picked one; the other workers join it.
    let bound = first.local_addr().map_err(bind_err)?;
    // The timer/admin task sends through its own descriptor of the first
    // socket. It never reads, so it must not join the port's group, and the
    // descriptor stays out of the main thread's reactor: registered there,
    // every datagram arriving for worker 0 would wake the main thread too
    // (measured: ~10,000 wake-ups a second under load).
    let ctl_udp = first
        .try_clone()
        .map_err(|e| format!("listen.address: UDP socket setup: {e}"))?;
    let mut socks = vec![first];
    for _ in 1..workers {
        socks.push(bind_udp(bound, true).map_err(bind_err)?);
    }
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
            underlay_mtu: usize::from(cfg.listen.underlay_mtu),
            relay: cfg.routing.relay,
            pmtu_discovery: cfg.listen.pmtu_discovery,
            health: Some(health_config(&cfg.health)),
            ..EndpointConfig::default()
        },
        Box::new(rand_core::OsRng),
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
            ep.initiate(Instant::now(), unix_nanos(), id);
        }
    }
    info!(
        name = own.name(),
        tun = %cfg.tun.name,
        listen = %bound,
        peers = peers.len(),
        workers,
        "meshd started"
    );
    let node = Node {
        pinger: Pinger::new(rand_core::RngCore::next_u32(&mut rng) as u16),
        last_rtt: HashMap::new(),
        cfg,
        ep,
        routes,
        names,
        started: Instant::now(),
        no_route: 0,
        timer_at: None,
        worker_packets: vec![[0; 2]; workers],
    };
    let shared = Arc::new(Shared {
        node: Mutex::new(node),
        timer: Notify::new(),
    });
    let mut out = Outbox::default();
    shared.lock().drain(&mut out);
    out.send_direct(&ctl_udp);

    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| format!("signal handler: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("signal handler: {e}"))?;
    let (stopped_tx, mut stopped) = mpsc::unbounded_channel::<String>();
    for (i, (tun, sock)) in queues.into_iter().zip(socks).enumerate() {
        let (shared, stopped_tx) = (shared.clone(), stopped_tx.clone());
        std::thread::Builder::new()
            .name(format!("meshd-worker-{i}"))
            .spawn(move || {
                let mut guard = Stopped(stopped_tx, i, None);
                if let Err(why) = run_worker(i, shared, tun, sock) {
                    guard.2 = Some(why);
                }
            })
            .map_err(|e| format!("cannot start packet worker {i}: {e}"))?;
    }
    loop {
        let deadline = {
            let mut node = shared.lock();
            let next = [node.ep.poll_timeout(), node.pinger.next_deadline()]
                .into_iter()
                .flatten()
                .min();
            node.timer_at = next;
            next.map(tokio::time::Instant::from_std).unwrap_or_else(|| {
                tokio::time::Instant::now() + std::time::Duration::from_secs(3600)
            })
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                let mut node = shared.lock();
                let node = &mut *node;
                node.ep.handle_timeout(Instant::now(), unix_nanos());
                node.pinger.expire(Instant::now());
                node.drain(&mut out);
            }
            _ = shared.timer.notified() => {}
            Some((req, reply)) = admin_rx.recv() => {
                let mut node = shared.lock();
                match req {
                    AdminRequest::Ping { target, timeout_ms } => node.start_ping(&mut out, &target, timeout_ms, false, reply),
                    AdminRequest::Trace { target, timeout_ms } => node.start_ping(&mut out, &target, timeout_ms, true, reply),
                    req => { let _ = reply.send(node.answer(req)); }
                }
                node.drain(&mut out);
            }
            Some(why) = stopped.recv() => return Err(why),
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
        }
        out.send_direct(&ctl_udp);
    }
    Ok(())
}

/// Tells the main task that worker `.1` ended, and why (`.2`), also when it
/// panicked.
struct Stopped(mpsc::UnboundedSender<String>, usize, Option<String>);

impl Drop for Stopped {
    fn drop(&mut self) {
        let how = match self.2.take() {
            Some(why) => why,
            None if std::thread::panicking() => "panicked".into(),
            None => "stopped".into(),
        };
        let _ = self.0.send(format!("packet worker {}: {how}", self.1));
    }
}

/// A worker thread: its own current-thread runtime, so its TUN queue and
/// socket are polled on this thread only (no task migration between
/// threads, no work stealing on the packet path).
fn run_worker(
    index: usize,
    shared: Arc<Shared>,
    tun: tun_rs::SyncDevice,
    sock: std::net::UdpSocket,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        let tun = tun_rs::AsyncDevice::new(tun).map_err(|e| format!("TUN queue: {e}"))?;
        let udp = UdpSocket::from_std(sock)
            .and_then(Udp::new)
            .map_err(|e| format!("UDP socket: {e}"))?;
        worker(index, shared, tun, udp).await;
        Ok(())
    })
}

/// One packet worker: its own TUN queue and UDP socket. Per batch it takes
/// the lock once, runs the endpoint over every packet (sealing or opening in
/// place), collects what to send, releases the lock, then does the I/O.
async fn worker(index: usize, shared: Arc<Shared>, tun: tun_rs::AsyncDevice, mut udp: Udp) {
    // Buffers, allocated once. TUN reads land after the transport header's
    // headroom with room for the tag behind; UDP receives take a GRO batch.
    let mut tun_raw = vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + 65_535];
    let mut segments: Vec<Vec<u8>> = (0..tun_rs::IDEAL_BATCH_SIZE)
        .map(|_| vec![0u8; TRANSPORT_HEADER_LEN + 65_535 + TRANSPORT_OVERHEAD])
        .collect();
    let mut sizes = vec![0usize; tun_rs::IDEAL_BATCH_SIZE];
    let mut sealed: Vec<Option<SealPlan>> = (0..tun_rs::IDEAL_BATCH_SIZE).map(|_| None).collect();
    let mut opens: Vec<(usize, OpenPlan)> = Vec::with_capacity(64);
    let mut icmp: Vec<Vec<u8>> = Vec::new();
    let mut opened: Vec<Result<usize, proto::session::SessionError>> = Vec::with_capacity(64);
    let mut udp_buf = vec![0u8; 65_535 * udp.gro_segments().clamp(1, 64)];
    let mut to_tun: Vec<Vec<u8>> = Vec::with_capacity(tun_rs::IDEAL_BATCH_SIZE);
    let mut gro = tun_rs::GROTable::default();
    let mut out = Outbox::default();
    loop {
        tokio::select! {
            r = tun.recv_multiple(&mut tun_raw, &mut segments, &mut sizes, TRANSPORT_HEADER_LEN) => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) => { debug!("TUN read: {e}"); continue; }
                };
                {
                    let (now, unix) = (Instant::now(), unix_nanos());
                    let mut node = shared.lock();
                    node.worker_packets[index][0] += n as u64;
                    for i in 0..n {
                        sealed[i] = node.handle_tun_packet(now, unix, &mut segments[i], sizes[i], &mut icmp);
                    }
                    node.drain(&mut out);
                    node.wake_timer(&shared.timer);
                }
                // Sealing outside the lock: another worker's batch runs meanwhile.
                for i in 0..n {
                    if let Some(plan) = sealed[i].take() {
                        let (dst, len) = plan.seal(&mut segments[i]);
                        udp.queue(dst, &segments[i][..len]).await;
                    }
                }
                out.send(&mut udp).await;
                if !icmp.is_empty() {
                    if let Err(e) = tun.send_multiple(&mut gro, &mut icmp, TRANSPORT_HEADER_LEN).await {
                        debug!("TUN write (ICMP packet too big): {e}");
                    }
                    icmp.clear();
                }
            }
            r = udp.recv(&mut udp_buf) => {
                let meta = match r {
                    Ok(m) => m,
                    Err(e) => { debug!("UDP receive error: {e}"); continue; }
                };
                let stride = meta.stride.max(1);
                let len = meta.len;
                let chunk = |i: usize| i * stride..((i + 1) * stride).min(len);
                let count = len.div_ceil(stride);
                let mut used = 0;
                let (now, unix) = (Instant::now(), unix_nanos());
                // Plan under the lock; transport packets are opened outside
                // it, then finished under it again.
                {
                    let mut node = shared.lock();
                    let node = &mut *node;
                    node.worker_packets[index][1] += count as u64;
                    for i in 0..count {
                        let r = chunk(i);
                        let buf = &mut udp_buf[r];
                        match node.ep.prepare_datagram(now, unix, meta.addr, buf) {
                            Incoming::Open(plan) => opens.push((i, plan)),
                            Incoming::Done(r) => node.deliver(now, r, buf, meta.addr, &mut out, &mut to_tun, &mut used),
                        }
                    }
                    if opens.is_empty() {
                        node.drain(&mut out);
                        node.wake_timer(&shared.timer);
                    }
                }
                if !opens.is_empty() {
                    for (i, plan) in &opens {
                        let r = chunk(*i);
                        opened.push(plan.open(&mut udp_buf[r]));
                    }
                    let mut node = shared.lock();
                    let node = &mut *node;
                    for ((i, plan), result) in opens.drain(..).zip(opened.drain(..)) {
                        let r = chunk(i);
                        let buf = &mut udp_buf[r];
                        let got = node.ep.finish_datagram(now, unix, plan, buf, result);
                        node.deliver(now, got, buf, meta.addr, &mut out, &mut to_tun, &mut used);
                    }
                    node.drain(&mut out);
                    node.wake_timer(&shared.timer);
                }
                if used > 0 {
                    if let Err(e) = tun.send_multiple(&mut gro, &mut to_tun[..used], TRANSPORT_HEADER_LEN).await {
                        debug!("TUN write: {e}");
                    }
                }
                out.send(&mut udp).await;
            }
        }
    }
}

impl Node {
    /// One packet read from the TUN device, at `buf[TRANSPORT_HEADER_LEN..][..n]`:
    /// routed and prepared for sealing (the caller seals it after releasing
    /// the lock). `now` and `unix` are read once per batch by the caller.
    fn handle_tun_packet(
        &mut self,
        now: Instant,
        unix: u64,
        buf: &mut [u8],
        n: usize,
        icmp: &mut Vec<Vec<u8>>,
    ) -> Option<SealPlan> {
        let packet = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n];
        let dst = inner_destination(packet)?;
        let Some(&peer) = self.routes.get(&dst) else {
            self.no_route += 1;
            return None;
        };
        // Room for the tag, and for a relay header should the peer be
        // reached through a relay.
        let room = (n + TRANSPORT_OVERHEAD + RELAY_HEADER_LEN).min(buf.len());
        match self.ep.prepare_send(now, unix, peer, &mut buf[..room], n) {
            Prepared::Seal(plan) => Some(plan),
            Prepared::Done(SendOutcome::TooBig { mtu }) => {
                // Tell the sender, as a router would (written to the TUN
                // device after the lock is released).
                let packet = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n];
                if let Some(e) = ping::too_big(packet, mtu) {
                    let mut b = vec![0u8; TRANSPORT_HEADER_LEN];
                    b.extend_from_slice(&e);
                    icmp.push(b);
                }
                None
            }
            Prepared::Done(_) => None,
        }
    }

    /// Wakes the timer task if the endpoint now has an earlier deadline
    /// than the one it sleeps to.
    fn wake_timer(&mut self, timer: &Notify) {
        if let Some(t) = self.ep.poll_timeout() {
            if self.timer_at.is_none_or(|at| t < at) {
                self.timer_at = Some(t);
                timer.notify_one();
            }
        }
    }

    /// What the endpoint made of one received datagram (opened in place in
    /// `buf`): an IP packet for the TUN device is copied into the next
    /// `to_tun` buffer (its headroom kept for the virtio header), a relayed
    /// datagram goes to `out`.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        now: Instant,
        r: Received,
        buf: &[u8],
        src: SocketAddr,
        out: &mut Outbox,
        to_tun: &mut Vec<Vec<u8>>,
        used: &mut usize,
    ) {
        match r {
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
            Received::Forward { dst, len } => out.push(dst, &buf[..len]),
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
    fn start_ping(
        &mut self,
        out: &mut Outbox,
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
        match self
            .ep
            .send(now, unix_nanos(), peer, &mut buf, packet.len())
        {
            SendOutcome::Send { dst, len } => out.push(dst, &buf[..len]),
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

    /// Moves handshake and control datagrams to `out`; logs events and
    /// learns routes from new peers.
    fn drain(&mut self, out: &mut Outbox) {
        while let Some(t) = self.ep.poll_transmit() {
            out.push_owned(t.dst, t.payload);
        }
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
                Event::PeerRetired { peer } => {
                    info!(peer = %self.peer_name(peer), "peer unreachable for 60 s: retired until it returns")
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
                Event::PathMtuChanged { peer, mtu } => {
                    let name = self.peer_name(peer);
                    info!(peer = %name, mtu, "path MTU of the direct link (probed)");
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
                    routing: RoutingStatusView {
                        relay: self.cfg.routing.relay,
                        adverts_held: self.ep.router().advert_count(),
                        nodes_reachable: self.ep.router().reachable_count(),
                        local_stalls: s.local_stalls,
                    },
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
                    &self.worker_packets,
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
                        path_mtu: p.link.and_then(|l| l.path_mtu),
                    })
                    .collect(),
            },
        }
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
}
