//! `mesh-harness handshake-load`: measures how many hybrid handshakes per
//! second a running meshd completes as responder. Run inside a namespace
//! next to it: `count` new nodes (certificates signed with the mesh CA's
//! key, each with its own X25519 key and UDP socket) each initiate one
//! handshake to meshd, at most `concurrency` at a time; real endpoints,
//! real sockets, real cryptography. Cookies under load and retransmissions
//! are handled as any node would handle them. By default the sessions are
//! left unconfirmed (no keepalive after message 2), so meshd does not go on
//! to probe and gossip with thousands of peers that then vanish; with
//! `confirm` they are confirmed, and meshd is left with that many peers
//! that vanish (a hub's worst case: see the retirement of learned peers in
//! docs/decisions/retire-learned-peers.md).
//!
//! Under load a responder holds each source address to a few initiations a
//! second (as WireGuard does), so a thousand nodes behind one address measure
//! that limit, not the responder: `sources` gives the addresses the nodes
//! bind to in turn, as many hosts would (the check adds them to its link).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crypto::{files, RealCrypto};
use proto::armor::LABEL_CA_KEY;
use proto::cert::{NodeCertParams, OverlayAddr, TrustedCa};
use proto::endpoint::{Endpoint, EndpointConfig, Event, PeerId};
use proto::handshake::Identity;
use proto::provider::Crypto;
use rand_core::{OsRng, RngCore};

/// What the run measured.
pub struct Load {
    /// Handshakes completed.
    pub completed: usize,
    /// Wall time from the first initiation to the last completion.
    pub elapsed: Duration,
    /// Each completed handshake's time from its first initiation, sorted.
    pub latencies: Vec<Duration>,
}

impl Load {
    /// The `q` quantile (0..=1) of the handshakes' completion times.
    pub fn latency(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies[((n - 1) as f64 * q).round() as usize]
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Client {
    ep: Endpoint,
    sock: UdpSocket,
    peer: PeerId,
    done: bool,
    started: Instant,
}

/// How a run is shaped.
pub struct Shape<'a> {
    /// Handshakes (at most 10,000).
    pub count: usize,
    /// At most this many in flight.
    pub concurrency: usize,
    /// Confirm each session.
    pub confirm: bool,
    /// Source addresses node `i` binds to (`sources[i % len]`); empty: any.
    pub sources: &'a [IpAddr],
}

/// Runs the load (bounded: `count` ≤ 10,000, 60 s at most).
pub fn run(
    dir: &Path,
    target_cert: &Path,
    to: SocketAddr,
    shape: &Shape<'_>,
) -> Result<Load, String> {
    let Shape {
        count,
        concurrency,
        confirm,
        sources,
    } = *shape;
    let c = RealCrypto;
    let now_s = unix_nanos() / 1_000_000_000;
    let ca_cert = files::read_certificate(&dir.join("ca.crt")).map_err(|e| e.to_string())?;
    let ca = TrustedCa::new(&c, ca_cert, now_s).map_err(|e| e.to_string())?;
    let ca_seed =
        files::read_private_key(&dir.join("ca.key"), LABEL_CA_KEY).map_err(|e| e.to_string())?;
    let target = files::read_certificate(target_cert).map_err(|e| e.to_string())?;
    let crypto: Arc<dyn Crypto> = Arc::new(RealCrypto);
    // Identities first (certificate signing is not what is measured).
    let mut idle: Vec<Client> = (0..count.min(10_000))
        .map(|i| {
            let mut secret = [0u8; 32];
            OsRng.fill_bytes(&mut secret);
            let n = i + 1;
            let cert = ca
                .issue(
                    &c,
                    &ca_seed,
                    NodeCertParams {
                        name: format!("load-{i}"),
                        addresses: vec![OverlayAddr::V4(
                            [100, 65 + (n >> 16) as u8, (n >> 8) as u8, n as u8],
                            10,
                        )],
                        segments: Vec::new(),
                        static_public_key: c.x25519_public_key(&secret),
                        advert_key: proto::cert::advert_public_key(&c, &secret),
                        not_before: now_s - 60,
                        not_after: now_s + 3600,
                    },
                )
                .map_err(|e| e.to_string())?;
            let identity = Identity::new(&c, cert, secret).map_err(|e| e.to_string())?;
            let mut ep = Endpoint::new(
                crypto.clone(),
                ca.clone(),
                identity,
                EndpointConfig {
                    health: None,
                    ..EndpointConfig::default()
                },
                Box::new(OsRng),
            );
            let peer = ep.add_peer(*target.public_key(), Some(to), None);
            let src = sources
                .get(i % sources.len().max(1))
                .copied()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let sock = UdpSocket::bind(SocketAddr::new(src, 0))
                .map_err(|e| format!("binding a node's socket to {src}: {e}"))?;
            sock.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(Client {
                ep,
                sock,
                peer,
                done: false,
                started: Instant::now(),
            })
        })
        .collect::<Result<_, String>>()?;
    idle.reverse();
    let mut active: Vec<Client> = Vec::new();
    let mut completed = 0;
    let start = Instant::now();
    let mut last = start;
    let mut latencies = Vec::with_capacity(count);
    let mut buf = vec![0u8; 65_535];
    while (completed < count) && start.elapsed() < Duration::from_secs(60) {
        while active.len() < concurrency {
            let Some(mut cl) = idle.pop() else { break };
            cl.started = Instant::now();
            cl.ep.initiate(cl.started, unix_nanos(), cl.peer);
            active.push(cl);
        }
        let mut progressed = false;
        for cl in &mut active {
            while let Some(t) = cl.ep.poll_transmit() {
                let _ = cl.sock.send_to(&t.payload, t.dst);
            }
            while let Ok((n, src)) = cl.sock.recv_from(&mut buf) {
                progressed = true;
                cl.ep
                    .handle_datagram(Instant::now(), unix_nanos(), src, &mut buf[..n]);
                // What a completed handshake sends next (the keepalive that
                // confirms the session) is not sent: the measurement is the
                // responder's handshake work, not the upkeep of thousands of
                // confirmed peers (probes, adverts) that would follow.
                if !confirm
                    && cl
                        .ep
                        .peer(cl.peer, Instant::now())
                        .is_some_and(|p| p.has_session)
                {
                    while cl.ep.poll_transmit().is_some() {}
                }
                while let Some(t) = cl.ep.poll_transmit() {
                    let _ = cl.sock.send_to(&t.payload, t.dst);
                }
            }
            if cl.ep.poll_timeout().is_some_and(|d| d <= Instant::now()) {
                cl.ep.handle_timeout(Instant::now(), unix_nanos());
            }
            while let Some(e) = cl.ep.poll_event() {
                if matches!(e, Event::HandshakeCompleted { .. }) && !cl.done {
                    cl.done = true;
                    completed += 1;
                    last = Instant::now();
                    latencies.push(last - cl.started);
                }
            }
        }
        active.retain(|c| !c.done);
        if !progressed {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    latencies.sort_unstable();
    Ok(Load {
        completed,
        elapsed: last - start,
        latencies,
    })
}
