//! Reassembly of handshake fragments: bounded, oldest first out.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::cookie::MacVerdict;
use proto::fragment::{fragment, Reassembler, Reassembly, ReassemblyLimits, VerifiedFragment};
use proto::wire::{FragmentView, MessageKind};

/// The two fragments of a 1,500-byte message from sender `index`.
fn message(index: u32) -> Vec<Vec<u8>> {
    fragment(
        &crypto::RealCrypto,
        MessageKind::Initiation,
        index,
        0,
        &[index as u8; 1500],
        &[7; 32],
        None,
    )
}

fn insert(r: &mut Reassembler, now: Instant, src: u8, frag: &[u8]) -> Reassembly {
    let view = FragmentView::new_checked(frag).unwrap();
    let src = SocketAddr::from(([198, 18, 0, src], 51820));
    r.insert(
        now,
        src,
        VerifiedFragment::new(view, MacVerdict::Valid).unwrap(),
    )
}

#[test]
fn the_oldest_message_expires_first_and_is_evicted_first() {
    let t = Instant::now();
    let s = Duration::from_secs(1);
    let mut r = Reassembler::new(ReassemblyLimits {
        per_source: 4,
        total: 3,
        timeout: 5 * s,
    });
    let (a, b, c, d) = (message(1), message(2), message(3), message(4));
    assert_eq!(insert(&mut r, t, 1, &a[0]), Reassembly::Pending);
    assert_eq!(insert(&mut r, t + s, 2, &b[0]), Reassembly::Pending);
    assert_eq!(insert(&mut r, t + 2 * s, 3, &c[0]), Reassembly::Pending);
    assert_eq!(r.next_expiry(), Some(t + 5 * s));
    // A completes: B is the oldest left.
    assert_eq!(
        insert(&mut r, t + 2 * s, 1, &a[1]),
        Reassembly::Complete(vec![1u8; 1500])
    );
    assert_eq!(r.next_expiry(), Some(t + 6 * s));
    // Full again (D, then A anew): the oldest, B, is evicted.
    assert_eq!(insert(&mut r, t + 3 * s, 4, &d[0]), Reassembly::Pending);
    assert_eq!(
        insert(&mut r, t + 3 * s, 1, &a[0]),
        Reassembly::PendingAfterEviction
    );
    assert_eq!(r.evictions(), 1);
    assert_eq!(r.next_expiry(), Some(t + 7 * s), "C is the oldest now");
    // B's second fragment starts B over, and C goes for it.
    assert_eq!(
        insert(&mut r, t + 3 * s, 2, &b[1]),
        Reassembly::PendingAfterEviction
    );
    assert_eq!(r.evictions(), 2);
    assert_eq!(r.next_expiry(), Some(t + 8 * s));
    r.expire(t + 8 * s - Duration::from_millis(1));
    assert_eq!(r.len(), 3, "D, A and B started at 3 s");
    r.expire(t + 8 * s);
    assert_eq!(r.len(), 0);
    assert_eq!(r.next_expiry(), None);
}

#[test]
fn a_source_over_its_share_loses_its_own_oldest_message() {
    let t = Instant::now();
    let ms = Duration::from_millis(1);
    let mut r = Reassembler::new(ReassemblyLimits {
        per_source: 2,
        total: 16,
        timeout: Duration::from_secs(5),
    });
    let other = message(100);
    assert_eq!(insert(&mut r, t, 9, &other[0]), Reassembly::Pending);
    for i in 0..5u32 {
        let m = message(i);
        insert(&mut r, t + ms * (i + 1), 1, &m[0]);
    }
    assert_eq!(r.len(), 3, "two of source 1's, and the other source's");
    assert_eq!(r.evictions(), 3);
    assert_eq!(
        insert(&mut r, t + ms * 9, 9, &other[1]),
        Reassembly::Complete(vec![100u8; 1500]),
        "the other source's message was never evicted"
    );
    // Source 1's newest two are what is left.
    let last = message(4);
    assert_eq!(
        insert(&mut r, t + ms * 9, 1, &last[1]),
        Reassembly::Complete(vec![4u8; 1500])
    );
}
