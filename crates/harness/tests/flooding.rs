//! Reliable flooding in virtual time, with the real protocol endpoints on a
//! lossy underlay (see `harness::sim`): adverts, certificates and sync
//! requests lost on the way are repaired in seconds, not at the origins'
//! next refresh (which at these sizes is minutes away).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use harness::scale::topology;
use harness::sim::Sim;
use proto::endpoint::EndpointConfig;
use proto::wire::NodeId;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// `nodes` relays, a ring plus chords (average degree 4), every link
/// losing `loss` of its datagrams both ways from the start.
fn lossy_mesh(nodes: usize, loss: f64, seed: u64) -> (Sim, Vec<(usize, usize, Duration)>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let links = topology(nodes, 4, &mut rng);
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    let mut sim = Sim::build(seed, &names, &links, EndpointConfig::default(), false);
    for &(a, b, _) in &links {
        sim.set_loss(a, b, loss);
    }
    (sim, links)
}

/// `nodes` nodes of which the first `relays` relay (stubs on two relays
/// each), lossless, 20 s after start.
fn settled_stub_mesh(nodes: usize, relays: usize, seed: u64) -> (Sim, harness::scale::Links) {
    let impair = harness::scale::Impairment::default();
    let (mut sim, links) = harness::scale::impaired_mesh(nodes, relays, 4, seed, impair).unwrap();
    sim.run_for(Duration::from_secs(20));
    (sim, links)
}

/// Nodes holding fewer than every other node's advert.
fn lacking(sim: &Sim) -> usize {
    let n = sim.nodes.len();
    (sim.nodes.iter())
        .filter(|x| x.ep.router().advert_count() < n - 1)
        .count()
}

/// Runs until every node holds every advert; the virtual time that took.
fn complete_within(sim: &mut Sim, bound: Duration) -> Option<Duration> {
    while sim.elapsed() < bound {
        sim.run_for(Duration::from_millis(100));
        if lacking(sim) == 0 {
            return Some(sim.elapsed());
        }
    }
    None
}

#[test]
fn with_five_percent_loss_every_node_holds_every_advert_within_seconds() {
    // 60 nodes refresh every 2 s × 61 = 122 s: a lost advert, certificate
    // or sync request left unrepaired shows as a node lacking an advert
    // for minutes.
    let (mut sim, _) = lossy_mesh(60, 0.05, 7);
    let done = complete_within(&mut sim, Duration::from_secs(20));
    let retransmitted: u64 = (sim.nodes.iter())
        .map(|n| n.ep.stats().adverts_retransmitted)
        .sum();
    assert!(
        done.is_some(),
        "{} nodes still lack an advert after 20 s ({retransmitted} retransmissions)",
        lacking(&sim)
    );
    assert!(retransmitted > 0, "5 % loss and no advert was sent again");
    assert!(sim.nodes[0].ep.advert_refresh() > Duration::from_secs(60));
}

#[test]
fn a_cut_on_a_lossy_underlay_reaches_every_node_and_the_lists_drain() {
    let (mut sim, links) = lossy_mesh(40, 0.05, 11);
    complete_within(&mut sim, Duration::from_secs(20)).expect("bring-up");
    sim.run_for(Duration::from_secs(5));
    let (u, v, _) = links[5];
    let (uid, vid) = (sim.nodes[u].ep.node_id(), sim.nodes[v].ep.node_id());
    let lists = |sim: &Sim, n: usize, a: NodeId, b: NodeId| {
        (sim.nodes[n].ep.router().advert(a))
            .is_some_and(|ad| ad.links.iter().any(|l| l.neighbor == b))
    };
    sim.cut(u, v);
    sim.run_for(Duration::from_secs(10));
    let stale: Vec<usize> = (0..sim.nodes.len())
        .filter(|&n| n != u && n != v && (lists(&sim, n, uid, vid) || lists(&sim, n, vid, uid)))
        .collect();
    assert!(
        stale.is_empty(),
        "nodes still listing the cut link: {stale:?}"
    );
    // The lists drain: every advert sent is acknowledged, or given up on
    // with a dead link. Looked at each second, since the origins' periodic
    // refreshes start new floods that briefly fill the lists again (a look
    // at one instant depends on where the seed puts them); entries that
    // never leave would keep the count up at every look.
    let mut least = usize::MAX;
    for _ in 0..30 {
        sim.run_for(Duration::from_secs(1));
        least = least.min(sim.nodes.iter().map(|n| n.ep.adverts_unacked()).sum());
    }
    assert!(
        least <= 4,
        "at least {least} adverts unacknowledged throughout 30 s"
    );
}

