//! Fuzz bodies that drive state through sequences, not single inputs:
//! transport counters through a session's replay window, packets through
//! a filter under a policy the input writes, and certificates through
//! the CA's validation.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::cert::{CertKind, Certificate};
use proto::replay::WINDOW_SIZE;
use proto::wire::TRANSPORT_OVERHEAD;

use super::{fixture, fixture_session, NOW_SECS};
use crate::insecure::InsecureCrypto;

/// Most packets a `transport_sequence` input makes the sender seal.
const MAX_SEALED: u64 = 20_000;

/// A receiving session fed the sender's datagrams in the order the input
/// says: each byte below `0x80` delivers again (or late) the datagram
/// that many counters below the newest sealed; a byte `b` from `0x80`
/// seals `b − 0x7f` new ones (a jump forward, those between lost) and
/// delivers the newest. The window must behave exactly as specified
/// (docs/protocol.md): a counter is accepted once at most, and always if
/// unseen and no more than the window size below the highest accepted.
pub fn transport_sequence(data: &[u8]) {
    let mut tx = fixture_session(9, 7, true);
    let mut rx = fixture_session(7, 9, false);
    let mut sealed: Vec<Vec<u8>> = Vec::new();
    let seal = |tx: &mut proto::session::Session, sealed: &mut Vec<Vec<u8>>| {
        let mut buf = vec![0u8; 8 + TRANSPORT_OVERHEAD];
        buf[16..24].copy_from_slice(&tx.send_counter().to_le_bytes());
        let n = tx.seal(&mut buf, 8).expect("the fixture session seals");
        buf.truncate(n);
        sealed.push(buf);
    };
    let mut accepted: HashSet<u64> = HashSet::new();
    let mut highest: Option<u64> = None;
    for &b in data {
        let index = if b < 0x80 {
            let Some(newest) = sealed.len().checked_sub(1) else {
                continue;
            };
            let Some(i) = newest.checked_sub(usize::from(b)) else {
                continue;
            };
            i
        } else {
            for _ in 0..b - 0x7f {
                if (sealed.len() as u64) < MAX_SEALED {
                    seal(&mut tx, &mut sealed);
                }
            }
            sealed.len() - 1
        };
        let counter = index as u64;
        let mut d = sealed[index].clone();
        let got = rx.open(&mut d);
        let fresh = !accepted.contains(&counter);
        let in_window = highest.is_none_or(|h| counter > h || h - counter <= WINDOW_SIZE);
        assert_eq!(
            got.is_ok(),
            fresh && in_window,
            "counter {counter}, highest {highest:?}, seen before {}: {got:?}",
            !fresh
        );
        if got.is_ok() {
            assert_eq!(&d[16..24], &counter.to_le_bytes(), "plaintext intact");
            accepted.insert(counter);
            highest = Some(highest.map_or(counter, |h| h.max(counter)));
        }
    }
}

/// A policy the input writes (UTF-8 TOML up to the first zero byte), and
/// the packets after it (`[len u8][packet]`, a second apart) through a
/// filter under that policy, out and back in: never panics; a policy that
/// fails to parse is refused with an error; one with no rules and no
/// enclaves lets nothing through.
pub fn policy_filter(data: &[u8]) {
    use proto::filter::{Direction, Filter, FilterLimits};
    use proto::policy::{Policy, Subject};
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(text) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    let compiled = Arc::new(policy.compile());
    let empty = compiled.rules().is_empty() && compiled.enclaves().is_empty();
    let mut f = Filter::new(FilterLimits {
        max_flows: 8,
        max_fragments: 4,
        max_unreplied_per_remote: 4,
    });
    f.set_policy(Some(compiled.clone()));
    let segments = [
        vec!["web".to_string()],
        vec!["db".to_string(), "ops".into()],
    ];
    let id = |addr: std::net::IpAddr, local: bool| {
        compiled.identity(&Subject {
            name: if local { "alice" } else { "bob" },
            segments: &segments[usize::from(local)],
            addr,
        })
    };
    let mut rest = data.get(split + 1..).unwrap_or(&[]);
    let mut t = Instant::now();
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (pkt, next) = tail.split_at(len);
        rest = next;
        t += Duration::from_secs(1);
        let Ok(p) = proto::wire::ip::Packet::parse(pkt) else {
            continue;
        };
        for dir in [Direction::Out, Direction::In] {
            let verdict = f.check(t, dir, &p, id);
            if empty {
                assert!(verdict.is_err(), "a policy with no rules let {p:?} {dir:?}");
            }
        }
    }
}

/// A certificate decoded and then validated against the fixture CA (with
/// the insecure provider every signature verifies, so the input reaches
/// every other check): never panics; whatever validates is a node
/// certificate of this CA, valid now and within the CA's validity.
pub fn certificate_validation(cert: &Certificate) {
    let f = fixture();
    if f.ca.verify_node(&InsecureCrypto, cert, NOW_SECS).is_ok() {
        let b = cert.body();
        assert_eq!(cert.kind(), CertKind::Node);
        assert_eq!(&b.issuer, f.ca.fingerprint());
        assert!(b.not_before <= NOW_SECS && NOW_SECS <= b.not_after, "{b:?}");
        let ca = f.ca.certificate().body();
        assert!(ca.not_before <= b.not_before && b.not_after <= ca.not_after);
    }
}
