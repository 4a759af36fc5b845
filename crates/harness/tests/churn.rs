//! Churn in virtual time with the real protocol endpoints
//! (`harness::churn`): nodes crash and start again (a new endpoint, the
//! same identity) while random pairs of live nodes are checked for a path.
#![allow(clippy::unwrap_used)]

#[test]
fn under_five_percent_churn_a_minute_live_nodes_keep_reaching_each_other() {
    let spec = harness::churn::Churn {
        relays: 8,
        flows: 10,
        ..harness::churn::Churn::new(40, 2, 1)
    };
    let r = harness::churn::run(&spec).unwrap();
    assert_eq!(r.crashes, 4, "{r:?}");
    assert!(r.pairs_checked > 20_000, "{r:?}");
    // A relay's crash is noticed in 1.2–2.2 s on idle links (a lost idle
    // probe, then fast probes), and paths through it are broken meanwhile
    // (docs/scale.md, "Churn"); restarted nodes come back (they count as
    // live 10 s after their start).
    assert!(r.reachable_percent >= 99.5, "{r:?}");
    // Every unreachable pair has its cause, and none is a loop: routes
    // keep only next hops nearer the destination.
    let c = &r.causes;
    let unreachable = (r.pairs_checked as f64 * (100.0 - r.reachable_percent) / 100.0).round();
    let counted = c.dead_hop_under_1s
        + c.dead_hop_1_to_2s
        + c.dead_hop_2_to_5s
        + c.dead_hop_over_5s
        + c.no_route
        + c.no_relay
        + c.hop_down
        + c.loops
        + c.isolated;
    assert_eq!(counted as f64, unreachable, "{r:?}");
    assert_eq!(c.loops, 0, "{r:?}");
    assert!(
        r.relay_wire_bytes_per_sec_mean > r.stub_wire_bytes_per_sec_mean,
        "{r:?}"
    );
    // Ten pairs exchange a packet every 100 ms each way: their links are
    // probed at the active rate, and a crashed relay on their path is
    // left within a few hundred milliseconds.
    assert!(r.flow_packets > 20_000, "{r:?}");
    assert!(r.flow_delivered_percent >= 99.5, "{r:?}");
    eprintln!("{r:?}");
}
