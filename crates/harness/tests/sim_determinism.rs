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
