//! `cargo bench -p meshd-proto`: handshake rate (hybrid vs classical IK),
//! transport seal/open throughput, and a data packet through whole
//! endpoints (policy, path, counters, timers and the AEAD pass), and one
//! route computation at a relay and at a stub of a 10,000-node mesh.
//! Results and the machine are recorded in docs/benchmarks.md.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use crypto::insecure::FreeKem;
use crypto::RealCrypto;
use proto::cert::TrustedCa;
use proto::handshake::{self, Identity, ReplayGuard};
use proto::provider::Crypto;
use proto::session::{Session, SessionKeys};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

#[path = "../tests/common/mod.rs"]
mod common;

const C: &RealCrypto = &RealCrypto;
const NOW: u64 = common::NOW;

/// The integration tests' CA and two identities (static secrets [2; 32] and [3; 32]).
fn fixture() -> (TrustedCa, Identity, Identity, [u8; 32], [u8; 32]) {
    let mesh = common::Mesh::new(1);
    let (i, r) = (mesh.node("initiator", 2), mesh.node("responder", 3));
    (mesh.ca, i, r, [2; 32], [3; 32])
}

fn handshakes(c: &mut Criterion) {
    let (ca, i, r, si, sr) = fixture();
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut t = NOW * 1_000_000_000;
    // Both sides of one hybrid handshake, certificate checks included.
    // First contact: no cached static-static DH on either side.
    let one = |c: &dyn Crypto,
               t: u64,
               rng: &mut ChaCha20Rng,
               ss: Option<&[u8; 32]>,
               guard: &mut ReplayGuard| {
        let (hs, mut m1) = handshake::initiate(c, &i, r.static_public(), ss, 1, t, rng).unwrap();
        let (mut m2, _) = handshake::Responder {
            crypto: c,
            ca: &ca,
            identity: &r,
        }
        .respond(guard, &mut m1, (1, 2), t, rng)
        .unwrap();
        black_box(hs.read_response(c, &ca, &i, &mut m2, 2, NOW).unwrap());
    };
    g.bench_function("hybrid_first_contact", |b| {
        b.iter(|| {
            t += 60_000_000;
            one(C, t, &mut rng, None, &mut ReplayGuard::new(1));
        })
    });
    // The same code and bytes with ML-KEM made free: the classical-only
    // cost of this implementation (first contact).
    g.bench_function("same_code_kem_free_first_contact", |b| {
        b.iter(|| {
            t += 60_000_000;
            one(&FreeKem, t, &mut rng, None, &mut ReplayGuard::new(1));
        })
    });
    // Repeat handshake (rekey): static-static DH cached on both sides.
    let ss = handshake::static_static(C, &i, r.static_public()).unwrap();
    let mut guard = ReplayGuard::new(16);
    g.bench_function("hybrid_rekey", |b| {
        b.iter(|| {
            t += 60_000_000;
            one(C, t, &mut rng, Some(&ss), &mut guard);
        })
    });
    // Classical baseline: snow's Noise_IK with the same certificates as
    // payloads and the same certificate checks.
    let params: snow::params::NoiseParams = "Noise_IK_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
    let (ci, cr) = (
        i.certificate().as_bytes().to_vec(),
        r.certificate().as_bytes().to_vec(),
    );
    g.bench_function("classical_ik_snow", |b| {
        let mut buf = vec![0u8; 2048];
        let mut pl = vec![0u8; 2048];
        b.iter(|| {
            let mut hi = snow::Builder::new(params.clone())
                .local_private_key(&si)
                .unwrap()
                .remote_public_key(r.static_public())
                .unwrap()
                .build_initiator()
                .unwrap();
            let mut hr = snow::Builder::new(params.clone())
                .local_private_key(&sr)
                .unwrap()
                .build_responder()
                .unwrap();
            let n = hi.write_message(&ci, &mut buf).unwrap();
            let p = hr.read_message(&buf[..n], &mut pl).unwrap();
            let cert = proto::cert::Certificate::from_bytes(&pl[..p]).unwrap();
            ca.verify_node(C, &cert, NOW).unwrap();
            let n = hr.write_message(&cr, &mut buf).unwrap();
            let p = hi.read_message(&buf[..n], &mut pl).unwrap();
            let cert = proto::cert::Certificate::from_bytes(&pl[..p]).unwrap();
            ca.verify_node(C, &cert, NOW).unwrap();
            black_box(hi.into_transport_mode().unwrap());
            black_box(hr.into_transport_mode().unwrap());
        })
    });
    g.finish();

    let mut g = c.benchmark_group("mlkem768");
    let kp = C.kem_keypair(&[9; 64]);
    let (ct, _) = C.kem_encapsulate(&kp.encapsulation_key, &[8; 32]).unwrap();
    g.bench_function("keygen", |b| b.iter(|| black_box(C.kem_keypair(&[9; 64]))));
    g.bench_function("encapsulate", |b| {
        b.iter(|| black_box(C.kem_encapsulate(&kp.encapsulation_key, &[8; 32]).unwrap()))
    });
    g.bench_function("decapsulate", |b| {
        b.iter(|| black_box(C.kem_decapsulate(&kp.decapsulation_key, &ct)))
    });
    g.finish();
}