#[test]
fn on_a_lossless_underlay_nothing_is_sent_again() {
    let (mut sim, _) = lossy_mesh(30, 0.0, 3);
    complete_within(&mut sim, Duration::from_secs(10)).expect("bring-up");
    sim.run_for(Duration::from_secs(20));
    let retransmitted: u64 = (sim.nodes.iter())
        .map(|n| n.ep.stats().adverts_retransmitted)
        .sum();
    // Acknowledgements come back within 2·RTT + 40 ms on every link (RTTs
    // 2–20 ms, timeout at least 250 ms): a retransmission here would be
    // a spurious one.
    assert_eq!(retransmitted, 0);
}

#[test]
fn the_end_of_a_hold_down_is_advertised_within_a_second() {
    // a–b cut and healed in a square: once a's link to b is out of its
    // hold-down, c must stop adding the hold-down penalty to it, well
    // before a's next refresh (10 s here; hours in a large mesh).
    let mut sim = Sim::new(
        5,
        &["a", "b", "c", "d"],
        &[(0, 1), (0, 2), (2, 1), (0, 3), (3, 1)],
        Duration::from_millis(1),
        EndpointConfig::default(),
    );
    sim.run_for(Duration::from_secs(15));
    let (a, b) = (sim.nodes[0].ep.node_id(), sim.nodes[1].ep.node_id());
    let settling_at_c = |sim: &Sim| {
        let advert = sim.nodes[2].ep.router().advert(a).cloned().unwrap();
        (advert.links.iter())
            .find(|l| l.neighbor == b)
            .map(|l| l.settling)
    };
    assert_eq!(settling_at_c(&sim), Some(false));
    sim.cut(0, 1);
    sim.run_for(Duration::from_secs(8));
    assert_eq!(settling_at_c(&sim), None, "the cut link still listed");
    sim.heal(0, 1);
    let healed = sim.now;
    let mut up_at = None;
    while sim.now - healed < Duration::from_secs(10) {
        sim.run_for(Duration::from_millis(50));
        if up_at.is_none() && settling_at_c(&sim) == Some(true) {
            up_at = Some(sim.now);
        }
        if up_at.is_some() && settling_at_c(&sim) == Some(false) {
            break;
        }
    }
    let up_at = up_at.expect("the healed link, in hold-down, reached c");
    let settled = sim.now - up_at;
    // Hold-down 2 s, checked every second, flooded in milliseconds.
    assert!(
        settled <= Duration::from_millis(3_500),
        "c saw the hold-down end {settled:?} after the link came back"
    );
}

