//! Runs N complete handshakes of one kind, for instruction counting with
//! `valgrind --tool=callgrind` (repeatable where wall-clock time on shared
//! cores is not). Usage: `handshake_cost <hybrid|kem-free|snow-ik> <N>`.
//! `scripts/handshake-cost.sh` runs it with N and 0 and prints the
//! difference per handshake.
#![allow(clippy::unwrap_used)] // a benchmark tool: a panic is the report

use std::hint::black_box;

use crypto::insecure::FreeKem;
use crypto::RealCrypto;
use proto::cert::{Certificate, TrustedCa};
use proto::handshake::{self, Identity, ReplayGuard};
use proto::provider::Crypto;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

#[path = "../tests/common/mod.rs"]
mod common;

const C: &RealCrypto = &RealCrypto;
const NOW: u64 = common::NOW;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map(String::as_str).unwrap_or("hybrid");
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let mesh = common::Mesh::new(1);
    let (si, sr) = ([2u8; 32], [3u8; 32]);
    let (i, r) = (mesh.node("initiator", 2), mesh.node("responder", 3));
    let ca = mesh.ca;
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let provider: &dyn Crypto = if kind == "kem-free" { &FreeKem } else { C };
    for k in 0..n {
        let t = (NOW + k) * 1_000_000_000;
        if kind == "snow-ik" {
            snow_ik(&ca, &i, &r, &si, &sr);
            continue;
        }
        let (hs, mut m1) =
            handshake::initiate(provider, &i, r.static_public(), None, 1, t, &mut rng).unwrap();
        let (mut m2, _) = handshake::Responder {
            crypto: provider,
            ca: &ca,
            identity: &r,
        }
        .respond(&mut ReplayGuard::new(1), &mut m1, (1, 2), t, &mut rng)
        .unwrap();
        black_box(
            hs.read_response(provider, &ca, &i, &mut m2, 2, NOW)
                .unwrap(),
        );
    }
}

fn snow_ik(ca: &TrustedCa, i: &Identity, r: &Identity, si: &[u8; 32], sr: &[u8; 32]) {
    let params: snow::params::NoiseParams = "Noise_IK_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
    let mut hi = snow::Builder::new(params.clone())
        .local_private_key(si)
        .unwrap()
        .remote_public_key(r.static_public())
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut hr = snow::Builder::new(params)
        .local_private_key(sr)
        .unwrap()
        .build_responder()
        .unwrap();
    let (mut buf, mut pl) = (vec![0u8; 2048], vec![0u8; 2048]);
    let n = hi
        .write_message(i.certificate().as_bytes(), &mut buf)
        .unwrap();
    let p = hr.read_message(&buf[..n], &mut pl).unwrap();
    ca.verify_node(C, &Certificate::from_bytes(&pl[..p]).unwrap(), NOW)
        .unwrap();
    let n = hr
        .write_message(r.certificate().as_bytes(), &mut buf)
        .unwrap();
    let p = hi.read_message(&buf[..n], &mut pl).unwrap();
    ca.verify_node(C, &Certificate::from_bytes(&pl[..p]).unwrap(), NOW)
        .unwrap();
    black_box((
        hi.into_transport_mode().unwrap(),
        hr.into_transport_mode().unwrap(),
    ));
}
