//! Fuzz-target bodies, shared by `fuzz/` (cargo-fuzz, nightly) and the
//! corpus-replay test (stable), so CI runs every committed input.
//!
//! Each body takes arbitrary bytes, must never panic, and asserts the
//! invariants of what it exercises. They use [`InsecureCrypto`] so that
//! inputs get past MACs, tags and signatures to the parsers behind them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::cert::{create_ca, Certificate, NodeCertParams, OverlayAddr, TrustedCa};
use proto::cookie::MacVerdict;
use proto::endpoint::{Endpoint, EndpointConfig, Received};
use proto::fragment::{
    fragment, FragmentView, Reassembler, Reassembly, ReassemblyLimits, VerifiedFragment,
    MAX_MESSAGE_LEN,
};
use proto::handshake::{self, message2_len, Identity, ReplayGuard};
use proto::provider::{Crypto, Suite};
use proto::session::{Session, SessionKeys};
use proto::wire::{MessageKind, TransportHeader, TRANSPORT_HEADER_LEN};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::insecure::InsecureCrypto;

/// Wall-clock time the fixtures live at (Unix seconds).
pub const NOW_SECS: u64 = 1_800_000_000;
const NOW_NANOS: u64 = NOW_SECS * 1_000_000_000;

/// A CA and two node identities under the insecure provider.
pub struct Fixture {
    /// The CA.
    pub ca: TrustedCa,
    /// The initiator.
    pub alice: Identity,
    /// The responder.
    pub bob: Identity,
}

fn node(ca: &TrustedCa, name: &str, ip: [u8; 4], secret: [u8; 32]) -> Identity {
    let c = InsecureCrypto;
    let cert = ca
        .issue(
            &c,
            &[1; 32],
            NodeCertParams {
                name: name.into(),
                addresses: vec![OverlayAddr::V4(ip, 10)],
                segments: vec!["fuzz".into()],
                static_public_key: c.x25519_public_key(&secret),
                advert_key: proto::cert::advert_public_key(&c, &secret),
                not_before: NOW_SECS - 10,
                not_after: NOW_SECS + 3600,
            },
        )
        .expect("fixture certificate");
    Identity::new(&c, cert, secret).expect("fixture identity")
}

/// Builds the fixture (deterministic).
pub fn fixture() -> Fixture {
    let c = InsecureCrypto;
    let ca_cert =
        create_ca(&c, "fuzz-ca", &[1; 32], NOW_SECS - 100, NOW_SECS + 86_400).expect("fixture CA");
    let ca = TrustedCa::new(&c, ca_cert, NOW_SECS).expect("fixture CA trusted");
    let alice = node(&ca, "alice", [100, 64, 0, 1], [2; 32]);
    let bob = node(&ca, "bob", [100, 64, 0, 2], [3; 32]);
    Fixture { ca, alice, bob }
}