/// Two rings of 16 relays joined by two bridges, 2 % loss everywhere. The
/// bridges are cut (a partition): every node loses its routes to the other
/// side once the cut is detected; healed, every node routes to every other
/// again within seconds, and the retransmission lists drain.
#[test]
fn a_partition_is_agreed_on_and_healed_within_seconds() {
    let half = 16;
    let ms = |n| Duration::from_millis(n);
    let mut links: Vec<(usize, usize, Duration)> = Vec::new();
    for side in [0, half] {
        for i in 0..half {
            links.push((side + i, side + (i + 1) % half, ms(1 + i as u64 % 5)));
        }
    }
    let bridges = [(0, half), (half / 2, half + half / 2)];
    links.extend(bridges.iter().map(|&(a, b)| (a, b, ms(3))));
    let names: Vec<String> = (0..2 * half).map(|i| format!("n{i}")).collect();
    let mut sim = Sim::build(11, &names, &links, EndpointConfig::default(), false);
    for &(a, b, _) in &links {
        sim.set_loss(a, b, 0.02);
    }
    let ids: Vec<NodeId> = sim.nodes.iter().map(|n| n.ep.node_id()).collect();
    let routed = |sim: &Sim, a: usize, b: usize| sim.nodes[a].ep.router().route(ids[b]).is_some();
    let across = |sim: &Sim| {
        (0..half)
            .flat_map(|a| (half..2 * half).map(move |b| (a, b)))
            .filter(|&(a, b)| routed(sim, a, b) || routed(sim, b, a))
            .count()
    };
    // Up: every pair routed.
    sim.run_for(Duration::from_secs(10));
    assert_eq!(across(&sim), half * half, "not every pair routed at start");
    // Partition: no route across within 10 s (detection ~5 s, then flooding).
    for &(a, b) in &bridges {
        sim.cut(a, b);
    }
    let cut = sim.elapsed();
    let mut agreed = None;
    while sim.elapsed() - cut < Duration::from_secs(20) {
        sim.run_for(ms(100));
        if across(&sim) == 0 {
            agreed = Some(sim.elapsed() - cut);
            break;
        }
    }
    let agreed = agreed.unwrap_or_else(|| panic!("{} pairs still routed across", across(&sim)));
    assert!(agreed < Duration::from_secs(10), "{agreed:?}");
    // Within each side, routes stay.
    assert!((1..half).all(|b| routed(&sim, 0, b)));
    // Heal: every pair routed again, and the lists drain.
    for &(a, b) in &bridges {
        sim.heal(a, b);
    }
    let healed_at = sim.elapsed();
    let mut healed = None;
    while sim.elapsed() - healed_at < Duration::from_secs(30) {
        sim.run_for(ms(100));
        if across(&sim) == half * half {
            healed = Some(sim.elapsed() - healed_at);
            break;
        }
    }
    let healed =
        healed.unwrap_or_else(|| panic!("{} of {} pairs routed", across(&sim), half * half));
    assert!(healed < Duration::from_secs(10), "{healed:?}");
    sim.run_for(Duration::from_secs(10));
    let unacked: usize = (sim.nodes.iter()).map(|n| n.ep.adverts_unacked()).sum();
    assert_eq!(unacked, 0);
    println!("partition agreed after {agreed:?}, healed after {healed:?}");
}

/// The advert `at` holds of node `origin`'s: its sequence number.
fn held_seq(sim: &Sim, at: usize, origin: usize) -> Option<u64> {
    let id = sim.nodes[origin].ep.node_id();
    sim.nodes[at].ep.router().advert(id).map(|a| a.seq)
}

#[test]
fn refreshes_and_stub_link_changes_stay_among_relays_yet_stubs_keep_every_relays_advert() {
    // 6 relays, 54 stubs on two relays each; refresh every 2 s × 61.
    let (relays, nodes) = (6, 60);
    let (mut sim, links) = settled_stub_mesh(nodes, relays, 3);
    for s in relays..nodes {
        assert_eq!(sim.nodes[s].ep.router().advert_count(), relays, "stub {s}");
    }
    let neighbour = |r: usize, s: usize| links.iter().any(|&(a, b, _)| (a, b) == (r, s));

    // A refresh of relay 0: its own stubs get it (from relay 0 itself),
    // every relay gets it, no other stub does.
    let before: Vec<Option<u64>> = (0..nodes).map(|n| held_seq(&sim, n, 0)).collect();
    let now = sim.now;
    sim.nodes[0].ep.readvertise(now);
    sim.run_for(Duration::from_secs(5));
    for (n, was) in before.iter().enumerate().skip(1) {
        let renewed = held_seq(&sim, n, 0) > *was;
        let should = n < relays || neighbour(0, n);
        assert_eq!(renewed, should, "node {n}: relay 0's refresh");
    }
    let far: Vec<usize> = (relays..nodes).filter(|&s| !neighbour(0, s)).collect();
    assert!(!far.is_empty());

    // A change of relay 0's links to stubs (one cut) reaches every relay
    // but no stub, not even relay 0's own: stubs route through relays only.
    let s0 = (relays..nodes).find(|&s| neighbour(0, s)).unwrap();
    let before: Vec<Option<u64>> = (0..nodes).map(|n| held_seq(&sim, n, 0)).collect();
    sim.cut(0, s0);
    sim.run_for(Duration::from_secs(15));
    let s0_id = sim.nodes[s0].ep.node_id();
    for r in 1..relays {
        let a = sim.nodes[r].ep.router().advert(sim.nodes[0].ep.node_id());
        assert!(a.is_some_and(|a| !a.links.iter().any(|l| l.neighbor == s0_id)));
    }
    for s in (relays..nodes).filter(|&s| s != s0) {
        assert_eq!(
            held_seq(&sim, s, 0),
            before[s],
            "stub {s} got a stub-link change"
        );
    }

    // A change of relay 0's backbone (a link to a relay cut) reaches every
    // stub, the far ones included.
    let r1 = (1..relays).find(|&r| neighbour(0, r)).unwrap();
    let r1_id = sim.nodes[r1].ep.node_id();
    let seq = held_seq(&sim, 1, 0);
    sim.cut(0, r1);
    sim.run_for(Duration::from_secs(15));
    for &s in &far {
        let a = sim.nodes[s].ep.router().advert(sim.nodes[0].ep.node_id());
        let a = a.expect("far stub lost relay 0's advert");
        assert!(Some(a.seq) > seq, "stub {s} missed relay 0's change");
        assert!(!a.links.iter().any(|l| l.neighbor == r1_id), "stub {s}");
    }

    // Far past the refresh-scaled expiry (4 × 122 s), stubs still hold
    // every relay's advert, though most were refreshed only among relays.
    sim.run_for(Duration::from_secs(600));
    for s in relays..nodes {
        assert_eq!(
            sim.nodes[s].ep.router().advert_count(),
            relays,
            "stub {s} after 600 s"
        );
    }
}

