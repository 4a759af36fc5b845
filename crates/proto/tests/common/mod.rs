//! Shared fixtures for proto's integration tests: a CA and node identities
//! under the real provider, with seeded randomness and fixed time.
#![allow(dead_code)]

pub mod net;

use std::net::SocketAddr;
use std::sync::Arc;

use crypto::RealCrypto;
use proto::cert::{create_ca, Certificate, NodeCertParams, OverlayAddr, TrustedCa};
use proto::handshake::Identity;
use proto::provider::Crypto;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Wall clock of the fixtures (Unix seconds): 2027-01-15.
pub const NOW: u64 = 1_800_000_000;
pub const NOW_NANOS: u64 = NOW * 1_000_000_000;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub struct Mesh {
    pub ca: TrustedCa,
    pub ca_seed: [u8; 32],
}

pub fn crypto() -> Arc<dyn Crypto> {
    Arc::new(RealCrypto)
}

impl Mesh {
    pub fn new(seed: u64) -> Self {
        let mut r = rng(seed);
        let mut ca_seed = [0u8; 32];
        r.fill_bytes(&mut ca_seed);
        let cert = create_ca(
            &RealCrypto,
            "test-ca",
            &ca_seed,
            NOW - 86_400,
            NOW + 365 * 86_400,
        )
        .unwrap();
        let ca = TrustedCa::new(&RealCrypto, cert, NOW).unwrap();
        Self { ca, ca_seed }
    }

    pub fn cert(
        &self,
        name: &str,
        ip: [u8; 4],
        secret: [u8; 32],
        not_before: u64,
        not_after: u64,
    ) -> Certificate {
        self.ca
            .issue(
                &RealCrypto,
                &self.ca_seed,
                NodeCertParams {
                    name: name.into(),
                    addresses: vec![OverlayAddr::V4(ip, 10)],
                    segments: vec!["test".into()],
                    static_public_key: RealCrypto.x25519_public_key(&secret),
                    advert_key: proto::cert::advert_public_key(&RealCrypto, &secret),
                    not_before,
                    not_after,
                },
            )
            .unwrap()
    }

    /// A node whose static secret is derived from `n`, in `segments`.
    pub fn node_in(&self, name: &str, n: u8, segments: &[&str]) -> Identity {
        let secret = [n; 32];
        let public = RealCrypto.x25519_public_key(&secret);
        let cert = self
            .ca
            .issue(
                &RealCrypto,
                &self.ca_seed,
                NodeCertParams {
                    name: name.into(),
                    addresses: vec![OverlayAddr::V4([100, 64, 0, n], 10)],
                    segments: segments.iter().map(|s| s.to_string()).collect(),
                    static_public_key: public,
                    advert_key: proto::cert::advert_public_key(&RealCrypto, &secret),
                    not_before: NOW - 3600,
                    not_after: NOW + 86_400,
                },
            )
            .unwrap();
        Identity::new(&RealCrypto, cert, secret).unwrap()
    }

    /// A node whose static secret is derived from `n`.
    pub fn node(&self, name: &str, n: u8) -> Identity {
        self.node_in(name, n, &["test"])
    }
}

pub fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, n], 51820))
}

/// An IPv4 packet (UDP-shaped: protocol 17) from `src` to `dst` with `payload`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    proto::wire::ip::ipv4(src, dst, proto::wire::ip::UDP, payload)
}
