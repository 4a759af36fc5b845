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
use proto::wire::relay::RelayHeader;
use proto::wire::{MessageKind, TransportHeader, TRANSPORT_HEADER_LEN};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::insecure::InsecureCrypto;

mod deep;

pub use deep::{certificate_validation, policy_filter, transport_sequence};

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

/// Certificate decoder and validation: never panics; whatever decodes
/// re-encodes to the same bytes, and is validated against the fixture CA
/// ([`certificate_validation`]).
pub fn certificate(data: &[u8]) {
    if let Ok(cert) = Certificate::from_bytes(data) {
        assert_eq!(
            cert.as_bytes(),
            data,
            "decoded certificate must be canonical"
        );
        let again = Certificate::from_armor(&cert.to_armor()).expect("armour round trip");
        assert_eq!(again, cert);
        certificate_validation(&cert);
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

/// Two endpoints, alice and bob, after a real handshake in memory, each
/// with the other as a configured peer at its address.
struct Pair {
    alice: Endpoint,
    bob: Endpoint,
    to_bob: proto::endpoint::PeerId,
    base: Instant,
}

const ALICE: ([u8; 4], u16) = ([198, 18, 0, 1], 51820);
const BOB: ([u8; 4], u16) = ([198, 18, 0, 2], 51820);
/// Record flag (top bits of the length's high byte): the bytes go to bob
/// as a datagram as they are, not sealed (relay headers, handshakes,
/// anything mid-session).
const RECORD_RAW: u8 = 0x80;
/// Record flag: sealed in the session, then wrapped in a relay header
/// (alice to bob), as a relay hands it on. (Bob takes relayed datagrams
/// only from neighbours it holds a session with: alice is its one.)
const RECORD_RELAYED: u8 = 0x40;

impl Pair {
    fn new() -> Self {
        let f = fixture();
        let crypto: Arc<dyn Crypto> = Arc::new(InsecureCrypto);
        let mk = |id: &Identity, defer_signature_checks| {
            Endpoint::new(
                crypto.clone(),
                f.ca.clone(),
                id.clone(),
                EndpointConfig {
                    defer_signature_checks,
                    ..EndpointConfig::default()
                },
                Box::new(rng()),
            )
        };
        // Bob checks signatures as meshd does (queued, run as plans in
        // `exchange`); alice inline.
        let (mut alice, mut bob) = (mk(&f.alice, false), mk(&f.bob, true));
        let base = Instant::now();
        let to_bob = alice
            .add_peer_certificate(base, NOW_NANOS, f.bob.certificate(), Some(BOB.into()), None)
            .expect("fixture peer");
        bob.add_peer_certificate(
            base,
            NOW_NANOS,
            f.alice.certificate(),
            Some(ALICE.into()),
            None,
        )
        .expect("fixture peer");
        alice.initiate(base, NOW_NANOS, to_bob);
        let mut pair = Self {
            alice,
            bob,
            to_bob,
            base,
        };
        pair.exchange(base, NOW_NANOS);
        let up = (pair.alice.peer(to_bob, base)).is_some_and(|i| i.has_session);
        assert!(up, "the fixture handshake completes");
        pair
    }

    /// `plain` sealed by alice for bob, from alice's address; `relayed`:
    /// wrapped in a relay header.
    fn sealed(&mut self, now: Instant, unix: u64, plain: &[u8], relayed: bool) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; plain.len() + proto::wire::TRANSPORT_OVERHEAD + 20];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + plain.len()].copy_from_slice(plain);
        let proto::endpoint::SendOutcome::Send { dst, len } =
            self.alice
                .send(now, unix, self.to_bob, &mut buf, plain.len())
        else {
            return None;
        };
        assert_eq!(dst, SocketAddr::from(BOB));
        buf.truncate(len);
        if !relayed {
            return Some(buf);
        }
        let h = RelayHeader::new(self.alice.node_id(), self.bob.node_id());
        Some(h.wrap(&buf))
    }

    /// Delivers what each side has to send to the other until both are
    /// quiet (bounded), checking what they send.
    fn exchange(&mut self, now: Instant, unix: u64) {
        for _ in 0..64 {
            let mut quiet = true;
            for a_to_b in [true, false] {
                let (from, to, src) = if a_to_b {
                    (&mut self.alice, &mut self.bob, SocketAddr::from(ALICE))
                } else {
                    (&mut self.bob, &mut self.alice, SocketAddr::from(BOB))
                };
                let mut out = Vec::new();
                while let Some(t) = from.poll_transmit() {
                    // Never larger than a jumbo underlay (path MTU probes).
                    assert!(t.payload.len() <= 9000 + 64, "{} bytes", t.payload.len());
                    out.push(t.payload);
                }
                while from.poll_event().is_some() {}
                for mut d in out {
                    quiet = false;
                    let r = to.handle_datagram(now, unix, src, &mut d);
                    if let Received::Data { len, .. } = r {
                        assert!(TRANSPORT_HEADER_LEN + len <= d.len());
                    }
                }
                while let Some(plan) = to.take_checks(proto::endpoint::CHECK_BATCH) {
                    quiet = false;
                    assert!(plan.len() <= proto::endpoint::CHECK_BATCH);
                    to.finish_checks(now, unix, plan.run());
                }
            }
            if quiet {
                return;
            }
        }
    }
}