#[test]
fn bundle_offers_stop_once_every_neighbour_holds_the_bundle() {
    // 5 % loss: lost offers and lost answers are repaired by the 10 s
    // re-offer; once each neighbour has said it holds the list, nobody
    // offers it again.
    let (relays, nodes) = (6, 60);
    let impair = harness::scale::Impairment {
        loss: 0.05,
        ..Default::default()
    };
    let (mut sim, _) = harness::scale::impaired_mesh(nodes, relays, 4, 5, impair).unwrap();
    sim.run_for(Duration::from_secs(20));
    sim.revoke(0, &[nodes - 1], 1).unwrap();
    sim.run_for(Duration::from_secs(90));
    let kind = proto::bundle::BundleKind::Revocation;
    for n in 0..nodes - 1 {
        assert!(
            sim.nodes[n].ep.bundle(kind).is_some(),
            "node {n} lacks the list"
        );
    }
    let offers = |sim: &Sim| -> u64 {
        (sim.nodes[..nodes - 1].iter())
            .map(|n| n.ep.stats().bundle_offers_sent)
            .sum()
    };
    let before = offers(&sim);
    assert!(before > 0);
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(60));
    // A link that comes back (5 % loss takes a few down for a moment) is
    // offered everything again, and the offer answered: two per link-up.
    // Without the rule every node would offer every neighbour every 10 s.
    let ups = (sim.nodes.iter())
        .flat_map(|n| n.events.iter())
        .filter(|(t, e)| {
            *t >= t0 && matches!(e, proto::endpoint::Event::LinkChanged { up: true, .. })
        })
        .count() as u64;
    let sent = offers(&sim) - before;
    assert!(
        sent <= 2 * ups,
        "{sent} offers after every node held the list, {ups} links came up"
    );
}

#[test]
fn a_relay_restarted_after_its_neighbours_saw_it_gone_relearns_the_whole_mesh() {
    // 6 relays, 54 stubs. Relay 0 crashes; its neighbours declare their
    // links to it down. It starts again 30 s later, a new endpoint with
    // no link state, and asks each neighbour for its database as its
    // sessions come up (while their links to it are still down).
    let (relays, nodes) = (6, 60);
    let (mut sim, _) = settled_stub_mesh(nodes, relays, 5);
    assert_eq!(sim.nodes[0].ep.router().advert_count(), nodes - 1);
    sim.crash(0);
    sim.run_for(Duration::from_secs(30));
    sim.restart(0);
    let start = sim.elapsed();
    let mut whole = None;
    while sim.elapsed() - start < Duration::from_secs(20) {
        sim.run_for(Duration::from_millis(100));
        if sim.nodes[0].ep.router().advert_count() == nodes - 1 {
            whole = Some(sim.elapsed() - start);
            break;
        }
    }
    let held = sim.nodes[0].ep.router().advert_count();
    let whole = whole.unwrap_or_else(|| panic!("holds {held} of {} adverts", nodes - 1));
    assert!(whole < Duration::from_secs(5), "{whole:?}");
}

