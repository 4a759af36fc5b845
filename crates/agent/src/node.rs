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
use proto::cert::hex;
use proto::endpoint::{DropReason, Endpoint, EndpointConfig, Event, PeerId, Received, SendOutcome};
use proto::wire::{TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use types::admin::{AdminRequest, AdminResponse, PeerView, StatusView};
use types::config::NodeConfig;

use crate::admin::{self, Pending, SocketGuard};
use crate::metrics;
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
    cfg: NodeConfig,
    ep: Endpoint,
    routes: HashMap<IpAddr, PeerId>,
    started: Instant,
    no_route: u64,
    rng: rand_core::OsRng,
}

pub async fn run(cfg: NodeConfig, loaded: Loaded) -> Result<(), String> {
    let Loaded {
        ca,
        identity,
        peers,
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
        .build_async()
        .map_err(|e| format!("tun.name: cannot create TUN device '{}': {e} (meshd needs root or CAP_NET_ADMIN and /dev/net/tun)", cfg.tun.name))?;
    let udp = UdpSocket::bind(cfg.listen.address)
        .await
        .map_err(|e| format!("listen.address: cannot bind {}: {e}", cfg.listen.address))?;
    let listener = admin::bind(&cfg.admin.socket)?;
    let _socket_guard = SocketGuard(cfg.admin.socket.clone());
    let (admin_tx, mut admin_rx) = mpsc::channel::<Pending>(16);
    if let Some(addr) = cfg.metrics.address {
        let l = metrics::bind(addr).await?;
        tokio::spawn(metrics::serve(l, admin_tx.clone()));
    }
    tokio::spawn(admin::serve(listener, admin_tx));

    let crypto: Arc<dyn proto::provider::Crypto> = Arc::new(RealCrypto);
    let mut ep = Endpoint::new(crypto, ca, identity, EndpointConfig::default());
    let mut routes = HashMap::new();
    let mut rng = rand_core::OsRng;
    for p in &peers {
        let id = ep.add_peer(*p.cert.public_key(), p.endpoint, p.persistent_keepalive);
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
        cfg,
        ep,
        routes,
        started: Instant::now(),
        no_route: 0,
        rng,
    };
    node.flush(&udp).await;

    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| format!("signal handler: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| format!("signal handler: {e}"))?;
    let mut tun_buf = vec![0u8; 65_536 + TRANSPORT_OVERHEAD];
    let mut udp_buf = vec![0u8; 65_536];
    loop {
        let deadline = node
            .ep
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
        tokio::select! {
            r = tun.recv(&mut tun_buf[TRANSPORT_HEADER_LEN..65_536]) => {
                let n = r.map_err(|e| format!("TUN read: {e}"))?;
                node.handle_tun_packet(&udp, &mut tun_buf, n).await;
            }
            r = udp.recv_from(&mut udp_buf) => {
                match r {
                    Ok((n, src)) => node.handle_udp_datagram(&tun, &mut udp_buf[..n], src).await,
                    Err(e) => debug!("UDP receive error: {e}"),
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                node.ep.handle_timeout(Instant::now(), unix_nanos(), &mut node.rng);
            }
            Some((req, reply)) = admin_rx.recv() => {
                let _ = reply.send(node.answer(req));
            }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); break; }
        }
        node.flush(&udp).await;
    }
    Ok(())
}

impl Node {
    async fn handle_tun_packet(&mut self, udp: &UdpSocket, buf: &mut [u8], n: usize) {
        let packet = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n];
        let Some(dst) = inner_destination(packet) else {
            return;
        };
        let Some(&peer) = self.routes.get(&dst) else {
            self.no_route += 1;
            return;
        };
        let out = self.ep.send(
            Instant::now(),
            unix_nanos(),
            &mut self.rng,
            peer,
            &mut buf[..n + TRANSPORT_OVERHEAD],
            n,
        );
        if let SendOutcome::Send { dst, len } = out {
            if let Err(e) = udp.send_to(&buf[..len], dst).await {
                debug!("UDP send to {dst}: {e}");
            }
        }
    }

    async fn handle_udp_datagram(
        &mut self,
        tun: &tun_rs::AsyncDevice,
        buf: &mut [u8],
        src: SocketAddr,
    ) {
        match self
            .ep
            .handle_datagram(Instant::now(), unix_nanos(), &mut self.rng, src, buf)
        {
            Received::Data { len, .. } => {
                if let Err(e) = tun
                    .send(&buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len])
                    .await
                {
                    debug!("TUN write: {e}");
                }
            }
            Received::Dropped(reason) => debug!(%src, %reason, "dropped datagram"),
            Received::Keepalive { .. } | Received::Handshake => {}
        }
    }

    async fn flush(&mut self, udp: &UdpSocket) {
        while let Some(t) = self.ep.poll_transmit() {
            if let Err(e) = udp.send_to(&t.payload, t.dst).await {
                debug!("UDP send to {}: {e}", t.dst);
            }
        }
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::HandshakeCompleted {
                    peer,
                    name,
                    initiator,
                } => {
                    info!(peer = %name, initiator, "hybrid post-quantum handshake completed");
                    if let Some(cert) = self.ep.peer(peer, Instant::now()).and_then(|p| p.cert) {
                        for a in &cert.body().addresses {
                            self.routes.insert(a.addr(), peer);
                        }
                    }
                }
                Event::HandshakeFailed { src, error, .. } => {
                    warn!(%src, %error, "handshake failed")
                }
                Event::HandshakeTimedOut { peer, dropped } => {
                    warn!(?peer, dropped, "handshake timed out")
                }
                other => debug!(?other, "event"),
            }
        }
    }

    fn answer(&self, req: AdminRequest) -> AdminResponse {
        let now = Instant::now();
        match req {
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
                }))
            }
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
                        name: p
                            .cert
                            .as_ref()
                            .map(|c| c.name().to_string())
                            .unwrap_or_else(|| format!("({})", &hex(&p.static_public)[..16])),
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
                        session: p.has_session,
                        tx_bytes: p.stats.tx_bytes,
                        rx_bytes: p.stats.rx_bytes,
                        tx_packets: p.stats.tx_packets,
                        rx_packets: p.stats.rx_packets,
                        last_rtt_ms: None,
                    })
                    .collect(),
            },
        }
    }
}