/// Two endpoints with an established session, alice sending bob arbitrary
/// plaintexts in it: control messages of every kind (link state,
/// certificates, bundles, probes, path MTU, observed addresses, punches,
/// member lookups) reach their handlers without guessing a session index.
/// Input: records of `[tens of milliseconds to advance: u8][length: u16
/// le, its top two bits flags][plaintext]`; both sides answer, and their
/// timers run between records. Flags: [`RECORD_RAW`] delivers the bytes
/// to bob unsealed (relay headers and whatever else a datagram may hold),
/// [`RECORD_RELAYED`] seals them and delivers them through a relay.
pub fn session(data: &[u8]) {
    session_run(data);
}

/// [`session`]'s body; how many of alice's plaintexts bob took as control
/// messages.
fn session_run(data: &[u8]) -> usize {
    let mut p = Pair::new();
    let mut controls = 0;
    let mut rest = data;
    let mut at = Duration::ZERO;
    while rest.len() >= 3 {
        at += Duration::from_millis(u64::from(rest[0]) * 10);
        let flags = rest[2] & (RECORD_RAW | RECORD_RELAYED);
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2] & !flags])).min(rest.len() - 3);
        let plain = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let now = p.base + at;
        let unix = NOW_NANOS + at.as_nanos() as u64;
        if flags & RECORD_RAW != 0 {
            let mut d = plain.to_vec();
            let r = p
                .bob
                .handle_datagram(now, unix, SocketAddr::from(ALICE), &mut d);
            controls += usize::from(matches!(r, Received::Control { .. }));
        } else if let Some(mut d) = p.sealed(now, unix, plain, flags & RECORD_RELAYED != 0) {
            let r = p
                .bob
                .handle_datagram(now, unix, SocketAddr::from(ALICE), &mut d);
            controls += usize::from(matches!(r, Received::Control { .. }));
        }
        p.alice.handle_timeout(now, unix);
        p.bob.handle_timeout(now, unix);
        p.exchange(now, unix);
        assert!(p.bob.reassembly_len() <= EndpointConfig::default().reassembly.total);
    }
    controls
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
    // Every kind of control message, alone (control) and all in one
    // session (session).
    let mut session = Vec::new();
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
        Control::LinkStateAck(proto::control::Ack {
            sync: true,
            entries: vec![(proto::wire::NodeId(1), 2)],
        }),
        Control::LinkStateSummary(proto::control::Summary {
            entries: vec![(proto::wire::NodeId(1), 2), (proto::wire::NodeId(3), 1)],
        }),
        // Alice accuses node 5 (the insecure provider's signatures always
        // verify, so it reaches the book of accusations).
        Control::Accusation(proto::control::Accusation {
            accuser: proto::wire::NodeId::of(f.alice.static_public()),
            accused: proto::wire::NodeId(5),
            seq: 1,
            since_unix: NOW_SECS,
            expires_unix: NOW_SECS + 60,
            withdrawn: false,
            scenario: "scan".into(),
            cert: f.alice.certificate().as_bytes().to_vec(),
            signature: [3; 64],
        }),
    ] {
        let bytes = m.encode();
        // Each control message alone through a live session, 100 ms apart.
        let mut record = vec![10];
        record.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        record.extend_from_slice(&bytes);
        session.extend_from_slice(&record);
        out.push(("control", bytes));
    }
    out.push(("session", session));
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
    out.push(("packet_filter", v6.clone()));
    // A policy with segments, ports, ICMP types, a deny and an enclave,
    // then packets both ways; and the same packets under no rules.
    let mut reply = tcp.clone();
    reply[12..16].copy_from_slice(&[100, 64, 0, 2]);
    reply[16..20].copy_from_slice(&[100, 64, 0, 1]);
    reply[20..24].copy_from_slice(&[0x15, 0x38, 0x9c, 0x40]);
    let packets: Vec<u8> = [&tcp, &reply, &out.last().expect("seeds").1, &v6]
        .iter()
        .flat_map(|p| std::iter::once(p.len() as u8).chain(p.iter().copied()))
        .collect();
    let icmp_seed = out
        .iter()
        .rfind(|(t, d)| *t == "packet_filter" && d.len() == 56)
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    for policy in [POLICY_SEED, ""] {
        let mut seed = policy.as_bytes().to_vec();
        seed.push(0);
        seed.extend_from_slice(&packets);
        seed.push(icmp_seed.len() as u8);
        seed.extend_from_slice(&icmp_seed);
        out.push(("policy_filter", seed));
    }
    // Counters: in order, a replay, reordering, jumps past the window and
    // old ones after them.
    let mut seq = vec![0x80, 0x80, 0, 1, 0x85, 3, 2, 2];
    let past = proto::replay::WINDOW_SIZE as usize / 128 + 2;
    seq.extend(std::iter::repeat_n(0xff, past));
    seq.extend_from_slice(&[0x7f, 0x40, 0, 0x81, 1, 1]);
    out.push(("transport_sequence", seq));
    out.push(("session", relay_seed()));
    out
}