#[test]
fn a_stub_takes_a_restarted_relay_back_only_after_its_hold_down() {
    // A stub's default relay (its nearest) crashes: the stub moves to its
    // other relay. When the first starts again it holds no link state yet;
    // the stub goes back to it only once its link is out of hold-down.
    let (relays, nodes) = (6, 60);
    let (mut sim, links) = settled_stub_mesh(nodes, relays, 7);
    let stub = relays;
    let mine: Vec<usize> = (links.iter())
        .filter(|&&(a, b, _)| b == stub && a < relays)
        .map(|&(a, _, _)| a)
        .collect();
    assert_eq!(mine.len(), 2);
    let ids: Vec<NodeId> = (0..nodes).map(|n| sim.nodes[n].ep.node_id()).collect();
    let id = |n: usize| ids[n];
    let near = *mine
        .iter()
        .find(|&&r| sim.nodes[stub].ep.default_relay() == Some(id(r)))
        .unwrap();
    let other = *mine.iter().find(|&&r| r != near).unwrap();
    sim.crash(near);
    sim.run_for(Duration::from_secs(30));
    assert_eq!(sim.nodes[stub].ep.default_relay(), Some(id(other)));
    sim.restart(near);
    let peer = sim.nodes[stub].peers[&near];
    let up = |sim: &Sim| {
        let v = sim.nodes[stub].ep.peer(peer, sim.now).unwrap();
        v.has_session && v.link.is_some_and(|l| l.up)
    };
    let start = sim.elapsed();
    while !up(&sim) {
        assert!(
            sim.elapsed() - start < Duration::from_secs(10),
            "link never came back"
        );
        sim.run_for(Duration::from_millis(10));
    }
    let back = sim.elapsed();
    // Up, in hold-down: still the other relay.
    while sim.elapsed() - back < Duration::from_millis(1500) {
        assert_eq!(
            sim.nodes[stub].ep.default_relay(),
            Some(id(other)),
            "{:?}",
            sim.elapsed() - back
        );
        sim.run_for(Duration::from_millis(50));
    }
    // Settled: the nearer one again.
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.nodes[stub].ep.default_relay(), Some(id(near)));
}

#[test]
fn a_stub_leaves_a_relay_cut_off_from_every_other_relay() {
    // A relay whose backbone neighbours are all down reaches only its own
    // stubs: a stub on it and on another relay sends through the other,
    // nearer or not.
    let (relays, nodes) = (6, 60);
    let (mut sim, links) = settled_stub_mesh(nodes, relays, 7);
    let ids: Vec<NodeId> = (0..nodes).map(|n| sim.nodes[n].ep.node_id()).collect();
    let relays_of = |n: usize| -> Vec<usize> {
        (links.iter())
            .filter_map(|&(a, b, _)| match (a == n, b == n) {
                (true, _) if b < relays => Some(b),
                (_, true) if a < relays => Some(a),
                _ => None,
            })
            .collect()
    };
    // A stub whose default relay has backbone neighbours that are not the
    // stub's other relay.
    let (stub, cut, other) = (relays..nodes)
        .find_map(|s| {
            let mine = relays_of(s);
            let d = *mine
                .iter()
                .find(|&&r| sim.nodes[s].ep.default_relay() == Some(ids[r]))?;
            let other = *mine.iter().find(|&&r| r != d)?;
            (!relays_of(d).contains(&other)).then_some((s, d, other))
        })
        .expect("such a stub");
    for r in relays_of(cut) {
        sim.crash(r);
    }
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.nodes[stub].ep.default_relay(), Some(ids[other]));
}

