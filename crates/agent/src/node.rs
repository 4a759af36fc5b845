//! The node: its state, shared by the packet workers (`worker.rs`), the
//! handshake thread and the main thread, and the main thread's loop: the
//! endpoint's timers, admin requests (answered from `views.rs`) and signals.
//!
//! ```text
//! start: files (startup::load) → endpoint, TUN queues, sockets → workers
//! main:  timer ──► Endpoint::handle_timeout ─┐
//!        admin ──► views / ping / bundle push ├─► drain (events.rs) ─► send
//!        worker woke us (earlier deadline) ───┘
//! handshakes (a lower-priority thread): RespondPlan from a worker
//!        ──► run (no lock) ──► Endpoint::finish_respond ──► drain ─► send
//! checks (a thread of its own): nudged by `drain` when the endpoint
//!        queued signature checks ──► Endpoint::take_checks ──► run (no
//!        lock) ──► Endpoint::finish_checks ──► drain ─► send
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use proto::bundle::Bundle;
use proto::endpoint::{
    DropReason, Endpoint, Handover, PeerId, RespondPlan, SendOutcome, CHECK_BATCH,
};
use proto::wire::ip;
use proto::wire::{RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{info, warn};
use types::admin::{AdminRequest, AdminResponse, PingView, TraceView};
use types::config::NodeConfig;

use crate::admin::{self, Pending, SocketGuard};
use crate::metrics;
use crate::ping::{self, Pinger, Report};
use crate::reload::{self, SetLevel};
use crate::startup::{self, unix_nanos, Loaded};
use crate::views::{self, AgentCounters, Directory};
use crate::worker::{self, Outbox};

pub struct Node {
    pub pinger: Pinger,
    pub last_rtt: HashMap<PeerId, f64>,
    pub cfg: NodeConfig,
    pub ep: Endpoint,
    started: Instant,
    /// Packets from the TUN device to an address no peer has.
    pub no_route: u64,
    /// Packets from the TUN device to multicast, broadcast or link-local
    /// addresses (the kernel's own: router solicitations, MLD), which the
    /// mesh does not carry: not a drop.
    pub local_scope: u64,
    /// Packets from the TUN device the workers' flow queues dropped: CoDel
    /// (a flow's standing delay) and overflow (`fq.rs`).
    pub queue_drops: [u64; 2],
    /// The deadline the timer task sleeps to; a worker whose batch makes the
    /// endpoint's next deadline earlier wakes it.
    timer_at: Option<Instant>,
    /// Packets each worker took from the TUN device and from UDP.
    pub worker_packets: Vec<[u64; 2]>,
    /// Pings and traces waiting for a member lookup to name their target
    /// (a stub asked its relay), retried every [`RESOLVE_POLL`].
    resolving: Vec<Resolving>,
    /// Wakes the checks thread; `checks_nudged` while it has work it has
    /// not found empty yet (one nudge per run, not one per datagram).
    pub checks: std_mpsc::Sender<()>,
    pub checks_nudged: bool,
    /// Static keys of the `[[peer]]` entries in force (reload compares).
    pub configured: Vec<[u8; 32]>,
    /// The configuration file (reload reads it again).
    config_path: std::path::PathBuf,
    /// Sets the log filter (`log.level` on reload).
    pub set_level: SetLevel,
    /// When certificate expiry was last checked (daily).
    expiry_checked: Option<Instant>,
    /// Drops by reason against their habits (`meshctl doctor`).
    drop_watch: crate::dropwatch::DropWatch,
}

/// A ping or trace whose target is being looked up.
struct Resolving {
    target: String,
    timeout_ms: u64,
    trace: bool,
    reply: oneshot::Sender<AdminResponse>,
    until: Instant,
}

/// How long a ping waits for a member lookup, and how often it looks.
const RESOLVE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
const RESOLVE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The node state, shared by the packet workers and the timer/admin task.
/// A worker holds the lock for one batch's endpoint work and releases it
/// before any system call, so workers overlap in TUN and UDP I/O.
pub struct Shared {
    node: Mutex<Node>,
    pub timer: Notify,
    /// Complete initiations, for the handshake thread (the endpoint bounds
    /// how many are outstanding).
    pub plans: std_mpsc::Sender<Box<RespondPlan>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Node> {
        // A worker that panicked holding the lock has stopped; the main task
        // sees it stop and exits, so continuing here is only until then.
        self.node.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub async fn run(
    cfg: NodeConfig,
    loaded: Loaded,
    config_path: std::path::PathBuf,
    set_level: SetLevel,
) -> Result<(), String> {
    let workers = startup::worker_count(&cfg);
    let own = loaded.identity.certificate().clone();
    let queues = startup::tun_queues(&cfg, &own, workers)?;
    let tun_mtu = usize::from(cfg.tun.mtu);
    let busy_poll = std::time::Duration::from_micros(u64::from(cfg.tun.busy_poll_us));
    let socks = startup::sockets(&cfg, workers)?;
    let listener = admin::bind(&cfg.admin.socket)?;
    let _socket_guard = SocketGuard(cfg.admin.socket.clone());
    let (admin_tx, mut admin_rx) = mpsc::channel::<Pending>(16);
    if let Some(addr) = cfg.metrics.address {
        let l = metrics::bind(addr).await?;
        tokio::spawn(metrics::serve(l, admin_tx.clone(), cfg.metrics.clone()));
    }
    tokio::spawn(admin::serve(listener, admin_tx));
    let peers = loaded.peers.len();
    let configured = (loaded.peers.iter())
        .map(|p| *p.cert.public_key())
        .collect();
    let mut started = startup::endpoint(&cfg, loaded)?;
    let candidates = startup::local_candidates(socks.bound, &cfg.tun.name, &own);
    started.set_local_candidates(candidates.clone());
    info!(
        name = own.name(),
        tun = %cfg.tun.name,
        listen = %socks.bound,
        candidates = ?candidates,
        peers,
        workers,
        "meshd started"
    );
    let (checks_tx, checks_rx) = std_mpsc::channel();
    let node = Node {
        pinger: Pinger::new(rand_core::RngCore::next_u32(&mut rand_core::OsRng) as u16),
        last_rtt: HashMap::new(),
        cfg,
        ep: started,
        started: Instant::now(),
        no_route: 0,
        queue_drops: [0; 2],
        local_scope: 0,
        timer_at: None,
        worker_packets: vec![[0; 2]; workers],
        resolving: Vec::new(),
        configured,
        config_path,
        set_level,
        expiry_checked: None,
        drop_watch: crate::dropwatch::DropWatch::default(),
        checks: checks_tx,
        checks_nudged: false,
    };
    let (plans, plans_rx) = std_mpsc::channel();
    let shared = Arc::new(Shared {
        node: Mutex::new(node),
        timer: Notify::new(),
        plans,
    });
    let ctl_udp = socks.control;
    let mut out = Outbox::default();
    shared.lock().drain(&mut out);
    out.send_direct(&ctl_udp);

    start_dns(&shared, &own, &ctl_udp);
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| format!("signal handler: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("signal handler: {e}"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| format!("signal handler: {e}"))?;
    // Signals whose default would end the daemon, handled so they do not.
    let mut sigusr1 =
        signal(SignalKind::user_defined1()).map_err(|e| format!("signal handler: {e}"))?;
    let mut sigusr2 =
        signal(SignalKind::user_defined2()).map_err(|e| format!("signal handler: {e}"))?;
    let (stopped_tx, mut stopped) = mpsc::unbounded_channel::<String>();
    // The handshake and checks threads: each sends what it finishes
    // through its own descriptor of the control socket.
    let helper = |name: &str, what: &'static str, run: HelperRun| {
        let (shared, stopped_tx) = (shared.clone(), stopped_tx.clone());
        let sock = ctl_udp
            .try_clone()
            .map_err(|e| format!("listen.address: UDP socket setup: {e}"))?;
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _guard = Stopped(stopped_tx, what.into(), None);
                run(&shared, &sock);
            })
            .map(drop)
            .map_err(|e| format!("cannot start {what}: {e}"))
    };
    helper(
        "meshd-handshakes",
        "the handshake thread",
        Box::new(move |shared, sock| handshakes(shared, &plans_rx, sock)),
    )?;
    helper(
        "meshd-checks",
        "the checks thread",
        Box::new(move |shared, sock| checks(shared, &checks_rx, sock)),
    )?;
    for (i, (tun, sock)) in queues.into_iter().zip(socks.workers).enumerate() {
        let (shared, stopped_tx) = (shared.clone(), stopped_tx.clone());
        std::thread::Builder::new()
            .name(format!("meshd-worker-{i}"))
            .spawn(move || {
                let mut guard = Stopped(stopped_tx, format!("packet worker {i}"), None);
                if let Err(why) = worker::run(i, shared, tun, sock, tun_mtu, busy_poll) {
                    guard.2 = Some(why);
                }
            })
            .map_err(|e| format!("cannot start packet worker {i}: {e}"))?;
    }
    loop {
        let deadline = {
            let mut node = shared.lock();
            let resolve = (!node.resolving.is_empty()).then(|| Instant::now() + RESOLVE_POLL);
            let next = [node.ep.poll_timeout(), node.pinger.next_deadline(), resolve]
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
                node.ep.handle_timeout(Instant::now(), unix_nanos());
                node.pinger.expire(Instant::now());
                node.retry_resolving(&mut out);
                node.check_expiry();
                node.watch_drops();
                node.drain(&mut out);
            }
            _ = shared.timer.notified() => {}
            Some((req, reply)) = admin_rx.recv() => {
                let mut node = shared.lock();
                match req {
                    AdminRequest::Ping { target, timeout_ms } => node.start_ping(&mut out, &target, timeout_ms, false, reply, Instant::now() + RESOLVE_WAIT),
                    AdminRequest::Trace { target, timeout_ms } => node.start_ping(&mut out, &target, timeout_ms, true, reply, Instant::now() + RESOLVE_WAIT),
                    req => { let _ = reply.send(node.answer(req)); }
                }
                node.drain(&mut out);
            }
            Some(why) = stopped.recv() => return Err(why),
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
            _ = sighup.recv() => {
                let mut node = shared.lock();
                info!("SIGHUP: reloading {}", node.config_path.display());
                let _ = node.reload();
                node.drain(&mut out);
            }
            _ = sigusr1.recv() => info!("SIGUSR1 ignored (SIGHUP reloads, SIGTERM stops)"),
            _ = sigusr2.recv() => info!("SIGUSR2 ignored (SIGHUP reloads, SIGTERM stops)"),
        }
        out.send_direct(&ctl_udp);
    }
    Ok(())
}

