//! mac1, mac2 and cookies as a responder checks them.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::*;
use proto::cookie::{
    cookie_key, mac1_key, mac1_of, open_cookie_reply, write_macs, CookieChecker, Mac2, MacVerdict,
};
use rand_chacha::ChaCha20Rng;

const LOADED: Mac2 = Mac2::Required { may_reply: true };
const LOADED_NO_REPLY: Mac2 = Mac2::Required { may_reply: false };

#[test]
fn under_load_mac2_comes_first_and_mac1_only_where_a_reply_is_at_stake() {
    let c = crypto();
    let mut rng = rng(7);
    let responder = [9u8; 32];
    let mut checker = CookieChecker::new(&*c, &responder);
    let now = Instant::now();
    let src = SocketAddr::from(([198, 18, 0, 1], 51820));
    let check = |checker: &mut CookieChecker, rng: &mut ChaCha20Rng, d: &[u8], mac2| {
        checker.check(&*c, now, rng, &src, d, mac2)
    };
    // mac1 only: valid when mac2 is not required, a cookie is asked for
    // under load.
    let mut d = vec![0x5a; 200];
    write_macs(&*c, &mut d, &mac1_key(&*c, &responder), None);
    assert_eq!(
        check(&mut checker, &mut rng, &d, Mac2::NotRequired),
        MacVerdict::Valid
    );
    assert_eq!(
        check(&mut checker, &mut rng, &d, LOADED),
        MacVerdict::CookieRequired
    );
    // A bad mac1 is named as such where it matters; a fragment that could
    // not earn a reply anyway is not hashed a second time.
    let mut bad = d.clone();
    bad[200 - 20] ^= 1;
    assert_eq!(
        check(&mut checker, &mut rng, &bad, Mac2::NotRequired),
        MacVerdict::InvalidMac1
    );
    assert_eq!(
        check(&mut checker, &mut rng, &bad, LOADED),
        MacVerdict::InvalidMac1
    );
    assert_eq!(
        check(&mut checker, &mut rng, &bad, LOADED_NO_REPLY),
        MacVerdict::CookieRequired
    );
    // The cookie from a reply makes mac2 valid, for this source only.
    let reply = checker.cookie_reply(&*c, now, &mut rng, &src, &d, 1);
    let cookie =
        open_cookie_reply(&*c, &cookie_key(&*c, &responder), &mac1_of(&d), &reply).unwrap();
    write_macs(&*c, &mut d, &mac1_key(&*c, &responder), Some(&cookie));
    assert_eq!(check(&mut checker, &mut rng, &d, LOADED), MacVerdict::Valid);
    assert_eq!(
        check(&mut checker, &mut rng, &d, LOADED_NO_REPLY),
        MacVerdict::Valid
    );
    let elsewhere = SocketAddr::from(([198, 18, 0, 2], 51820));
    assert_eq!(
        checker.check(&*c, now, &mut rng, &elsewhere, &d, LOADED),
        MacVerdict::CookieRequired
    );
    // A valid mac2 over a wrong mac1 is still a wrong mac1.
    let mut forged = d.clone();
    forged[200 - 20] ^= 1;
    let n = forged.len();
    let mac2 = c.mac(&cookie, &[&forged[..n - 16]]);
    forged[n - 16..].copy_from_slice(&mac2);
    assert_eq!(
        check(&mut checker, &mut rng, &forged, LOADED),
        MacVerdict::InvalidMac1
    );
    assert_eq!(
        check(&mut checker, &mut rng, &forged, LOADED_NO_REPLY),
        MacVerdict::InvalidMac1
    );
}
