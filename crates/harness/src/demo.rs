//! The handshake demo: two endpoints, two real UDP sockets on loopback.

use std::error::Error;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crypto::RealCrypto;
use proto::cert::{self, hex, NodeCertParams, OverlayAddr, TrustedCa};
use proto::endpoint::{DropReason, Endpoint, EndpointConfig, Event, PeerId, Received, SendOutcome};
use proto::handshake::Identity;
use proto::provider::Crypto;
use proto::wire::ip;
use proto::wire::{TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use rand_core::RngCore;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

struct Node {
    name: &'static str,
    ip: [u8; 4],
    ep: Endpoint,
    sock: UdpSocket,
    peer: PeerId,
    received: u64,
    received_bytes: u64,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn kind_of(d: &[u8]) -> String {
    match d.first() {
        Some(1) if d.len() > 2 && d[1] < d[2] && d[2] <= 4 => {
            format!("handshake initiation fragment {}/{}", d[1] + 1, d[2])
        }
        Some(2) if d.len() > 2 && d[1] < d[2] && d[2] <= 4 => {
            format!("handshake response fragment {}/{}", d[1] + 1, d[2])
        }
        Some(1 | 2) => "datagram posing as a handshake fragment".into(),
        Some(3) => "cookie reply".into(),
        Some(4) if d.len() == TRANSPORT_OVERHEAD => "keepalive".into(),
        Some(4) => "transport packet".into(),
        _ => "unknown".into(),
    }
}

fn step(n: &mut u32, text: String) {
    *n += 1;
    println!("[{n:>2}] {text}");
}

/// A UDP-shaped IPv4 packet of `len` bytes numbered `seq` (its payload
/// derived from `seq`, so the receiver can check every byte).
fn ipv4(src: [u8; 4], dst: [u8; 4], seq: u32, len: usize) -> Vec<u8> {
    let mut payload = vec![0u8; len.max(28) - 20];
    payload[4..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in payload[8..].iter_mut().enumerate() {
        *b = (i as u32 ^ seq) as u8;
    }
    ip::ipv4(src, dst, ip::UDP, &payload)
}

/// Flushes an endpoint's queued transmits to its socket, narrating handshake traffic.
fn flush(node: &mut Node, narrate: bool, n: &mut u32) -> Result<()> {
    while let Some(e) = node.ep.poll_event() {
        if narrate {
            match e {
                Event::HandshakeCompleted { name, initiator, .. } => step(n, format!(
                    "{}: handshake complete with '{name}' as {} (certificate verified against the mesh CA)",
                    node.name,
                    if initiator { "initiator" } else { "responder" }
                )),
                other => step(n, format!("{}: {other:?}", node.name)),
            }
        }
    }
    while let Some(t) = node.ep.poll_transmit() {
        if narrate {
            step(
                n,
                format!(
                    "{} -> {}  {} ({} bytes, fits a 1280-byte path MTU: {})",
                    node.name,
                    t.dst,
                    kind_of(&t.payload),
                    t.payload.len(),
                    t.payload.len() + 48 <= 1280
                ),
            );
        }
        node.sock.send_to(&t.payload, t.dst)?;
    }
    Ok(())
}

/// Receives whatever is waiting on the node's socket and feeds it in.
fn receive(node: &mut Node, narrate: bool, n: &mut u32) -> Result<usize> {
    let mut buf = vec![0u8; 65_536];
    let mut count = 0;
    loop {
        let (len, src) = match node.sock.recv_from(&mut buf) {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e.into()),
        };
        count += 1;
        let kind = kind_of(&buf[..len]);
        let r = node
            .ep
            .handle_datagram(Instant::now(), unix_nanos(), src, &mut buf[..len]);
        match r {
            Received::Data { len: l, .. } => {
                node.received += 1;
                node.received_bytes += l as u64;
                let pkt = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + l];
                let seq = u32::from_be_bytes([pkt[24], pkt[25], pkt[26], pkt[27]]);
                let expect = ipv4([pkt[12], pkt[13], pkt[14], pkt[15]], node.ip, seq, l);
                if pkt != &expect[..] {
                    return Err(format!("{}: packet {seq} corrupted", node.name).into());
                }
                if narrate {
                    step(n, format!("{}: decrypted an IPv4 packet from {} ({l} bytes), inner source checked against the sender's certificate",
                        node.name, std::net::Ipv4Addr::from([pkt[12], pkt[13], pkt[14], pkt[15]])));
                }
            }
            Received::Dropped(reason) if narrate => {
                step(n, format!("{}: dropped a {kind} ({reason})", node.name));
            }
            Received::Keepalive { .. } if narrate => step(
                n,
                format!("{}: keepalive (confirms the new session)", node.name),
            ),
            _ => {}
        }
        flush(node, narrate, n)?;
    }
    Ok(count)
}

fn node(
    ca: &TrustedCa,
    ca_seed: &[u8; 32],
    name: &'static str,
    ip: [u8; 4],
    segment: &str,
) -> Result<(Identity, UdpSocket)> {
    let c = RealCrypto;
    let mut secret = [0u8; 32];
    crypto::os_rng().fill_bytes(&mut secret);
    let now = unix_nanos() / 1_000_000_000;
    let cert = ca.issue(
        &c,
        ca_seed,
        NodeCertParams {
            name: name.into(),
            addresses: vec![OverlayAddr::V4(ip, 10)],
            segments: vec![segment.into()],
            static_public_key: c.x25519_public_key(&secret),
            advert_key: proto::cert::advert_public_key(&c, &secret),
            not_before: now - 60,
            not_after: now + 86_400,
        },
    )?;
    let id = Identity::new(&c, cert, secret)?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(2)))?;
    Ok((id, sock))
}