/// A `session` input through the relay paths: a probe and a link-state
/// acknowledgement relayed to bob (opened behind their relay), then raw
/// relay datagrams bob is asked to forward: to alice (whom it reaches
/// directly), to a node it does not know, and one whose TTL ran out.
fn relay_seed() -> Vec<u8> {
    use proto::control::{Ack, Control};
    let f = fixture();
    let alice = proto::wire::NodeId::of(f.alice.static_public());
    let bob = proto::wire::NodeId::of(f.bob.static_public());
    let mut seed = Vec::new();
    let mut record = |flags: u8, bytes: &[u8]| {
        let len = (bytes.len() as u16).to_le_bytes();
        seed.extend_from_slice(&[10, len[0], len[1] | flags]);
        seed.extend_from_slice(bytes);
    };
    record(RECORD_RELAYED, &Control::Probe { seq: 7 }.encode());
    let ack = Control::LinkStateAck(Ack {
        sync: false,
        entries: vec![(alice, 1)],
    });
    record(RECORD_RELAYED, &ack.encode());
    // An inner transport datagram's worth of bytes (bob never opens it).
    let inner = [&[4u8, 0, 0, 0][..], &[0x5a; 44]].concat();
    for (dst, ttl) in [(alice, 4), (proto::wire::NodeId(77), 4), (alice, 0)] {
        let mut h = RelayHeader::new(bob, dst);
        h.ttl = ttl;
        record(RECORD_RAW, &h.wrap(&inner));
    }
    seed
}

/// The policy of the `policy_filter` seed.
const POLICY_SEED: &str = r#"enclaves = ["ops"]

[[rule]]
action = "allow"
from = "segment:web"
to = "segment:db"
proto = "tcp"
ports = ["5432", "8000-8100"]

[[rule]]
action = "allow"
from = "any"
to = "any"
proto = "icmp"
icmp-types = ["echo-request", "echo-reply"]

[[rule]]
action = "deny"
from = "node:bob"
to = "cidr:100.64.0.0/10"
proto = "udp"
"#;

/// Runs the body of the target called `name`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "certificate" => certificate(data),
        "transport" => transport(data),
        "initiation" => initiation(data),
        "response" => response(data),
        "reassembly" => reassembly(data),
        "endpoint" => endpoint(data),
        "session" => session(data),
        "bundle" => bundle(data),
        "control" => control(data),
        "packet_filter" => packet_filter(data),
        "policy_filter" => policy_filter(data),
        "transport_sequence" => transport_sequence(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// Every target name.
pub const TARGETS: [&str; 12] = [
    "certificate",
    "transport",
    "initiation",
    "response",
    "reassembly",
    "endpoint",
    "session",
    "bundle",
    "control",
    "packet_filter",
    "policy_filter",
    "transport_sequence",
];

#[cfg(test)]
mod tests {
    /// The session seed reaches bob's control handlers, message by
    /// message, through the fixture's live session.
    #[test]
    fn the_policy_seed_parses_and_the_sequence_seed_crosses_the_window() {
        let policy = proto::policy::Policy::parse(super::POLICY_SEED).unwrap();
        assert_eq!(policy.compile().rules().len(), 3);
        let seeds = super::seeds();
        let seq = &seeds
            .iter()
            .find(|(t, _)| *t == "transport_sequence")
            .unwrap()
            .1;
        let sealed: u64 = (seq.iter())
            .filter(|b| **b >= 0x80)
            .map(|b| u64::from(b - 0x7f))
            .sum();
        assert!(sealed > proto::replay::WINDOW_SIZE + 0x7f);
        super::transport_sequence(seq);
        assert_eq!(
            seeds.iter().filter(|(t, _)| *t == "policy_filter").count(),
            2
        );
    }

    #[test]
    fn the_session_seed_is_taken_as_control_messages() {
        let seeds = super::seeds();
        let session = &seeds.iter().find(|(t, _)| *t == "session").unwrap().1;
        let controls = seeds.iter().filter(|(t, _)| *t == "control").count();
        assert_eq!(super::session_run(session), controls);
        // The relayed probe and acknowledgement are opened behind their
        // relay; the raw relay datagrams are forwarded or dropped.
        assert_eq!(super::session_run(&super::relay_seed()), 2);
    }
}