/// The fuzz fixtures' session: zero keys, ChaCha20-Poly1305, indices
/// (ours, theirs).
fn fixture_session(local_index: u32, remote_index: u32, initiator: bool) -> Session {
    let keys = SessionKeys {
        local_index,
        remote_index,
        send: [0; 32],
        recv: [0; 32],
        suite: Suite::ChaCha20Poly1305,
    };
    Session::new(&InsecureCrypto, &keys, Instant::now(), initiator)
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

/// Certificate decoder: never panics; whatever decodes re-encodes to the same bytes.
pub fn certificate(data: &[u8]) {
    if let Ok(cert) = Certificate::from_bytes(data) {
        assert_eq!(
            cert.as_bytes(),
            data,
            "decoded certificate must be canonical"
        );
        let again = Certificate::from_armor(&cert.to_armor()).expect("armour round trip");
        assert_eq!(again, cert);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Certificate::from_armor(text);
    }
}

/// Bundle decoder and verifier: never panics; whatever decodes keeps its
/// bytes; verification (signature, issuer, signer, content) only errs.
pub fn bundle(data: &[u8]) {
    use proto::bundle::Bundle;
    if let Ok(b) = Bundle::from_bytes(data) {
        assert_eq!(b.as_bytes(), data, "a bundle keeps its encoding");
        let f = fixture();
        let _ = b.verify(&InsecureCrypto, &f.ca, NOW_SECS);
        let again = Bundle::from_armor(&b.to_armor()).expect("armour round trip");
        assert_eq!(again, b);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Bundle::from_armor(text);
    }
}

/// Control-message decoder: never panics; whatever decodes re-encodes to
/// exactly the same bytes (lengths and reserved bits are all checked).
pub fn control(data: &[u8]) {
    use proto::control::Control;
    if let Ok(m) = Control::decode(data) {
        assert_eq!(m.encode(), data, "control messages are canonical");
    }
}

/// The policy filter's packet parser and a decision with connection
/// tracking, both directions: never panics.
pub fn packet_filter(data: &[u8]) {
    use proto::filter::{Direction, Filter, FilterLimits};
    use proto::policy::{Policy, Subject};
    let Ok(pkt) = proto::wire::ip::Packet::parse(data) else {
        return;
    };
    let policy = Arc::new(
        Policy::parse(
            "[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"tcp\"\n",
        )
        .expect("fixture policy")
        .compile(),
    );
    let mut f = Filter::new(FilterLimits {
        max_flows: 4,
        max_fragments: 4,
        max_unreplied_per_remote: 2,
    });
    f.set_policy(Some(policy.clone()));
    let t = Instant::now();
    let segs = vec!["fuzz".to_string()];
    let id = |addr, _| {
        policy.identity(&Subject {
            name: "n",
            segments: &segs,
            addr,
        })
    };
    let out = f.check(t, Direction::Out, &pkt, id);
    let back = f.check(t, Direction::In, &pkt, id);
    // A TCP packet the policy allows out is tracked; nothing else crashes.
    if pkt.proto == 6 && pkt.quoted.is_none() && pkt.fragment.is_none_or(|fr| fr.first) {
        assert!(out.is_ok(), "allow-all TCP refused: {pkt:?}");
        assert!(back.is_ok(), "inbound TCP refused: {pkt:?}");
    }
}

/// Transport header parser and session open.
pub fn transport(data: &[u8]) {
    if let Ok(h) = TransportHeader::parse(data) {
        let mut out = [0u8; 16];
        h.write(&mut out);
        assert_eq!(&out[4..16], &data[4..16]);
    }
    let mut s = fixture_session(7, 9, true);
    let mut buf = data.to_vec();
    if let Ok(n) = s.open(&mut buf) {
        assert_eq!(n + 32, data.len());
        // A second open of the same packet is a replay.
        let mut again = data.to_vec();
        assert!(s.open(&mut again).is_err());
    }
}

/// Message 1 as the responder reads it.
pub fn initiation(data: &[u8]) {
    let c = InsecureCrypto;
    let f = fixture();
    let mut msg = data.to_vec();
    let sender = if data.len() >= 84 {
        u32::from_le_bytes([data[80], data[81], data[82], data[83]])
    } else {
        0
    };
    let mut guard = ReplayGuard::new(4);
    let responder = handshake::Responder {
        crypto: &c,
        ca: &f.ca,
        identity: &f.bob,
    };
    if let Ok((reply, out)) =
        responder.respond(&mut guard, &mut msg, (sender, 5), NOW_NANOS, &mut rng())
    {
        assert_eq!(
            reply.len(),
            message2_len(f.bob.certificate().as_bytes().len())
        );
        assert_eq!(out.peer_index, sender);
        // The same message again is a replay.
        let mut again = data.to_vec();
        assert!(responder
            .respond(
                &mut guard,
                &mut again,
                (sender, 6),
                NOW_NANOS + 1_000_000_000,
                &mut rng()
            )
            .is_err());
    }
}

/// Message 2 as the initiator reads it.
pub fn response(data: &[u8]) {
    let c = InsecureCrypto;
    let f = fixture();
    let (hs, _) = handshake::initiate(
        &c,
        &f.alice,
        f.bob.static_public(),
        None,
        11,
        NOW_NANOS,
        &mut rng(),
    )
    .expect("fixture initiation");
    let mut msg = data.to_vec();
    let sender = if data.len() >= 1124 {
        u32::from_le_bytes([data[1120], data[1121], data[1122], data[1123]])
    } else {
        0
    };
    if let Ok(out) = hs.read_response(&c, &f.ca, &f.alice, &mut msg, sender, NOW_SECS) {
        assert_eq!(out.peer_cert.public_key(), f.bob.static_public());
    }
}

/// Fragment parsing and reassembly. Input: records of
/// `[source: u8][length: u16 le][datagram]`.
pub fn reassembly(data: &[u8]) {
    let limits = ReassemblyLimits {
        per_source: 2,
        total: 4,
        timeout: Duration::from_secs(5),
    };
    let mut r = Reassembler::new(limits);
    let base = Instant::now();
    let mut rest = data;
    let mut step = 0u64;
    while rest.len() >= 3 {
        let src = SocketAddr::from(([198, 18, 0, rest[0] % 8], 51820));
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let d = &rest[3..3 + len];
        rest = &rest[3 + len..];
        step += 1;
        if let Ok(v) = FragmentView::new_checked(d) {
            assert!(v.index() < v.count());
            assert!(v.payload().len() <= proto::wire::MAX_FRAGMENT_PAYLOAD);
            if let Some(vf) = VerifiedFragment::new(v, MacVerdict::Valid) {
                if let Reassembly::Complete(m) =
                    r.insert(base + Duration::from_millis(step * 100), src, vf)
                {
                    assert!(!m.is_empty() && m.len() <= MAX_MESSAGE_LEN);
                }
            }
        }
        assert!(r.len() <= limits.total);
        assert!(r.buffered_bytes() <= limits.total * MAX_MESSAGE_LEN);
    }
}

/// The whole endpoint state machine fed arbitrary datagrams. Input: records
/// of `[length: u16 le][datagram]`.
pub fn endpoint(data: &[u8]) {
    let f = fixture();
    let crypto: Arc<dyn Crypto> = Arc::new(InsecureCrypto);
    let mut ep = Endpoint::new(
        crypto,
        f.ca.clone(),
        f.bob.clone(),
        EndpointConfig::default(),
        Box::new(rng()),
    );
    let src = SocketAddr::from(([198, 18, 0, 1], 51820));
    let base = Instant::now();
    let mut rest = data;
    let mut step = 0u64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut d = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        step += 1;
        let now = base + Duration::from_millis(step * 60);
        match ep.handle_datagram(now, NOW_NANOS + step * 60_000_000, src, &mut d) {
            Received::Data { len, .. } => assert!(TRANSPORT_HEADER_LEN + len <= d.len()),
            Received::Forward { len, .. } => assert!(len <= d.len()),
            Received::Keepalive { .. }
            | Received::Handshake
            | Received::Control { .. }
            | Received::Dropped(_) => {}
        }
        ep.handle_timeout(now, NOW_NANOS);
        while let Some(t) = ep.poll_transmit() {
            // Handshake datagrams fit 1232 bytes, plus a relay header when relayed.
            let limit = if t.payload[0] == 5 { 1232 + 20 } else { 1232 };
            assert!(t.payload.len() <= limit || t.payload[0] == 4);
        }
        while ep.poll_event().is_some() {}
        assert!(ep.reassembly_len() <= EndpointConfig::default().reassembly.total);
    }
}