/// A session with fixed keys (`keys`: send, receive) and indices (ours,
/// theirs).
fn session(
    suite: proto::provider::Suite,
    (local_index, remote_index): (u32, u32),
    (send, recv): ([u8; 32], [u8; 32]),
    now: Instant,
    initiator: bool,
) -> Session {
    let keys = SessionKeys {
        local_index,
        remote_index,
        send,
        recv,
        suite,
    };
    Session::new(C, &keys, now, initiator)
}

fn transport(c: &mut Criterion) {
    use proto::provider::Suite;
    let mut g = c.benchmark_group("transport_1400");
    g.throughput(Throughput::Bytes(1400));
    let now = Instant::now();
    for (suite, seal_name, open_name) in [
        (Suite::ChaCha20Poly1305, "seal", "open"),
        (Suite::Aes256Gcm, "seal_aes_256_gcm", "open_aes_256_gcm"),
    ] {
        let mut tx = session(suite, (1, 2), ([7; 32], [8; 32]), now, true);
        let mut buf = vec![0u8; 1400 + 32];
        g.bench_function(seal_name, |b| {
            b.iter(|| black_box(tx.seal(&mut buf, 1400).unwrap()))
        });
        // Open: each iteration opens a freshly sealed packet (new counter);
        // the copy into place is part of the measured work (~1400-byte memcpy).
        let mut tx = session(suite, (1, 2), ([7; 32], [8; 32]), now, true);
        let mut rx = session(suite, (2, 1), ([8; 32], [7; 32]), now, false);
        let mut work = vec![0u8; 1432];
        g.bench_function(open_name, |b| {
            b.iter_batched_ref(
                || {
                    let mut p = vec![0u8; 1432];
                    tx.seal(&mut p, 1400).unwrap();
                    p
                },
                |p| {
                    work.copy_from_slice(p);
                    black_box(rx.open(&mut work).unwrap())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// Policy decisions at 1,000 rules (target: ≥ 10 million per second per core).
/// A 1400-byte IPv4 packet through `Endpoint::send` (the agent's
/// `prepare_send` and `SealPlan::seal`), and through `send` at one end and
/// `handle_datagram` at the other: the per-packet cost of the endpoint
/// around the AEAD pass measured above. Each with intrusion detection on
/// (the default: a sanction lookup on both paths) and off, so its cost on
/// the data plane is measured.
fn endpoint(c: &mut Criterion) {
    endpoint_with(c, "", true);
    endpoint_with(c, "_ids_off", false);
}

fn endpoint_with(c: &mut Criterion, suffix: &str, ids: bool) {
    use proto::endpoint::{Endpoint, EndpointConfig, Received, SendOutcome};
    use proto::wire::{TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
    let mesh = common::Mesh::new(1);
    let (ia, ib) = (mesh.node("a", 1), mesh.node("b", 2));
    let (pa, pb) = (*ia.static_public(), *ib.static_public());
    let defaults = EndpointConfig::default();
    let config = EndpointConfig {
        aes_gcm: false,
        ids: defaults.ids.clone().filter(|_| ids),
        ..defaults
    };
    let rng = |s| Box::new(ChaCha20Rng::seed_from_u64(s));
    let mut a = Endpoint::new(
        common::crypto(),
        mesh.ca.clone(),
        ia,
        config.clone(),
        rng(1),
    );
    let mut b = Endpoint::new(common::crypto(), mesh.ca.clone(), ib, config, rng(2));
    let to_b = a.add_peer(pb, Some(common::addr(2)), None);
    b.add_peer(pa, Some(common::addr(1)), None);
    let now = Instant::now();
    let unix = common::NOW_NANOS;
    let pkt = common::ipv4([100, 64, 0, 1], [100, 64, 0, 2], &[0x5a; 1400 - 20]);
    let mut buf = vec![0u8; pkt.len() + TRANSPORT_OVERHEAD + 20];
    let fill = |buf: &mut [u8]| {
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + pkt.len()].copy_from_slice(&pkt)
    };
    // Handshake: the first packet queues and initiates; pump until a
    // packet goes out sealed.
    for _ in 0..10 {
        fill(&mut buf);
        if let SendOutcome::Send { .. } = a.send(now, unix, to_b, &mut buf, pkt.len()) {
            break;
        }
        for _ in 0..4 {
            while let Some(t) = a.poll_transmit() {
                let mut d = t.payload;
                b.handle_datagram(now, unix, common::addr(1), &mut d);
            }
            while let Some(t) = b.poll_transmit() {
                let mut d = t.payload;
                a.handle_datagram(now, unix, common::addr(2), &mut d);
            }
        }
    }
    let mut g = c.benchmark_group("endpoint_1400");
    g.throughput(Throughput::Bytes(1400));
    g.bench_function(format!("send{suffix}"), |bch| {
        bch.iter(|| {
            fill(&mut buf);
            let out = a.send(now, unix, to_b, &mut buf, pkt.len());
            assert!(matches!(out, SendOutcome::Send { .. }));
            black_box(out)
        })
    });
    g.bench_function(format!("send_and_receive{suffix}"), |bch| {
        bch.iter(|| {
            fill(&mut buf);
            let SendOutcome::Send { len, .. } = a.send(now, unix, to_b, &mut buf, pkt.len()) else {
                panic!("no session");
            };
            let r = b.handle_datagram(now, unix, common::addr(1), &mut buf[..len]);
            assert!(matches!(r, Received::Data { .. }), "{r:?}");
            black_box(r)
        })
    });
    g.finish();
}

fn policy(c: &mut Criterion) {
    use proto::policy::{Action, Policy, Proto, Rule, Selector, Subject};
    use std::net::IpAddr;
    // 1,000 rules over 50 segments: allow and deny, tcp/udp port ranges.
    let segments: Vec<String> = (0..50).map(|i| format!("seg{i}")).collect();
    let rules: Vec<Rule> = (0..1000u32)
        .map(|i| Rule {
            action: if i % 10 == 0 {
                Action::Deny
            } else {
                Action::Allow
            },
            from: Selector::Segment(segments[(i * 7 % 50) as usize].clone()),
            to: Selector::Segment(segments[(i * 13 % 50) as usize].clone()),
            proto: if i % 2 == 0 { Proto::Tcp } else { Proto::Udp },
            ranges: vec![((i * 37 % 60_000) as u16, (i * 37 % 60_000 + 100) as u16)],
        })
        .collect();
    let policy = Policy {
        enclaves: vec![],
        rules,
        expectations: vec![],
        detection: vec![],
    };
    let compiled = policy.compile();
    let ids: Vec<_> = (0..50)
        .map(|i| {
            compiled.identity(&Subject {
                name: "n",
                segments: std::slice::from_ref(&segments[i]),
                addr: IpAddr::from([100, 64, 0, i as u8]),
            })
        })
        .collect();
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(1024));
    g.bench_function("decide_1000_rules_x1024", |b| {
        b.iter(|| {
            let mut allowed = 0u32;
            for k in 0..1024u32 {
                let (s, d) = (&ids[(k % 50) as usize], &ids[(k * 7 % 50) as usize]);
                let proto = if k % 2 == 0 { 6 } else { 17 };
                let port = (k.wrapping_mul(2_654_435_761) >> 16) as u16;
                if compiled.decide(s, d, proto, port) == proto::policy::Verdict::Allow {
                    allowed += 1;
                }
            }
            std::hint::black_box(allowed)
        })
    });
    // What every data packet of an established flow pays: parse the inner
    // headers and hit the connection-tracking table (1,024 flows tracked,
    // opened under an allow-all policy).
    let packets: Vec<Vec<u8>> = (0..1024u16)
        .map(|k| {
            let mut p = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0];
            p.extend_from_slice(&[100, 64, 0, 1, 100, 64, 0, 2]);
            p.extend_from_slice(&(10_000 + k).to_be_bytes());
            p.extend_from_slice(&5432u16.to_be_bytes());
            p.resize(40, 0);
            p
        })
        .collect();
    let now = std::time::Instant::now();
    let open = std::sync::Arc::new(
        Policy::parse("[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n")
            .unwrap()
            .compile(),
    );
    let open_id = open.identity(&Subject {
        name: "n",
        segments: &[],
        addr: IpAddr::from([100, 64, 0, 1]),
    });
    let mut filter = proto::filter::Filter::new(proto::filter::FilterLimits::default());
    filter.set_policy(Some(open));
    for p in &packets {
        let pkt = proto::wire::ip::Packet::parse(p).unwrap();
        filter
            .check(now, proto::filter::Direction::Out, &pkt, |_, _| {
                open_id.clone()
            })
            .unwrap();
    }
    g.bench_function("tracked_flow_parse_and_check_x1024", |b| {
        b.iter(|| {
            let mut passed = 0u32;
            for p in &packets {
                let pkt = proto::wire::ip::Packet::parse(p).unwrap();
                if filter
                    .check(now, proto::filter::Direction::Out, &pkt, |_, _| {
                        open_id.clone()
                    })
                    .is_ok()
                {
                    passed += 1;
                }
            }
            std::hint::black_box(passed)
        })
    });
    g.finish();
}

/// A 10,000-node two-tier database as the simulator builds it (5 % relays
/// in a ring with chords, each stub linked to two relays): one route
/// computation at a relay (every node a destination) and at a stub (its
/// relays' adverts, routes to its peers).
fn routes(c: &mut Criterion) {
    use proto::control::{Advert, LinkEntry};
    use proto::route::{OwnLink, RouteConfig, Router};
    use proto::wire::NodeId;
    let (relays, nodes) = (500u64, 10_000u64);
    let id = |i: u64| NodeId(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let rtt = |a: u64, b: u64| 1_000 + ((a * 7 + b * 13) % 9_000) as u32;
    let mut links: Vec<Vec<u64>> = vec![Vec::new(); nodes as usize];
    let mut join = |a: u64, b: u64| {
        links[a as usize].push(b);
        links[b as usize].push(a);
    };
    for r in 0..relays {
        join(r, (r + 1) % relays);
        join(r, (r + 37) % relays);
    }
    for s in relays..nodes {
        join(s, s % relays);
        join(s, (s * 7 + 3) % relays);
    }
    let advert = |i: u64| Advert {
        origin: id(i),
        seq: 1,
        stub: i >= relays,
        truncated: false,
        no_transit: false,
        links: (links[i as usize].iter().take(64))
            .map(|&n| LinkEntry {
                neighbor: id(n),
                rtt_us: rtt(i.min(n), i.max(n)),
                loss_permille: 0,
                settling: false,
            })
            .collect(),
        signature: [0; 64],
    };
    let own = |i: u64| -> Vec<OwnLink> {
        (links[i as usize].iter())
            .map(|&n| OwnLink {
                neighbor: id(n),
                up: true,
                settled: true,
                rtt_us: rtt(i.min(n), i.max(n)),
                loss_permille: 0,
                spread_us: 0,
            })
            .collect()
    };
    let now = Instant::now();
    let mut relay = Router::new(id(0), RouteConfig::default());
    for i in 1..nodes {
        relay.handle_advert(now, advert(i));
    }
    let stub_at = nodes - 1;
    let mut stub = Router::new(id(stub_at), RouteConfig::default());
    stub.scope_routes();
    for i in 0..relays {
        stub.handle_advert(now, advert(i));
    }
    for p in [3, 3_000, 9_000] {
        stub.want_route(id(p));
    }
    let (relay_own, stub_own) = (own(0), own(stub_at));
    let mut g = c.benchmark_group("routes");
    g.sample_size(20);
    g.bench_function("relay recompute, 10,000 nodes", |b| {
        b.iter(|| black_box(relay.recompute(now, &relay_own).len()))
    });
    g.bench_function("stub recompute, 10,000 nodes", |b| {
        b.iter(|| black_box(stub.recompute(now, &stub_own).len()))
    });
    g.finish();
}

criterion_group!(benches, handshakes, transport, endpoint, policy, routes);
criterion_main!(benches);