/// The responder's side of handshakes, at a lower priority than the packet
/// workers: a flood of initiations that passes every limit takes this
/// thread's CPU share, not theirs, and never the node's lock for longer
/// than one `finish_respond`.
fn handshakes(
    shared: &Shared,
    plans: &std_mpsc::Receiver<Box<RespondPlan>>,
    sock: &std::net::UdpSocket,
) {
    // Nice 10: about a tenth of a contended CPU's time against a packet
    // worker's (it only lowers this thread's priority, so it cannot fail
    // for want of privileges).
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        warn!("cannot lower the handshake thread's priority: {e}");
    }
    let mut out = Outbox::default();
    while let Ok(plan) = plans.recv() {
        let done = plan.run();
        {
            let mut node = shared.lock();
            node.ep.finish_respond(Instant::now(), unix_nanos(), done);
            node.drain(&mut out);
            node.wake_timer(&shared.timer);
        }
        out.send_direct(sock);
    }
}

/// Signature checks of adverts and certificates, off the packet path: a
/// mesh's bring-up burst of thousands (~150 µs each) holds the node's lock
/// for one `finish_checks` at a time, so the packet workers keep carrying
/// data and answering probes meanwhile
/// (docs/decisions/signature-checks-off-the-packet-path.md). At the
/// workers' priority, unlike the handshake thread: checks come only from
/// admitted neighbours' sessions, one per origin at a time, and a starved
/// checks thread would leave a busy host without routes.
fn checks(shared: &Shared, nudges: &std_mpsc::Receiver<()>, sock: &std::net::UdpSocket) {
    let mut out = Outbox::default();
    while nudges.recv().is_ok() {
        loop {
            let plan = {
                let mut node = shared.lock();
                let plan = node.ep.take_checks(CHECK_BATCH);
                node.checks_nudged = plan.is_some();
                plan
            };
            let Some(plan) = plan else {
                break;
            };
            let done = plan.run();
            {
                let mut node = shared.lock();
                node.ep.finish_checks(Instant::now(), unix_nanos(), done);
                node.drain(&mut out);
                node.wake_timer(&shared.timer);
            }
            out.send_direct(sock);
        }
    }
}