/// A node cut off from every neighbour, and back: the answers to its sync
/// requests carry what changed while it was away (it gets it) and leave
/// out what its summary said it held (a database's worth of duplicates
/// otherwise, from each neighbour).
#[test]
fn a_node_back_from_isolation_gets_what_changed_and_not_what_it_held() {
    let nodes = 60;
    let (mut sim, links) = lossy_mesh(nodes, 0.0, 5);
    complete_within(&mut sim, Duration::from_secs(10)).expect("bring-up");
    sim.run_for(Duration::from_secs(5));
    let u = 0;
    let around: Vec<usize> = (links.iter())
        .filter_map(|&(a, b, _)| (a == u).then_some(b).or((b == u).then_some(a)))
        .collect();
    for &n in &around {
        sim.cut(u, n);
    }
    sim.run_for(Duration::from_secs(5));
    // Meanwhile a link elsewhere fails: two adverts change that u misses.
    let far = |n: usize| n != u && !around.contains(&n);
    let (x, y, _) = *(links.iter()).find(|(a, b, _)| far(*a) && far(*b)).unwrap();
    sim.cut(x, y);
    sim.run_for(Duration::from_secs(5));
    let id = |n: usize| sim.nodes[n].ep.node_id();
    let (xid, yid) = (id(x), id(y));
    let seq = |sim: &Sim, n: usize, origin: NodeId| {
        sim.nodes[n].ep.router().advert(origin).map(|a| a.seq)
    };
    let watcher = (0..nodes).find(|&n| far(n) && n != x && n != y).unwrap();
    let news = [xid, yid].map(|o| seq(&sim, watcher, o));
    assert_ne!(
        [xid, yid].map(|o| seq(&sim, u, o)),
        news,
        "u saw the cut while isolated"
    );
    let duplicates = |sim: &Sim| sim.nodes[u].ep.stats().adverts_duplicate;
    let before = duplicates(&sim);
    for &n in &around {
        sim.heal(u, n);
    }
    let healed = sim.now;
    while [xid, yid].map(|o| seq(&sim, u, o)) != news {
        assert!(
            sim.now - healed < Duration::from_secs(15),
            "u never got the adverts that changed while it was away"
        );
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(Duration::from_secs(5));
    assert_eq!(lacking(&sim), 0);
    // Crossing floods of the adverts that changed (u's neighbours' and
    // u's own) still arrive twice; a database dump from each of its
    // neighbours would be ~60 × neighbours.
    let duplicates = duplicates(&sim) - before;
    assert!(
        duplicates < nodes as u64,
        "u received {duplicates} adverts it held from {} neighbours",
        around.len()
    );
}

/// A stub's link to one of its relays flaps: the relay's answer to the
/// stub's sync leaves out the relays' adverts the stub's summary lists,
/// though the stub's copies are older than the relay's (refreshes go among
/// relays only): the links to relays and the roles are the same (before,
/// every relay's advert again: at 10,000 nodes ~400 kB from a relay for
/// one flap).
#[test]
fn a_stub_back_on_a_relay_is_not_sent_the_relays_adverts_again() {
    let (relays, nodes) = (20, 200);
    let (mut sim, links) = settled_stub_mesh(nodes, relays, 3);
    let (r, s, _) = *(links.iter())
        .find(|(a, b, _)| *a < relays && *b >= relays)
        .unwrap();
    assert_eq!(sim.nodes[s].ep.router().advert_count(), relays);
    let now = sim.now;
    for relay in 0..relays {
        sim.nodes[relay].ep.readvertise(now);
    }
    sim.run_for(Duration::from_secs(5));
    let held = |sim: &Sim| (0..relays).map(|o| held_seq(sim, s, o)).collect::<Vec<_>>();
    let stale = (0..relays).filter(|&o| held_seq(&sim, s, o) < held_seq(&sim, r, o));
    assert!(stale.count() > relays / 2, "the stub's copies are older");
    let seqs = held(&sim);
    sim.cut(r, s);
    sim.run_for(Duration::from_secs(5));
    let p = sim.nodes[s].peers[&r];
    let up = |sim: &Sim| {
        (sim.nodes[s].ep.peer(p, sim.now)).is_some_and(|i| i.link.is_some_and(|l| l.up))
    };
    assert!(!up(&sim), "the stub's link went down");
    let duplicates = |sim: &Sim| sim.nodes[s].ep.stats().adverts_duplicate;
    let before = duplicates(&sim);
    sim.heal(r, s);
    sim.run_for(Duration::from_secs(5));
    assert!(up(&sim), "and came back");
    assert_eq!(sim.nodes[s].ep.router().advert_count(), relays);
    let duplicates = duplicates(&sim) - before;
    assert!(
        duplicates < relays as u64 / 2,
        "the stub received {duplicates} relays' adverts it held"
    );
    let renewed = (held(&sim).iter().zip(&seqs))
        .filter(|(a, b)| a != b)
        .count();
    // The relay's own advert comes with its sync request.
    assert!(renewed <= 1, "{renewed} relays' adverts sent again");
}

/// Two relays' link flaps on paths with 2 ms of jitter: each end's sync
/// request follows its summary (16 parts here), and is answered with what
/// changed, not with the adverts of the summary's parts it overtook
/// (sent together, ~350 adverts the other end held came back).
#[test]
fn after_a_backbone_flap_on_a_jittered_path_the_sync_sends_what_changed() {
    let (relays, nodes) = (20, 400);
    let impair = harness::scale::Impairment {
        jitter: Duration::from_millis(2),
        ..Default::default()
    };
    let (mut sim, links) = harness::scale::impaired_mesh(nodes, relays, 4, 3, impair).unwrap();
    sim.run_for(Duration::from_secs(20));
    let (u, v, _) = *(links.iter())
        .find(|(a, b, _)| *a < relays && *b < relays)
        .unwrap();
    let duplicates = |sim: &Sim, n: usize| sim.nodes[n].ep.stats().adverts_duplicate;
    let before = [duplicates(&sim, u), duplicates(&sim, v)];
    sim.cut(u, v);
    sim.run_for(Duration::from_secs(3));
    sim.heal(u, v);
    sim.run_for(Duration::from_secs(17));
    for (n, b) in [u, v].into_iter().zip(before) {
        let got = duplicates(&sim, n) - b;
        assert!(got < 30, "node {n} received {got} adverts it held");
        assert_eq!(sim.nodes[n].ep.router().advert_count(), nodes - 1);
    }
}

/// A change stubs need reaches each stub from one of its relays (the one
/// its advert designates), a link that went from every one: a backbone
/// flap (down; back in hold-down, no news to stubs; hold-down over) sends
/// each stub the two ends' adverts from both its relays once, and from one
/// relay once more. From both relays both times, stubs received ~4
/// adverts they held each; designated, ~2.
#[test]
fn a_stub_hears_a_backbone_link_back_from_its_designated_relay_alone() {
    let (relays, nodes) = (10, 200);
    let (mut sim, links) = settled_stub_mesh(nodes, relays, 4);
    let (u, v, _) = *(links.iter())
        .find(|(a, b, _)| *a < relays && *b < relays)
        .unwrap();
    let duplicates = |sim: &Sim| -> u64 {
        (sim.nodes[relays..].iter())
            .map(|n| n.ep.stats().adverts_duplicate)
            .sum()
    };
    let before = duplicates(&sim);
    sim.cut(u, v);
    sim.run_for(Duration::from_secs(3));
    sim.heal(u, v);
    sim.run_for(Duration::from_secs(20));
    let stubs = (nodes - relays) as u64;
    let got = duplicates(&sim) - before;
    assert!(got < 3 * stubs, "stubs received {got} adverts they held");
    // Every stub holds u's advert listing v out of its hold-down.
    let v_id = sim.nodes[v].ep.node_id();
    for s in relays..nodes {
        let a = (sim.nodes[s].ep.router())
            .advert(sim.nodes[u].ep.node_id())
            .unwrap();
        let l = a.links.iter().find(|l| l.neighbor == v_id);
        assert!(l.is_some_and(|l| !l.settling), "stub {s}: {l:?}");
    }
}

/// A refresh is held back for a random moment before it is passed on, and
/// not sent to a neighbour whose copy arrived meanwhile: in a refresh
/// round (every relay re-advertises at once) each link carries each
/// refresh about once. Passed on at once, most links carried it both ways
/// (each end forwarding before the other's copy arrived): 29,840 adverts
/// for 100 nodes and 200 links, against ~20,000 held back.
#[test]
fn a_refresh_round_sends_each_refresh_over_each_link_about_once() {
    let (mut sim, links) = lossy_mesh(100, 0.0, 6);
    sim.run_for(Duration::from_secs(20));
    let count = |sim: &Sim| -> (u64, u64) {
        (sim.nodes.iter()).fold((0, 0), |(s, d), n| {
            let st = n.ep.stats();
            (s + st.adverts_sent, d + st.adverts_duplicate)
        })
    };
    let (sent0, dup0) = count(&sim);
    let now = sim.now;
    for n in &mut sim.nodes {
        n.ep.readvertise(now);
    }
    sim.run_for(Duration::from_secs(10));
    let (sent, dup) = count(&sim);
    let (sent, dup) = (sent - sent0, dup - dup0);
    assert!(
        sent - dup >= 100 * 99,
        "every node got every refresh: {sent} sent"
    );
    let once = (links.len() * 100) as u64;
    assert!(
        sent * 10 < once * 11,
        "{sent} adverts sent ({dup} to a node holding them) for {} links",
        links.len()
    );
}
