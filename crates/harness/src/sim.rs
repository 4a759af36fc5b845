//! A virtual-time network of real `proto` endpoints.
//!
//! Every node is an unmodified [`proto::endpoint::Endpoint`]; the simulator
//! plays the part the agent plays in production (it moves datagrams between
//! endpoints and calls their timers) and the network's: point-to-point links
//! with a latency each, which can be cut in one or both directions, and
//! nodes that can crash. Time jumps from one event or deadline to the next,
//! so a minute of mesh life costs milliseconds, and every run with the same
//! seed is identical.
//!
//! ```text
//! inject(a → b, IP packet) ─► Endpoint::send ─► datagram ─► link a–x ─► queue
//! queue (by arrival time) ─► Endpoint::handle_datagram at x
//!     ├─ Forward ─► link x–y ─► queue
//!     └─ Data    ─► x's inbox (with arrival time)
//! earliest poll_timeout ─► handle_timeout ─► transmits ─► links ─► queue
//! ```

mod cpu;

pub use cpu::CpuModel;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crypto::RealCrypto;
use proto::bundle::{Bundle, BundleError, BundleKind, RevocationList};
use proto::cert::{create_ca, NodeCertParams, OverlayAddr, TrustedCa};
use proto::control::Control;
use proto::endpoint::{Endpoint, EndpointConfig, Event, PeerId, Received, SendOutcome};
use proto::handshake::Identity;
use proto::provider::Crypto;
use proto::store::SharedStore;
use proto::wire::ip;
use proto::wire::{RELAY_HEADER_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Unix time the simulated clock starts at (2027-01-15).
pub const START_UNIX: u64 = 1_800_000_000;

/// A packet that arrived at a node's TUN side.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Arrival time.
    pub at: Instant,
    /// The sender.
    pub from: usize,
    /// The IP packet.
    pub packet: Vec<u8>,
}

/// One simulated host.
pub struct SimNode {
    /// Name from the certificate.
    pub name: String,
    /// The real protocol state machine.
    pub ep: Endpoint,
    /// Underlay address.
    pub addr: SocketAddr,
    /// Overlay IPv4 address.
    pub ip: [u8; 4],
    /// Peer id, in this node's endpoint, of every other node it knows.
    pub peers: HashMap<usize, PeerId>,
    /// IP packets delivered here.
    pub inbox: Vec<Delivery>,
    /// Events with their times.
    pub events: Vec<(Instant, Event)>,
    /// Crashed: receives nothing, runs no timers.
    pub down: bool,
    /// Stalled (not running) until then: its timers wait, datagrams to it
    /// queue up and are read after its timers have run (the worst order).
    pub stalled_until: Option<Instant>,
    /// UDP payload bytes this node put on links (all kinds).
    pub bytes_sent: u64,
    /// Virtual time this node spent working, under a [`CpuModel`].
    pub busy: Duration,
    /// Datagrams that arrived while it was stalled or busy, in order
    /// (sequence numbers of `Sim::in_flight`, and the sender).
    backlog: std::collections::VecDeque<(u64, usize)>,
    /// When the wake set to run its queued signature checks is (deferred
    /// checks: one batch per such wake, see `Sim::read_backlog`).
    checks_wake: Option<Instant>,
    /// When the wake set to read its backlog is (one at a time).
    backlog_wake: Option<Instant>,
    /// Its queued checks wait until released ([`Sim::hold_checks`]).
    checks_held: bool,
    /// What [`Sim::restart`] starts it again with.
    boot: Boot,
}

/// A node's identity and settings, to start it again.
#[derive(Clone)]
struct Boot {
    cert: proto::cert::Certificate,
    secret: [u8; 32],
    config: EndpointConfig,
}

impl std::fmt::Debug for Boot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Boot").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct Link {
    latency: Duration,
    /// Extra delay of each datagram, uniform in `0..jitter` (seeded; the
    /// order of datagrams may change).
    jitter: Duration,
    /// Probability that a datagram is lost (seeded).
    loss: f64,
    /// Whether the direction lower index → higher index carries packets.
    up_fwd: bool,
    /// Whether the direction higher → lower carries packets.
    up_back: bool,
    /// Largest IPv4 datagram carried (UDP payload + 28); larger ones are
    /// dropped silently, as by a link that sends no ICMP.
    mtu: usize,
}

