//! Churn in virtual time with the real protocol endpoints
//! (`harness::churn`): nodes crash and start again (a new endpoint, the
//! same identity) while random pairs of live nodes are checked for a path.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use harness::scale::Impairment;

#[test]
fn under_five_percent_churn_a_minute_live_nodes_keep_reaching_each_other() {
    let r = harness::churn::run(
        40,
        8,
        1,
        5.0,
        Duration::from_secs(30),
        2,
        Impairment::default(),
    )
    .unwrap();
    assert_eq!(r.crashes, 4, "{r:?}");
    assert!(r.pairs_checked > 20_000, "{r:?}");
    // A relay's crash is noticed within about a second on idle links (a
    // lost probe makes a link suspect and probed fast), and paths through
    // it are broken meanwhile (docs/scale.md, "Churn"); restarted nodes
    // come back (they count as live 10 s after their start). At the
    // 4–5 s idle detection of four lost idle probes this was 98–99 %.
    assert!(r.reachable_percent >= 99.5, "{r:?}");
}