/// Runs the demo; `packets` each way after the handshake.
pub fn run(packets: u32) -> Result<()> {
    let mut n = 0u32;
    let c = RealCrypto;
    let mut rng = crypto::os_rng();
    println!("meshd handshake demo: two nodes, real UDP on 127.0.0.1, Noise IKpsk2 + ML-KEM-768\n");

    let mut ca_seed = [0u8; 32];
    rng.fill_bytes(&mut ca_seed);
    let now = unix_nanos() / 1_000_000_000;
    let ca_cert = cert::create_ca(&c, "demo-ca", &ca_seed, now - 60, now + 30 * 86_400)?;
    let ca = TrustedCa::new(&c, ca_cert, now)?;
    step(
        &mut n,
        format!(
            "created mesh CA 'demo-ca' (Ed25519), fingerprint {}",
            &hex(ca.fingerprint())[..16]
        ),
    );

    let (alpha_id, alpha_sock) = node(&ca, &ca_seed, "alpha", [100, 64, 0, 1], "web")?;
    let (beta_id, beta_sock) = node(&ca, &ca_seed, "beta", [100, 64, 0, 2], "db")?;
    for id in [&alpha_id, &beta_id] {
        let b = id.certificate().body();
        step(
            &mut n,
            format!(
                "issued certificate '{}': overlay {}, segment {}, {} bytes",
                b.name,
                b.addresses[0],
                b.segments[0],
                id.certificate().as_bytes().len()
            ),
        );
    }
    let (alpha_addr, beta_addr): (SocketAddr, SocketAddr) =
        (alpha_sock.local_addr()?, beta_sock.local_addr()?);
    step(
        &mut n,
        format!("alpha listens on udp {alpha_addr}, beta on udp {beta_addr}"),
    );

    let crypto: Arc<dyn Crypto> = Arc::new(RealCrypto);
    let (a_pub, b_pub) = (*alpha_id.static_public(), *beta_id.static_public());
    let mut alpha_ep = Endpoint::new(
        crypto.clone(),
        ca.clone(),
        alpha_id,
        EndpointConfig::default(),
        Box::new(crypto::os_rng()),
    );
    let mut beta_ep = Endpoint::new(
        crypto,
        ca.clone(),
        beta_id,
        EndpointConfig::default(),
        Box::new(crypto::os_rng()),
    );
    let pa = alpha_ep.add_peer(b_pub, Some(beta_addr), None);
    let pb = beta_ep.add_peer(a_pub, Some(alpha_addr), None);
    let mut alpha = Node {
        name: "alpha",
        ip: [100, 64, 0, 1],
        ep: alpha_ep,
        sock: alpha_sock,
        peer: pa,
        received: 0,
        received_bytes: 0,
    };
    let mut beta = Node {
        name: "beta",
        ip: [100, 64, 0, 2],
        ep: beta_ep,
        sock: beta_sock,
        peer: pb,
        received: 0,
        received_bytes: 0,
    };

    // First packet: no session yet, so it is queued and a handshake starts.
    let started = Instant::now();
    let pkt = ipv4(alpha.ip, beta.ip, 0, 84);
    let mut buf = vec![0u8; 2048];
    buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt);
    let out = alpha.ep.send(
        Instant::now(),
        unix_nanos(),
        alpha.peer,
        &mut buf,
        pkt.len(),
    );
    step(
        &mut n,
        format!("alpha: first packet for 100.64.0.2 -> {out:?}; starting the hybrid handshake"),
    );
    flush(&mut alpha, true, &mut n)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while beta.received == 0 {
        if Instant::now() > deadline {
            return Err("handshake did not complete within 5 s".into());
        }
        receive(&mut beta, true, &mut n)?;
        receive(&mut alpha, true, &mut n)?;
    }
    let hs_time = started.elapsed();
    step(&mut n, format!("handshake + first packet delivered in {:.2} ms (1 round trip; session keys depend on X25519 and ML-KEM-768)", hs_time.as_secs_f64() * 1e3));

    // Bulk exchange, both ways, verified byte for byte.
    let bulk_start = Instant::now();
    let mut sent = 0u32;
    let mut sendbuf = vec![0u8; 1400 + TRANSPORT_OVERHEAD];
    while sent < packets {
        let burst = 64.min(packets - sent);
        for i in 0..burst {
            let (aip, bip) = (alpha.ip, beta.ip);
            for (from, to) in [(&mut alpha, bip), (&mut beta, aip)] {
                let p = ipv4(from.ip, to, sent + i + 1, 1400);
                sendbuf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + p.len()].copy_from_slice(&p);
                match from.ep.send(
                    Instant::now(),
                    unix_nanos(),
                    from.peer,
                    &mut sendbuf,
                    p.len(),
                ) {
                    SendOutcome::Send { dst, len } => {
                        from.sock.send_to(&sendbuf[..len], dst)?;
                    }
                    other => {
                        return Err(
                            format!("{}: unexpected send outcome {other:?}", from.name).into()
                        )
                    }
                }
                flush(from, false, &mut n)?;
            }
        }
        sent += burst;
        let until = Instant::now() + Duration::from_secs(2);
        while (alpha.received < u64::from(sent) || beta.received < u64::from(sent) + 1)
            && Instant::now() < until
        {
            receive(&mut beta, false, &mut n)?;
            receive(&mut alpha, false, &mut n)?;
        }
    }
    let secs = bulk_start.elapsed().as_secs_f64();
    step(&mut n, format!(
        "exchanged {} packets of 1400 bytes each way in {:.1} ms: alpha got {}, beta got {} (all verified byte for byte)",
        packets, secs * 1e3, alpha.received, beta.received - 1
    ));

    // Attacks on the live session.
    let p = ipv4(alpha.ip, beta.ip, 999_999, 200);
    sendbuf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + p.len()].copy_from_slice(&p);
    if let SendOutcome::Send { dst, len } = alpha.ep.send(
        Instant::now(),
        unix_nanos(),
        alpha.peer,
        &mut sendbuf,
        p.len(),
    ) {
        let mut tampered = sendbuf[..len].to_vec();
        tampered[40] ^= 0x01;
        step(
            &mut n,
            "attacker flips one bit of a packet in flight".into(),
        );
        alpha.sock.send_to(&tampered, dst)?;
        settle(&mut beta, &mut alpha, &mut n)?;
        step(&mut n, "the genuine packet arrives".into());
        alpha.sock.send_to(&sendbuf[..len], dst)?;
        settle(&mut beta, &mut alpha, &mut n)?;
        step(&mut n, "attacker replays it".into());
        alpha.sock.send_to(&sendbuf[..len], dst)?;
        settle(&mut beta, &mut alpha, &mut n)?;
    }
    step(&mut n, "attacker sends random bytes".into());
    let mut junk = vec![0u8; 300];
    rng.fill_bytes(&mut junk);
    junk[0] = 1;
    alpha.sock.send_to(&junk, beta.sock.local_addr()?)?;
    settle(&mut beta, &mut alpha, &mut n)?;

    println!("\nsummary");
    println!(
        "  {:<8} {:>10} {:>12} {:>10} {:>10}",
        "node", "rx pkts", "rx bytes", "handshakes", "drops"
    );
    for node in [&alpha, &beta] {
        let s = node.ep.stats();
        println!(
            "  {:<8} {:>10} {:>12} {:>10} {:>10}",
            node.name,
            node.received,
            node.received_bytes,
            s.handshakes_completed,
            s.total_drops()
        );
    }
    let s = beta.ep.stats();
    for r in DropReason::ALL {
        if s.drops(r) > 0 {
            println!("  beta dropped {} packet(s): {}", s.drops(r), r);
        }
    }
    let expected = [
        DropReason::Decrypt,
        DropReason::Replay,
        DropReason::Malformed,
    ];
    if expected.iter().any(|r| s.drops(*r) == 0) {
        return Err("an attack packet was not dropped".into());
    }
    if alpha.received != u64::from(packets) || beta.received != u64::from(packets) + 2 {
        return Err(format!(
            "lost packets: alpha {} beta {}",
            alpha.received, beta.received
        )
        .into());
    }
    println!("\ndemo passed: hybrid post-quantum session up, every packet delivered, every attack dropped and counted.");
    Ok(())
}

fn settle(a: &mut Node, b: &mut Node, n: &mut u32) -> Result<()> {
    let until = Instant::now() + Duration::from_millis(50);
    while Instant::now() < until {
        receive(a, true, n)?;
        receive(b, true, n)?;
    }
    Ok(())
}