/// The simulated mesh.
pub struct Sim {
    t0: Instant,
    /// Current virtual time.
    pub now: Instant,
    /// The hosts.
    pub nodes: Vec<SimNode>,
    links: HashMap<(usize, usize), Link>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize, usize)>>,
    /// Each node's next deadline, and a heap of them (stale entries skipped).
    deadlines: Vec<Option<Instant>>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    in_flight: HashMap<u64, Vec<u8>>,
    seq: u64,
    rng: ChaCha20Rng,
    /// Datagrams that hit a cut link or a crashed node.
    pub lost: u64,
    /// Datagrams put on links.
    pub sent: u64,
    ca: TrustedCa,
    ca_seed: [u8; 32],
    cpu: Option<CpuModel>,
    /// When a stalled or busy node reads its backlog next.
    wakes: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Link {
    /// A lossless link, up both ways, of unlimited MTU.
    fn new(latency: Duration) -> Self {
        Self {
            latency,
            jitter: Duration::ZERO,
            loss: 0.0,
            up_fwd: true,
            up_back: true,
            mtu: usize::MAX,
        }
    }
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    /// Hosts named `names`, with links `links` (pairs of indexes, each with
    /// `latency`). Every host knows every host it has a link to, with its
    /// underlay address, and every other host by key only (reachable through
    /// relays). Host i has underlay 198.18.0.(i+1) and overlay 100.64.0.(i+1).
    pub fn new(
        seed: u64,
        names: &[&str],
        links: &[(usize, usize)],
        latency: Duration,
        config: EndpointConfig,
    ) -> Self {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let links: Vec<(usize, usize, Duration)> =
            links.iter().map(|&(a, b)| (a, b, latency)).collect();
        Self::build(seed, &names, &links, config, true)
    }

    /// As [`Sim::new`] with a latency per link; with `know_all` false a host
    /// knows only its direct neighbours (large meshes: peers cost a DH each).
    pub fn build(
        seed: u64,
        names: &[String],
        links: &[(usize, usize, Duration)],
        config: EndpointConfig,
        know_all: bool,
    ) -> Self {
        Self::build_each(seed, names, links, |_| config.clone(), know_all)
    }

    /// As [`Sim::build`] with host `i`'s endpoint configured by `config(i)`
    /// (stubs among relays, for example).
    pub fn build_each(
        seed: u64,
        names: &[String],
        links: &[(usize, usize, Duration)],
        config: impl Fn(usize) -> EndpointConfig,
        know_all: bool,
    ) -> Self {
        let c = RealCrypto;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut ca_seed = [0u8; 32];
        rng.fill_bytes(&mut ca_seed);
        let ca_cert = create_ca(
            &c,
            "sim-ca",
            &ca_seed,
            START_UNIX - 86_400,
            START_UNIX + 86_400 * 365,
        )
        .expect("a fixed CA name and validity are valid");
        let ca = TrustedCa::new(&c, ca_cert, START_UNIX).expect("fresh CA verifies");
        // One copy of each verified certificate and advert for all nodes
        // (proto::store): N² copies would not fit at 10,000 nodes.
        let store = Arc::new(SharedStore::new(*ca.fingerprint()));
        let crypto: Arc<dyn Crypto> = Arc::new(RealCrypto);
        let mut nodes = Vec::new();
        let mut statics = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let public = c.x25519_public_key(&secret);
            let ip = [
                100,
                64 + ((i + 1) >> 16) as u8,
                ((i + 1) >> 8) as u8,
                (i + 1) as u8,
            ];
            let cert = ca
                .issue(
                    &c,
                    &ca_seed,
                    NodeCertParams {
                        name: name.clone(),
                        addresses: vec![OverlayAddr::V4(ip, 10)],
                        segments: vec!["sim".into()],
                        static_public_key: public,
                        advert_key: proto::cert::advert_public_key(&c, &secret),
                        not_before: START_UNIX - 3600,
                        not_after: START_UNIX + 86_400 * 30,
                    },
                )
                .expect("simulated names are valid");
            let boot = Boot {
                cert: cert.clone(),
                secret,
                config: EndpointConfig {
                    shared: Some(store.clone()),
                    ..config(i)
                },
            };
            let identity = Identity::new(&c, cert, secret).expect("key matches certificate");
            statics.push(public);
            nodes.push(SimNode {
                name: name.clone(),
                ep: Endpoint::new(
                    crypto.clone(),
                    ca.clone(),
                    identity,
                    boot.config.clone(),
                    Box::new(ChaCha20Rng::seed_from_u64(rng.next_u64())),
                ),
                addr: SocketAddr::from((
                    [198, 18 + (i >> 16) as u8, (i >> 8) as u8, i as u8],
                    51820,
                )),
                ip,
                peers: HashMap::new(),
                inbox: Vec::new(),
                events: Vec::new(),
                down: false,
                stalled_until: None,
                bytes_sent: 0,
                busy: Duration::ZERO,
                backlog: std::collections::VecDeque::new(),
                checks_wake: None,
                backlog_wake: None,
                checks_held: false,
                boot,
            });
        }
        let mut link_map = HashMap::new();
        for &(a, b, latency) in links {
            link_map.insert(key(a, b), Link::new(latency));
        }
        let mut neighbors: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for &(a, b) in link_map.keys() {
            neighbors[a].push(b);
            neighbors[b].push(a);
        }
        for (i, ns) in neighbors.iter_mut().enumerate() {
            ns.sort_unstable();
            let known: Vec<usize> = if know_all {
                (0..nodes.len()).filter(|j| *j != i).collect()
            } else {
                ns.clone()
            };
            for j in known {
                let endpoint = ns.binary_search(&j).is_ok().then_some(nodes[j].addr);
                let id = nodes[i].ep.add_peer(statics[j], endpoint, None);
                nodes[i].peers.insert(j, id);
            }
        }
        let by_addr = nodes.iter().enumerate().map(|(i, n)| (n.addr, i)).collect();
        let t0 = Instant::now();
        let mut sim = Self {
            t0,
            now: t0,
            nodes,
            links: link_map,
            by_addr,
            queue: BinaryHeap::new(),
            deadlines: Vec::new(),
            timers: BinaryHeap::new(),
            in_flight: HashMap::new(),
            seq: 0,
            rng,
            lost: 0,
            sent: 0,
            ca,
            ca_seed,
            cpu: None,
            wakes: BinaryHeap::new(),
        };
        sim.deadlines = vec![None; sim.nodes.len()];
        // Every node handshakes with its direct neighbours at start, as meshd does.
        for (i, ns) in neighbors.iter().enumerate() {
            for &j in ns {
                let unix = sim.unix_nanos();
                let peer = sim.nodes[i].peers[&j];
                let now = sim.now;
                sim.nodes[i].ep.initiate(now, unix, peer);
            }
            sim.drain(i);
        }
        sim
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// The simulated wall clock, Unix nanoseconds (as drivers pass to endpoints).
    pub fn unix_nanos(&self) -> u64 {
        START_UNIX * 1_000_000_000 + self.elapsed().as_nanos() as u64
    }

    /// Signs a bundle with the mesh CA and pushes it to node `at` (as
    /// `meshctl policy push` / `meshctl revoke` would); gossip does the rest.
    pub fn push_bundle(
        &mut self,
        at: usize,
        kind: BundleKind,
        version: u64,
        content: Vec<u8>,
    ) -> Result<(), BundleError> {
        let b = Bundle::sign(
            &RealCrypto,
            &self.ca,
            &self.ca_seed,
            kind,
            version,
            START_UNIX,
            content,
        )?;
        let (now, unix) = (self.now, self.unix_nanos());
        self.nodes[at].ep.apply_bundle(now, unix, b.as_bytes())?;
        self.drain(at);
        Ok(())
    }

    /// Revokes the certificates of `victims`, pushed at node `at`.
    pub fn revoke(
        &mut self,
        at: usize,
        victims: &[usize],
        version: u64,
    ) -> Result<(), BundleError> {
        let mut list = RevocationList::default();
        for &v in victims {
            list.revoke(&RealCrypto, self.nodes[v].ep.identity().certificate());
        }
        self.push_bundle(at, BundleKind::Revocation, version, list.encode())
    }

    /// Node `n`, built with no links (so knowing no peer), joins the mesh:
    /// links to each of `to` (underlay reachability only, `latency` each)
    /// and those nodes' addresses as its bootstrap addresses.
    pub fn join(&mut self, n: usize, to: &[usize], latency: Duration) {
        for &b in to {
            self.links.insert(key(n, b), Link::new(latency));
            let (now, addr) = (self.now, self.nodes[b].addr);
            self.nodes[n].ep.add_bootstrap(now, addr);
        }
        self.drain(n);
    }

    /// Cuts the link a–b in the direction a → b only.
    pub fn cut_one_way(&mut self, a: usize, b: usize) {
        self.set_direction(a, b, false);
    }

    /// Cuts the link a–b both ways.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.set_direction(a, b, false);
        self.set_direction(b, a, false);
    }

    /// Restores the link a–b both ways.
    pub fn heal(&mut self, a: usize, b: usize) {
        self.set_direction(a, b, true);
        self.set_direction(b, a, true);
    }

    fn set_direction(&mut self, from: usize, to: usize, up: bool) {
        if let Some(l) = self.links.get_mut(&key(from, to)) {
            if from < to {
                l.up_fwd = up;
            } else {
                l.up_back = up;
            }
        }
    }

    /// Makes the link a–b lose each datagram with probability `loss`, both ways.
    pub fn set_loss(&mut self, a: usize, b: usize, loss: f64) {
        if let Some(l) = self.links.get_mut(&key(a, b)) {
            l.loss = loss;
        }
    }

    /// Delays each datagram on the link a–b by up to `jitter` more than its
    /// latency (uniform, seeded), both ways.
    pub fn set_jitter(&mut self, a: usize, b: usize, jitter: Duration) {
        if let Some(l) = self.links.get_mut(&key(a, b)) {
            l.jitter = jitter;
        }
    }

    /// Makes the link a–b carry IPv4 datagrams of at most `mtu` bytes, both
    /// ways, dropping larger ones without a word (a PMTU black hole).
    pub fn set_mtu(&mut self, a: usize, b: usize, mtu: usize) {
        if let Some(l) = self.links.get_mut(&key(a, b)) {
            l.mtu = mtu;
        }
    }

    /// Crashes node `n`: it drops everything and runs no timers.
    pub fn crash(&mut self, n: usize) {
        self.nodes[n].down = true;
    }

    /// Starts crashed (or running) node `n` again: a new endpoint with its
    /// identity and settings and no state, knowing its link neighbours, and
    /// handshaking with each, as meshd does at start.
    pub fn restart(&mut self, n: usize) {
        let boot = self.nodes[n].boot.clone();
        let identity = Identity::new(&RealCrypto, boot.cert, boot.secret)
            .expect("the key matched this certificate at build");
        let seed = self.rng.next_u64();
        let ep = Endpoint::new(
            Arc::new(RealCrypto),
            self.ca.clone(),
            identity,
            boot.config,
            Box::new(ChaCha20Rng::seed_from_u64(seed)),
        );
        let node = &mut self.nodes[n];
        node.ep = ep;
        node.down = false;
        node.stalled_until = None;
        node.peers.clear();
        node.backlog.clear();
        node.checks_wake = None;
        node.backlog_wake = None;
        let mut neighbours: Vec<usize> = (self.links.keys())
            .filter_map(|&(a, b)| match (a == n, b == n) {
                (true, _) => Some(b),
                (_, true) => Some(a),
                _ => None,
            })
            .collect();
        neighbours.sort_unstable();
        let (now, unix) = (self.now, self.unix_nanos());
        for j in neighbours {
            let (key, addr) = (
                *self.nodes[j].ep.identity().static_public(),
                self.nodes[j].addr,
            );
            let id = self.nodes[n].ep.add_peer(key, Some(addr), None);
            self.nodes[n].peers.insert(j, id);
            self.nodes[n].ep.initiate(now, unix, id);
        }
        self.drain(n);
    }

    /// Stops node `n` for `d` (a paused VM, a starved process): nothing it
    /// should do in that time happens until `d` is over; then its timers
    /// run first, and then it reads the datagrams that waited for it.
    pub fn stall(&mut self, n: usize, d: Duration) {
        self.nodes[n].stalled_until = Some(self.now + d);
    }

    /// When node `n` can run again, if it is stalled now.
    fn stalled(&self, n: usize) -> Option<Instant> {
        self.nodes[n].stalled_until.filter(|t| *t > self.now)
    }

    /// Puts a datagram from node `from` on the link to underlay address `dst`.
    fn transmit(&mut self, from: usize, dst: SocketAddr, payload: Vec<u8>) {
        self.sent += 1;
        self.nodes[from].bytes_sent += payload.len() as u64;
        let Some(&to) = self.by_addr.get(&dst) else {
            self.lost += 1;
            return;
        };
        let Some(&link) = self.links.get(&key(from, to)) else {
            self.lost += 1;
            return;
        };
        let up = if from < to { link.up_fwd } else { link.up_back };
        let dropped = payload.len() + 28 > link.mtu
            || (link.loss > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < link.loss);
        if !up || dropped {
            self.lost += 1;
            return;
        }
        let extra = if link.jitter.is_zero() {
            Duration::ZERO
        } else {
            link.jitter
                .mul_f64(self.rng.next_u64() as f64 / u64::MAX as f64)
        };
        self.seq += 1;
        self.in_flight.insert(self.seq, payload);
        self.queue.push(Reverse((
            self.now + link.latency + extra,
            self.seq,
            from,
            to,
        )));
    }

    /// Moves node `i`'s pending transmits onto links and records its events
    /// (after a test called its endpoint directly).
    pub fn drain(&mut self, i: usize) {
        let now = self.now;
        let mut out = Vec::new();
        while let Some(t) = self.nodes[i].ep.poll_transmit() {
            out.push(t);
        }
        while let Some(e) = self.nodes[i].ep.poll_event() {
            self.nodes[i].events.push((now, e));
        }
        for t in out {
            self.transmit(i, t.dst, t.payload);
        }
        self.reschedule(i);
    }

    /// Records node `i`'s next deadline after anything touched it, and
    /// sets a wake for its queued signature checks.
    fn reschedule(&mut self, i: usize) {
        let d = self.nodes[i].ep.poll_timeout();
        if d != self.deadlines[i] {
            self.deadlines[i] = d;
            if let Some(t) = d {
                self.timers.push(Reverse((t, i)));
            }
        }
        self.arm_checks(i);
    }

    /// The earliest live timer (stale heap entries are dropped on the way).
    fn next_timer(&mut self) -> Option<(Instant, usize)> {
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if self.deadlines[i] == Some(t) && !self.nodes[i].down {
                return Some((t, i));
            }
            self.timers.pop();
        }
        None
    }

    /// Sends an IP packet (UDP-like payload `data`) from node `from` to node
    /// `to`'s overlay address. Returns what the sender's endpoint did.
    pub fn inject(&mut self, from: usize, to: usize, data: &[u8]) -> SendOutcome {
        let src = self.nodes[from].ip;
        self.inject_as(from, src, to, data)
    }

    /// As [`Sim::inject`] with inner source address `src` (a member
    /// sending as an address it does not hold).
    pub fn inject_as(&mut self, from: usize, src: [u8; 4], to: usize, data: &[u8]) -> SendOutcome {
        if self.nodes[from].down || self.stalled(from).is_some() {
            return SendOutcome::Dropped(proto::endpoint::DropReason::NoEndpoint);
        }
        let pkt = ip::ipv4(src, self.nodes[to].ip, ip::UDP, data);
        let mut buf = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD + RELAY_HEADER_LEN];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
        let unix = self.unix_nanos();
        let now = self.now;
        // A node that knows `to` only from the mesh resolves it as meshd
        // does: by the destination address.
        let peer = match self.nodes[from].peers.get(&to) {
            Some(p) => *p,
            None => {
                let dst = std::net::IpAddr::from(self.nodes[to].ip);
                match self.nodes[from].ep.peer_for_address(now, dst) {
                    Some(p) => p,
                    None => {
                        self.drain(from); // a stub's lookup
                        return SendOutcome::Dropped(proto::endpoint::DropReason::NoEndpoint);
                    }
                }
            }
        };
        let out = self.nodes[from]
            .ep
            .send(now, unix, peer, &mut buf, pkt.len());
        if let SendOutcome::Send { dst, len } = out {
            buf.truncate(len);
            self.transmit(from, dst, buf);
        }
        self.drain(from);
        out
    }

    /// Node `from` sends control message `msg` to its neighbour `to` in
    /// their session: how tests play a misbehaving member (one that alters
    /// or forges what it floods). False without a usable session.
    pub fn send_control(&mut self, from: usize, to: usize, msg: &Control) -> bool {
        let now = self.now;
        let peer = self.nodes[from].peers[&to];
        let sent = self.nodes[from].ep.send_control(now, peer, msg);
        self.drain(from);
        sent
    }

    /// Runs every arrival and timer up to `until` (bounded in steps: 20,000
    /// per node, at least 10 million).
    pub fn run_until(&mut self, until: Instant) {
        let bound = 20_000 * self.nodes.len().max(500);
        for _ in 0..bound {
            let arrival = self.queue.peek().map(|Reverse((t, ..))| *t);
            let timer = self.next_timer();
            let wake = self.wakes.peek().map(|Reverse((t, _))| *t);
            let next = [arrival, timer.map(|(t, _)| t), wake]
                .into_iter()
                .flatten()
                .min();
            let Some(t) = next.filter(|t| *t <= until) else {
                self.now = self.now.max(until);
                return;
            };
            self.now = self.now.max(t);
            if arrival.is_some_and(|a| a <= t) {
                if let Some(Reverse((_, seq, from, to))) = self.queue.pop() {
                    if let Some(resume) = self.stalled(to) {
                        // Waits in its socket until after its timers ran.
                        if self.nodes[to].backlog_wake.is_none() {
                            let later = resume + Duration::from_micros(1);
                            self.nodes[to].backlog_wake = Some(later);
                            self.wakes.push(Reverse((later, to)));
                        }
                        self.nodes[to].backlog.push_back((seq, from));
                        continue;
                    }
                    if let Some(d) = self.in_flight.remove(&seq) {
                        self.arrive(from, to, d);
                    }
                }
            } else if wake.is_some_and(|w| w <= t && timer.is_none_or(|(tt, _)| w < tt)) {
                let Some(Reverse((at, i))) = self.wakes.pop() else {
                    continue;
                };
                self.read_backlog(i, at);
            } else if let Some((_, i)) = timer {
                self.timers.pop();
                if let Some(resume) = self.stalled(i) {
                    self.deadlines[i] = Some(resume);
                    self.timers.push(Reverse((resume, i)));
                    continue;
                }
                self.deadlines[i] = None;
                let (now, unix) = (self.now, self.unix_nanos());
                let before = self.work(i);
                self.nodes[i].ep.handle_timeout(now, unix);
                self.charge(i, before);
                self.drain(i);
            }
        }
        panic!("simulation did not reach {until:?} in {bound} steps");
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn arrive(&mut self, from: usize, to: usize, mut d: Vec<u8>) {
        if self.nodes[to].down {
            self.lost += 1;
            return;
        }
        let src = self.nodes[from].addr;
        let (now, unix) = (self.now, self.unix_nanos());
        let before = self.work(to);
        let r = self.nodes[to].ep.handle_datagram(now, unix, src, &mut d);
        self.charge(to, before);
        match r {
            Received::Data { peer, len } => {
                let sender = self.nodes[to]
                    .peers
                    .iter()
                    .find(|(_, p)| **p == peer)
                    .map_or(usize::MAX, |(i, _)| *i);
                let packet = d[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len].to_vec();
                self.nodes[to].inbox.push(Delivery {
                    at: now,
                    from: sender,
                    packet,
                });
            }
            Received::Forward { dst, len } => {
                d.truncate(len);
                self.transmit(to, dst, d);
            }
            _ => {}
        }
        self.drain(to);
    }

    /// The relay node `from` currently uses for `to` (`None`: direct).
    pub fn via(&self, from: usize, to: usize) -> Option<usize> {
        let info = self.nodes[from]
            .ep
            .peer(self.nodes[from].peers[&to], self.now)?;
        let relay = info.via?;
        self.nodes[from]
            .peers
            .iter()
            .find(|(_, p)| **p == relay)
            .map(|(i, _)| *i)
    }

    /// `PathChanged` events node `from` logged for node `to`, with times.
    pub fn path_changes(&self, from: usize, to: usize) -> Vec<(Duration, Option<usize>)> {
        let peer = self.nodes[from].peers[&to];
        self.nodes[from]
            .events
            .iter()
            .filter_map(|(t, e)| match e {
                Event::PathChanged { peer: p, via } if *p == peer => {
                    let via = via.and_then(|v| {
                        self.nodes[from]
                            .peers
                            .iter()
                            .find(|(_, q)| **q == v)
                            .map(|(i, _)| *i)
                    });
                    Some((*t - self.t0, via))
                }
                _ => None,
            })
            .collect()
    }

    /// Virtual time of `t` since the start.
    pub fn since_start(&self, t: Instant) -> Duration {
        t - self.t0
    }
}
