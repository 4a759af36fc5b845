//! Mesh-wide quarantine by agreement in virtual time, with the real
//! protocol endpoints (`harness::quorum`): a relaying member caught by one
//! neighbour stays a member everywhere else; caught by three, every other
//! node quarantines it, on an underlay losing 5 % of datagrams.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use harness::scale::Impairment;

#[test]
fn one_accuser_moves_nobody_and_three_move_the_mesh_within_a_second_and_all_by_the_refresh() {
    let impair = Impairment {
        loss: 0.05,
        jitter: Duration::from_millis(2),
        cpu: false,
    };
    let r = harness::quorum::run(48, 8, 4, 3, impair).unwrap();
    assert_eq!(r.after_one_accuser, 0, "{r:?}");
    let all = r
        .all_secs
        .unwrap_or_else(|| panic!("not every node: {r:?}"));
    // From the third witness's own quarantine (spoofing overflows in about
    // 0.33 s), the flood takes a few link latencies. Accusations are not
    // acknowledged: a node that lost every copy of one (a stub has two
    // relays; 5 % loss) holds it from its accuser's refresh, 10 s later.
    assert!(r.half_secs - r.local_secs < 1.0, "{r:?}");
    assert!(all - r.local_secs < 11.0, "{r:?}");
    assert!(r.messages_per_node < 20.0, "{r:?}");
}