/// Valid inputs for each target, for the committed seed corpora.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let c = InsecureCrypto;
    let f = fixture();
    let mut out = vec![
        ("certificate", f.alice.certificate().as_bytes().to_vec()),
        ("certificate", f.ca.certificate().as_bytes().to_vec()),
        ("certificate", f.bob.certificate().to_armor().into_bytes()),
    ];
    // Message 1 and 2.
    let (_, m1) = handshake::initiate(
        &c,
        &f.alice,
        f.bob.static_public(),
        None,
        11,
        NOW_NANOS,
        &mut rng(),
    )
    .expect("fixture initiation");
    out.push(("initiation", m1.clone()));
    let mut m1c = m1.clone();
    let mut guard = ReplayGuard::new(4);
    let (m2, out2) = handshake::Responder {
        crypto: &c,
        ca: &f.ca,
        identity: &f.bob,
    }
    .respond(&mut guard, &mut m1c, (11, 5), NOW_NANOS, &mut rng())
    .expect("fixture response");
    out.push(("response", m2.clone()));
    // Fragments of both, as reassembly records.
    let mut rec = Vec::new();
    for (kind, s, r, m) in [
        (MessageKind::Initiation, 11, 0, &m1),
        (MessageKind::Response, 5, 11, &m2),
    ] {
        for frag in fragment(&c, kind, s, r, m, &[0; 32], None) {
            rec.push(1u8);
            rec.extend_from_slice(&(frag.len() as u16).to_le_bytes());
            rec.extend_from_slice(&frag);
        }
    }
    out.push(("reassembly", rec));
    // A transport packet for the fixture session (indices 7 and 9).
    let mut s = fixture_session(9, 7, false);
    let mut pkt = vec![0u8; 20 + 32];
    pkt[16] = 0x45;
    let n = s.seal(&mut pkt, 20).expect("seal");
    pkt.truncate(n);
    out.push(("transport", pkt));
    // Endpoint: the fragments of message 1 as endpoint records.
    let mut rec = Vec::new();
    let mac1 = proto::cookie::mac1_key(&c, f.bob.static_public());
    for frag in fragment(&c, MessageKind::Initiation, 11, 0, &m1, &mac1, None) {
        rec.extend_from_slice(&(frag.len() as u16).to_le_bytes());
        rec.extend_from_slice(&frag);
    }
    let _ = out2;
    out.push(("endpoint", rec));
    // A signed revocation list and a policy bundle under the fixture CA.
    let mut list = proto::bundle::RevocationList::default();
    list.revoke(&c, f.alice.certificate());
    for (kind, content) in [
        (proto::bundle::BundleKind::Revocation, list.encode()),
        (
            proto::bundle::BundleKind::Policy,
            b"[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n".to_vec(),
        ),
    ] {
        let b = proto::bundle::Bundle::sign(&c, &f.ca, &[1; 32], kind, 1, NOW_SECS, content)
            .expect("fixture bundle");
        out.push(("bundle", b.as_bytes().to_vec()));
    }
    // Every kind of control message.
    use proto::control::{Advert, Control, LinkEntry};
    for m in [
        Control::Probe { seq: 1 },
        Control::ProbeReply { seq: 1 },
        Control::SyncRequest,
        Control::LinkState(Advert {
            origin: proto::wire::NodeId(1),
            seq: 2,
            stub: true,
            truncated: false,
            no_transit: true,
            links: vec![LinkEntry {
                neighbor: proto::wire::NodeId(3),
                rtt_us: 400,
                loss_permille: 0,
                settling: true,
            }],
            signature: [9; 64],
        }),
        Control::CertRequest {
            node: proto::wire::NodeId(4),
        },
        Control::Cert {
            bytes: vec![1; 200],
        },
        Control::MtuProbe { seq: 5, len: 64 },
        Control::MtuProbeReply { seq: 5 },
        Control::BundleOffer {
            kind: 1,
            version: 1,
            len: 2000,
        },
        Control::BundleRequest {
            kind: 2,
            version: 1,
            offset: 1024,
        },
        Control::BundleChunk {
            kind: 1,
            version: 1,
            offset: 0,
            total: 2000,
            data: vec![7; 100],
        },
        Control::Observed {
            addr: std::net::SocketAddr::from(([198, 18, 0, 7], 51820)),
        },
        Control::Punch {
            reply: false,
            varies: true,
            candidates: vec![std::net::SocketAddr::from(([198, 19, 1, 2], 51820))],
        },
        Control::Lookup(proto::control::Lookup::Name("beta".into())),
        Control::Lookup(proto::control::Lookup::Address(std::net::IpAddr::from([
            100, 64, 0, 9,
        ]))),
    ] {
        out.push(("control", m.encode()));
    }
    // Inner packets: TCP over IPv4, an ICMP error quoting UDP, IPv6 with a
    // hop-by-hop and a fragment header.
    let mut tcp = vec![
        0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 100, 64, 0, 1, 100, 64, 0, 2,
    ];
    tcp.extend_from_slice(&[0x9c, 0x40, 0x15, 0x38]);
    tcp.resize(40, 0);
    out.push(("packet_filter", tcp.clone()));
    let mut icmp = vec![
        0x45, 0, 0, 0, 0, 2, 0, 0, 64, 1, 0, 0, 100, 64, 0, 2, 100, 64, 0, 1,
    ];
    icmp.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
    let mut quoted = tcp.clone();
    quoted[9] = 17;
    icmp.extend_from_slice(&quoted[..28]);
    out.push(("packet_filter", icmp));
    let mut v6 = vec![0x60, 0, 0, 0, 0, 24, 0, 64];
    v6.extend_from_slice(&[0xfd; 32]);
    v6.extend_from_slice(&[44, 0, 0, 0, 0, 0, 0, 0]);
    v6.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 9]);
    v6.extend_from_slice(&[0x9c, 0x40, 0x15, 0x38, 0, 0, 0, 0]);
    out.push(("packet_filter", v6));
    out
}

/// Runs the body of the target called `name`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "certificate" => certificate(data),
        "transport" => transport(data),
        "initiation" => initiation(data),
        "response" => response(data),
        "reassembly" => reassembly(data),
        "endpoint" => endpoint(data),
        "bundle" => bundle(data),
        "control" => control(data),
        "packet_filter" => packet_filter(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// Every target name.
pub const TARGETS: [&str; 9] = [
    "certificate",
    "transport",
    "initiation",
    "response",
    "reassembly",
    "endpoint",
    "bundle",
    "control",
    "packet_filter",
];
