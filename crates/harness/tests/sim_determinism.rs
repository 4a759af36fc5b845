//! The simulator is a function of its seed: two runs of one scenario agree
//! datagram for datagram.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use harness::scale::topology;
use harness::sim::Sim;
use proto::endpoint::EndpointConfig;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn run(seed: u64) -> Vec<(u64, u64, u64)> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let links = topology(30, 4, &mut rng);
    let names: Vec<String> = (0..30).map(|i| format!("n{i}")).collect();
    let mut sim = Sim::build(seed, &names, &links, EndpointConfig::default(), false);
    for &(a, b, _) in &links {
        sim.set_loss(a, b, 0.05);
    }
    sim.run_for(Duration::from_secs(20));
    let (u, v, _) = links[3];
    sim.cut(u, v);
    sim.run_for(Duration::from_secs(20));
    sim.nodes
        .iter()
        .map(|n| {
            let s = n.ep.stats();
            (
                s.adverts_retransmitted,
                s.handshakes_completed,
                n.ep.router().advert_count() as u64,
            )
        })
        .collect()
}

#[test]
fn one_seed_gives_one_run() {
    assert_eq!(run(5), run(5));
}

/// `scale --seeds`: each seed is a different mesh, the same seed the same
/// report, and the spread reads median [min–max] of each figure.
#[test]
fn seeds_differ_and_the_spread_brackets_the_median() {
    let run = |seed| {
        harness::scale::run(
            30,
            4,
            seed,
            Some(Duration::ZERO),
            None,
            harness::scale::Impairment::default(),
        )
        .unwrap()
    };
    let runs: Vec<_> = (1..=3).map(run).collect();
    let again = run(2);
    assert_eq!(again.convergence_ms, runs[1].convergence_ms);
    assert_eq!(again.revocation_spread_ms, runs[1].revocation_spread_ms);
    assert!(
        runs.iter()
            .any(|r| r.convergence_ms != runs[0].convergence_ms),
        "three seeds, one convergence time: the seed does not reach the mesh"
    );
    // The link carrying data is probed at the active rate: its cut is
    // seen within a few of its 37.5–50 ms intervals, never an idle one.
    for r in &runs {
        let d = r.data_cut_detection_ms.expect("measured");
        assert!(d < 300.0, "cut of a link carrying data seen after {d} ms");
    }
    let lines = harness::scale::spread(&runs);
    assert_eq!(lines.len(), 12, "{lines:?}");
    let conv = lines
        .iter()
        .find(|l| l.starts_with("convergence 99 %"))
        .unwrap();
    // "convergence 99 %: M ms [LO–HI]"
    let nums: Vec<f64> = conv
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|t| t.parse().ok())
        .collect();
    let (m, lo, hi) = (
        nums[nums.len() - 3],
        nums[nums.len() - 2],
        nums[nums.len() - 1],
    );
    assert!(lo <= m && m <= hi, "{conv}");
    let mut c: Vec<f64> = runs.iter().map(|r| r.convergence_ms).collect();
    c.sort_by(f64::total_cmp);
    assert!(
        (lo - c[0]).abs() < 0.06 && (hi - c[2]).abs() < 0.06,
        "{conv} vs {c:?}"
    );
}