/// What a helper thread runs, given the node and its socket.
type HelperRun = Box<dyn FnOnce(&Shared, &std::net::UdpSocket) + Send>;

/// Tells the main task that a thread (`.1`) ended, and why (`.2`), also
/// when it panicked.
struct Stopped(mpsc::UnboundedSender<String>, String, Option<String>);

impl Drop for Stopped {
    fn drop(&mut self) {
        let how = match self.2.take() {
            Some(why) => why,
            None if std::thread::panicking() => "panicked".into(),
            None => "stopped".into(),
        };
        let _ = self.0.send(format!("{}: {how}", self.1));
    }
}

impl Node {
    /// Wakes the timer task if the endpoint now has an earlier deadline
    /// than the one it sleeps to.
    pub fn wake_timer(&mut self, timer: &Notify) {
        if let Some(t) = self.ep.poll_timeout() {
            if self.timer_at.is_none_or(|at| t < at) {
                self.timer_at = Some(t);
                timer.notify_one();
            }
        }
    }

    fn directory(&self) -> Directory<'_> {
        Directory {
            ep: &self.ep,
            now: Instant::now(),
        }
    }

    /// Pings and traces waiting for a lookup: started once their target
    /// resolves, or failed once they waited [`RESOLVE_WAIT`].
    fn retry_resolving(&mut self, out: &mut Outbox) {
        for r in std::mem::take(&mut self.resolving) {
            self.start_ping(out, &r.target, r.timeout_ms, r.trace, r.reply, r.until);
        }
    }

    /// Resolves a member's name or overlay address: configured peers and
    /// peers with sessions, and members known from the mesh's link state
    /// (which become learned peers here, as traffic to them would).
    fn resolve(&mut self, target: &str) -> Option<(PeerId, IpAddr)> {
        let now = Instant::now();
        if let Ok(ip) = target.parse::<IpAddr>() {
            return self.ep.peer_for_address(now, ip).map(|p| (p, ip));
        }
        let peer = self.ep.peer_for_name(now, target)?;
        let info = self.ep.peer(peer, now)?;
        // Its first IPv4 address, else its first IPv6 one.
        let addr = (info.addresses.iter().copied()).min_by_key(|a| (a.is_ipv6(), *a))?;
        Some((peer, addr))
    }

    /// Sends one ICMP echo to `target` along the real path; answers a ping,
    /// or with `trace` the hop-by-hop path plus that round trip.
    fn start_ping(
        &mut self,
        out: &mut Outbox,
        target: &str,
        timeout_ms: u64,
        trace: bool,
        reply: oneshot::Sender<AdminResponse>,
        until: Instant,
    ) {
        let fail = |message: String| AdminResponse::Error { message };
        let resolved = self.resolve(target);
        if resolved.is_none() && self.ep.looks_up() && Instant::now() < until {
            // A stub asked its relay for the member: try again shortly.
            self.resolving.push(Resolving {
                target: target.to_string(),
                timeout_ms,
                trace,
                reply,
                until,
            });
            return;
        }
        let Some((peer, dst)) = resolved else {
            let _ = reply.send(fail(format!(
                "no member named or addressed '{target}' (see meshctl peers)"
            )));
            return;
        };
        // From our own address of the same family.
        let src = (self.ep.identity().certificate().body().addresses.iter())
            .map(|a| a.addr())
            .find(|a| a.is_ipv4() == dst.is_ipv4());
        let now = Instant::now();
        let info = self.ep.peer(peer, now);
        let seq = self.pinger.next_seq();
        let ident = self.pinger.ident;
        let packet = match (src, dst) {
            (Some(IpAddr::V4(s)), IpAddr::V4(d)) => ip::echo_request(s, d, ident, seq),
            (Some(IpAddr::V6(s)), IpAddr::V6(d)) => ip::echo_request_v6(s, d, ident, seq),
            _ => {
                let family = if dst.is_ipv4() { "IPv4" } else { "IPv6" };
                let _ = reply.send(fail(format!(
                    "this node has no {family} overlay address to ping {dst} from"
                )));
                return;
            }
        };
        let name = (info.as_ref())
            .and_then(|p| p.cert.as_ref())
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| target.to_string());
        let dir = self.directory();
        let report = if trace {
            Report::Trace(TraceView {
                peer: name,
                hops: views::trace_hops(&dir, peer),
                rtt_ms: None,
            })
        } else {
            Report::Ping(PingView {
                peer: name,
                address: dst.to_string(),
                seq,
                path: dir.path_name(info.as_ref()),
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

    /// Logs certificates near their end, at start and then daily.
    /// Feeds the drop counters to their habits (every 10 s at most).
    fn watch_drops(&mut self) {
        let now = Instant::now();
        if !self.drop_watch.due(now) {
            return; // most timer wakes: nothing to gather
        }
        let s = self.ep.stats();
        let mut totals: Vec<(&'static str, u64)> = (proto::endpoint::DropReason::ALL.iter())
            .map(|r| (r.name(), s.drops(*r)))
            .collect();
        totals.extend([
            ("no_route", self.no_route),
            ("queue_codel", self.queue_drops[0]),
            ("queue_full", self.queue_drops[1]),
        ]);
        self.drop_watch.observe(now, totals);
    }

    fn check_expiry(&mut self) {
        let now = Instant::now();
        if self
            .expiry_checked
            .is_some_and(|t| now.duration_since(t).as_secs() < 86_400)
        {
            return;
        }
        self.expiry_checked = Some(now);
        let days = self.cfg.node.expiry_warning_days;
        for w in reload::expiry_warnings(&self.ep, now, startup::unix_now(), days) {
            warn!("{w}");
        }
    }

    /// Reloads the configuration file, logging the outcome: every change
    /// applied, every one needing a restart, or why the file was refused
    /// (the configuration in force then stays).
    fn reload(&mut self) -> Result<types::admin::ReloadView, String> {
        let path = self.config_path.clone();
        match reload::reload(self, &path) {
            Ok(v) => {
                self.expiry_checked = None; // renewed certificates re-checked
                for a in &v.applied {
                    info!("reload: {a}");
                }
                for r in &v.restart_needed {
                    warn!("reload: {r}");
                }
                for w in &v.warnings {
                    warn!("reload: {w}");
                }
                info!(
                    applied = v.applied.len(),
                    restart_needed = v.restart_needed.len(),
                    "configuration reloaded"
                );
                Ok(v)
            }
            Err(e) => {
                tracing::error!("reload refused, the configuration in force stays: {e}");
                Err(format!(
                    "reload refused, the configuration in force stays: {e}"
                ))
            }
        }
    }

    /// `meshctl quarantine [--release PEER]`: lifts the sanction on the
    /// peer named (by name or overlay address), then lists who is under one.
    fn quarantine(&mut self, now: Instant, release: Option<String>) -> AdminResponse {
        let Some(who) = release else {
            return views::sanctioned(&self.directory(), None);
        };
        let peer = self.peer_named(&who);
        let dir = self.directory();
        // A node quarantined by agreement need not be a peer here.
        let sanctioned = (self.ep.sanctioned(now).into_iter())
            .map(|s| s.node)
            .find(|id| dir.node_name(self.ep.peer_by_node(*id), *id) == who);
        let peer_node = peer.and_then(|p| self.ep.peer(p, now)).map(|p| p.node_id);
        let Some(node) = peer_node.or(sanctioned) else {
            return AdminResponse::Error {
                message: format!("no peer named or addressed '{who}'"),
            };
        };
        if !self.ep.release(now, node) {
            return AdminResponse::Error {
                message: format!("'{who}' is under no sanction (meshctl quarantine lists who is)"),
            };
        }
        tracing::warn!(peer = %who, "intrusion detection: released by the operator; its evidence is forgotten");
        views::sanctioned(&self.directory(), Some(who))
    }

    /// The peer an operator named: by overlay address or certificate name.
    fn peer_named(&self, who: &str) -> Option<PeerId> {
        match who.parse::<std::net::IpAddr>() {
            Ok(ip) => self.ep.peer_by_address(ip),
            Err(_) => self.ep.peer_by_name(who),
        }
    }

    /// `meshctl rekey PEER`: a fresh handshake with it now.
    fn rekey(&mut self, now: Instant, who: &str) -> AdminResponse {
        let peer = self.peer_named(who);
        let Some((peer, view)) = peer.and_then(|p| Some((p, self.ep.peer(p, now)?))) else {
            return AdminResponse::Error {
                message: format!("no peer named or addressed '{who}' (meshctl peers lists them)"),
            };
        };
        if view.refused {
            return AdminResponse::Error {
                message: format!("'{who}' is refused here (revoked, or outside this node's enclaves): no session to rekey"),
            };
        }
        self.ep.initiate(now, unix_nanos(), peer);
        let name = view.name.clone().unwrap_or_else(|| who.to_string());
        tracing::info!(peer = %name, "rekey asked for by the operator");
        AdminResponse::Rekeying {
            peer: name,
            had_session: view.has_session,
        }
    }

    /// Answers an admin request other than ping and trace.
    fn answer(&mut self, req: AdminRequest) -> AdminResponse {
        let now = Instant::now();
        match req {
            AdminRequest::PushBundle { bundle } => self.push_bundle(now, &bundle),
            AdminRequest::PolicyShow => views::policy_show(&self.ep),
            AdminRequest::Revocations => views::revocations(&self.ep),
            AdminRequest::Alerts => views::alerts(&self.directory()),
            AdminRequest::Quarantine { release } => self.quarantine(now, release),
            AdminRequest::Rekey { peer } => self.rekey(now, &peer),
            AdminRequest::Reload => match self.reload() {
                Ok(v) => AdminResponse::Reloaded(v),
                Err(message) => AdminResponse::Error { message },
            },
            AdminRequest::Status => {
                let now = Instant::now();
                let unusual_drops = (self.drop_watch.unusual())
                    .map(|(reason, u)| types::admin::UnusualDropView {
                        reason: reason.to_string(),
                        count: u.count as u64,
                        usual: u.usual,
                        age_secs: now.saturating_duration_since(u.at).as_secs(),
                    })
                    .collect();
                let counters = AgentCounters {
                    uptime_secs: self.started.elapsed().as_secs(),
                    no_route: self.no_route,
                    queue_drops: self.queue_drops,
                    unusual_drops,
                };
                let s = views::status(&self.directory(), &self.cfg, &counters);
                AdminResponse::Status(Box::new(s))
            }
            AdminRequest::Ping { .. } | AdminRequest::Trace { .. } => AdminResponse::Error {
                message: "ping and trace are answered asynchronously".into(),
            },
            AdminRequest::Routes => AdminResponse::Routes {
                routes: views::routes(&self.directory()),
            },
            AdminRequest::Metrics => AdminResponse::Metrics {
                text: metrics::render(
                    &self.ep,
                    now,
                    self.started.elapsed().as_secs(),
                    [self.no_route, self.local_scope],
                    self.queue_drops,
                    &self.worker_packets,
                ),
            },
            AdminRequest::Peers => AdminResponse::Peers {
                peers: views::peers(&self.directory(), &self.last_rtt),
            },
        }
    }

    /// `meshctl policy push`: verify and put in force, or say why not (the
    /// bundle in force stays).
    fn push_bundle(&mut self, now: Instant, armored: &str) -> AdminResponse {
        let bytes = match Bundle::from_armor(armored) {
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
                let dir = self.directory();
                let handing_over = (self.ep.peers(now).iter())
                    .filter(|p| matches!(p.handover, Handover::Open { .. }))
                    .map(|p| dir.display_name(p))
                    .collect();
                AdminResponse::Pushed {
                    kind: kind.name().into(),
                    version,
                    handing_over,
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
}

/// Answers DNS for member names on each of this node's overlay addresses
/// (`[discovery] dns-domain`), one thread per address. A address that
/// cannot be bound is logged and skipped: names are a convenience, the
/// mesh works without them.
fn start_dns(shared: &Arc<Shared>, own: &proto::cert::Certificate, udp: &std::net::UdpSocket) {
    let domain = shared.lock().cfg.discovery.dns_domain.clone();
    if domain.is_empty() {
        return;
    }
    for a in &own.body().addresses {
        let at = std::net::SocketAddr::new(a.addr(), 53);
        let sock = match std::net::UdpSocket::bind(at) {
            Ok(s) => s,
            Err(e) => {
                warn!(address = %at, error = %e, "dns: cannot listen; member names are not served there");
                continue;
            }
        };
        let udp = match udp.try_clone() {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "dns: UDP socket setup failed; member names are not served");
                return;
            }
        };
        let (shared, domain) = (shared.clone(), domain.clone());
        let spawned = std::thread::Builder::new()
            .name("meshd-dns".into())
            .spawn(move || crate::dns::serve(sock, shared, domain, udp));
        if let Err(e) = spawned {
            warn!(error = %e, "dns: cannot start its thread");
        }
    }
}
