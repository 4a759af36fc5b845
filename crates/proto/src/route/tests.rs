use super::*;

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const C: NodeId = NodeId(3);
const D: NodeId = NodeId(4);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn link(n: NodeId, rtt_us: u32, up: bool) -> OwnLink {
    OwnLink {
        neighbor: n,
        up,
        settled: up,
        rtt_us,
        loss_permille: 0,
        spread_us: 0,
    }
}

fn advert(origin: NodeId, seq: u64, links: &[(NodeId, u32)]) -> Advert {
    Advert {
        origin,
        seq,
        stub: false,
        truncated: false,
        no_transit: false,
        links: links
            .iter()
            .map(|&(n, rtt_us)| LinkEntry {
                neighbor: n,
                rtt_us,
                loss_permille: 0,
                settling: false,
            })
            .collect(),
        signature: [0; 64],
    }
}

/// The square: a–b direct, a–c–b and a–d–b relayed.
fn square(now: Instant) -> Router {
    let mut r = Router::new(A, RouteConfig::default());
    assert!(r.handle_advert(now, advert(B, 1, &[(A, 100), (C, 100), (D, 100)])));
    assert!(r.handle_advert(now, advert(C, 1, &[(A, 100), (B, 100)])));
    assert!(r.handle_advert(now, advert(D, 1, &[(A, 100), (B, 150)])));
    r
}

#[test]
fn direct_when_up_relay_when_cut_direct_again_after_hold_down() {
    let now = Instant::now();
    let mut r = square(now);
    let up = [link(B, 100, true), link(C, 100, true), link(D, 100, true)];
    r.recompute(now, &up);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(B));
    // Cut a–b: via c (cheaper than d).
    let cut = [link(B, 100, false), link(C, 100, true), link(D, 100, true)];
    let ch = r.recompute(now, &cut);
    assert!(ch.contains(&RouteChange {
        dst: B,
        old: Some(B),
        new: Some(C)
    }));
    assert_eq!(r.route(B).unwrap().hops, 2);
    // Back up but in hold-down: stay on the relay.
    let mut healing = up;
    healing[0].settled = false;
    r.recompute(now, &healing);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
    // Settled: back to direct.
    r.recompute(now, &up);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(B));
}

#[test]
fn a_working_direct_link_is_left_only_for_a_path_better_by_more_than_its_spread() {
    let now = Instant::now();
    // a–b 3,000 µs direct; a–c–b 1,300 µs with hops: better by 1,800.
    let mut r = Router::new(A, RouteConfig::default());
    r.handle_advert(now, advert(B, 1, &[(A, 3000), (C, 600)]));
    r.handle_advert(now, advert(C, 1, &[(A, 500), (B, 600)]));
    let own = |ab: u32, spread: u32| {
        [
            OwnLink {
                spread_us: spread,
                ..link(B, ab, true)
            },
            link(C, 500, true),
        ]
    };
    // Its probes spread over 1,000 µs: 2 × that is more than the gain.
    r.recompute(now, &own(3000, 1000));
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(B), "direct kept");
    // A steady link (spread 100 µs): the relay is better by more than
    // the 1 ms floor, and takes over once it has been for
    // `switch_after`.
    r.recompute(now, &own(3000, 100));
    let later = now + RouteConfig::default().switch_after;
    r.recompute(later, &own(3000, 100));
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
    // Within the margin but not half of it: the relay stays (no
    // flapping at the margin's edge).
    r.recompute(later, &own(2000, 100));
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
    // Within half the margin: back direct at once.
    r.recompute(later, &own(1700, 100));
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(B));
}

#[test]
fn hysteresis_keeps_an_almost_as_good_relay() {
    let now = Instant::now();
    let mut r = square(now);
    let cut = [link(B, 100, false), link(C, 100, true), link(D, 100, true)];
    r.recompute(now, &cut);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
    // c–b gets a little slower than d–b: stay on c.
    r.handle_advert(now, advert(C, 2, &[(A, 100), (B, 170)]));
    r.recompute(now, &cut);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
    // Much slower: c's own shortest path to b is back through a, so c
    // is no nearer b than a is: move to d at once (keeping c could
    // loop).
    r.handle_advert(now, advert(C, 3, &[(A, 100), (B, 5000)]));
    r.recompute(now, &cut);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(D));
}

#[test]
fn hysteresis_never_keeps_a_hop_that_routes_back_through_us() {
    // a–b 1,000 µs; b–c–d costs b 10,000; a–e–d is short; a–f–d costs
    // a 11,300. Each router holds the other's advert as sent.
    const E: NodeId = NodeId(5);
    const F: NodeId = NodeId(6);
    let now = Instant::now();
    let adverts = |seq: u64, bc: bool, ae: bool| {
        let mut a = vec![(B, 1000), (F, 1000)];
        let mut b = vec![(A, 1000)];
        let (mut c, mut e) = (vec![(D, 8800)], vec![(D, 1000)]);
        if bc {
            b.push((C, 1000));
            c.push((B, 1000));
        }
        if ae {
            a.push((E, 1000));
            e.push((A, 1000));
        }
        [
            advert(A, seq, &a),
            advert(B, seq, &b),
            advert(C, seq, &c),
            advert(D, seq, &[(C, 8800), (E, 1000), (F, 10100)]),
            advert(E, seq, &e),
            advert(F, seq, &[(A, 1000), (D, 10100)]),
        ]
    };
    let own = |me: NodeId, bc: bool, ae: bool| -> Vec<OwnLink> {
        if me == A {
            vec![link(B, 1000, true), link(E, 1000, ae), link(F, 1000, true)]
        } else {
            vec![link(A, 1000, true), link(C, 1000, bc)]
        }
    };
    let mut routers = [A, B].map(|me| Router::new(me, RouteConfig::default()));
    // (b–c up, a–e up), then b–c down (b goes through a, a through e),
    // then b–c back and a–e down in the same instant: a now goes
    // through b, b's path through a still costs it less than 1.25 ×
    // its best (through c).
    for (seq, bc, ae) in [(1, true, true), (2, false, true), (3, true, false)] {
        for r in &mut routers {
            for ad in adverts(seq, bc, ae) {
                r.handle_advert(now, ad);
            }
            let me = r.me;
            r.recompute(now, &own(me, bc, ae));
        }
        if seq == 2 {
            assert_eq!(routers[1].route(D).map(|x| x.next_hop), Some(A));
        }
    }
    assert_eq!(routers[0].route(D).map(|x| x.next_hop), Some(B));
    assert_eq!(
        routers[1].route(D).map(|x| x.next_hop),
        Some(C),
        "b keeps a, which sends back to b: a loop"
    );
}

#[test]
fn dead_relay_and_contradicted_links_are_not_paths() {
    let now = Instant::now();
    let mut r = square(now);
    // b no longer lists c: the c–b half that c still claims is stale.
    r.handle_advert(now, advert(B, 2, &[(A, 100), (D, 100)]));
    let cut = [link(B, 100, false), link(C, 100, true), link(D, 100, true)];
    r.recompute(now, &cut);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(D));
    // Our link to d dies too: b is unreachable.
    let worse = [link(B, 100, false), link(C, 100, true), link(D, 100, false)];
    let ch = r.recompute(now, &worse);
    assert!(r.route(B).is_none());
    assert!(ch.iter().any(|c| c.dst == B && c.new.is_none()));
}

#[test]
fn older_adverts_and_own_adverts_are_ignored_and_old_ones_expire() {
    let now = Instant::now();
    let mut r = square(now);
    assert!(!r.handle_advert(now, advert(C, 1, &[])), "same seq");
    assert!(!r.handle_advert(now, advert(C, 0, &[])), "older");
    assert!(!r.handle_advert(now, advert(A, 9, &[])), "our own");
    assert!(!r.expire(now + Duration::from_secs(29), Duration::ZERO));
    assert!(!r.expire(now + Duration::from_secs(31), Duration::from_secs(60)));
    assert!(r.expire(now + Duration::from_secs(31), Duration::ZERO));
    assert_eq!(r.adverts().count(), 0);
}

#[test]
fn an_origin_no_path_reaches_is_forgotten_after_max_age_however_fresh() {
    let now = Instant::now();
    let s = Duration::from_secs;
    let mut r = square(now);
    let up = [link(B, 100, true), link(C, 100, true), link(D, 100, true)];
    r.recompute(now, &up);
    // d is gone: our link and b's are down (b's new advert leaves d out).
    assert!(r.handle_advert(now, advert(B, 2, &[(A, 100), (C, 100)])));
    let cut = [link(B, 100, true), link(C, 100, true), link(D, 100, false)];
    r.recompute(now, &cut);
    assert!(r.route(D).is_none());
    // The long (refresh-scaled) max age would keep it for an hour.
    let long = s(3600);
    assert!(!r.expire(now + s(29), long));
    // A neighbour's sync brings its advert back: the clock restarts.
    assert!(r.handle_advert(now + s(29), advert(D, 2, &[(A, 100), (B, 150)])));
    r.recompute(now + s(29), &cut);
    assert!(!r.expire(now + s(31), long), "the fresh copy's clock");
    assert!(r.expire(now + s(59), long));
    assert!(r.advert(D).is_none());
    assert!(r.advert(B).is_some() && r.advert(C).is_some());
    // Reachable origins stay however old the computation.
    assert!(!r.expire(now + s(600), long));
}

#[test]
fn trace_lists_every_hop_with_its_rtt() {
    let now = Instant::now();
    let mut r = square(now);
    let cut = [link(B, 100, false), link(C, 90, true), link(D, 100, true)];
    r.recompute(now, &cut);
    assert_eq!(r.trace(&cut, B), vec![(C, 90), (B, 100)]);
    assert_eq!(r.trace(&cut, C), vec![(C, 90)]);
    assert!(r.trace(&cut, NodeId(99)).is_empty());
}

#[test]
fn a_stub_is_a_destination_never_a_hop() {
    let now = Instant::now();
    let mut r = square(now);
    // c says it does not relay: with a–b cut, b is reached via d, the
    // dearer relay, and c itself stays reachable directly.
    let mut c = advert(C, 2, &[(A, 100), (B, 100)]);
    c.stub = true;
    assert!(r.handle_advert(now, c));
    assert!(r.is_stub(C) && !r.is_stub(D));
    let cut = [link(B, 100, false), link(C, 100, true), link(D, 100, true)];
    r.recompute(now, &cut);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(D));
    assert_eq!(r.route(C).map(|x| x.next_hop), Some(C));
    // Without d, b is unreachable rather than routed through the stub.
    let worse = [link(B, 100, false), link(C, 100, true), link(D, 100, false)];
    r.recompute(now, &worse);
    assert!(r.route(B).is_none());
    // A path may still end at a stub: with our own link to c dead, c is
    // reached through b.
    let only_b = [link(B, 100, true), link(C, 100, false), link(D, 100, false)];
    r.recompute(now, &only_b);
    assert_eq!(r.route(C).map(|x| x.next_hop), Some(B));
}

#[test]
fn a_no_transit_node_is_left_by_the_paths_through_it() {
    let now = Instant::now();
    let mut r = square(now);
    // b through c, the cheaper relay.
    let cut = [link(B, 100, false), link(C, 90, true), link(D, 100, true)];
    r.recompute(now, &cut);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
    // c finds itself behind a NAT: b moves to d at once (hysteresis
    // keeps a next hop only while a path through it exists), and c
    // stays a destination.
    let mut c = advert(C, 2, &[(A, 90), (B, 100)]);
    c.no_transit = true;
    assert!(r.handle_advert(now, c.clone()));
    assert!(!r.is_stub(C), "it keeps full link state");
    r.recompute(now, &cut);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(D));
    assert_eq!(r.route(C).map(|x| x.next_hop), Some(C));
    // Without d, b is unreachable rather than routed through c.
    let no_d = [link(B, 100, false), link(C, 90, true), link(D, 100, false)];
    r.recompute(now, &no_d);
    assert!(r.route(B).is_none());
    // Its NAT gone, c carries traffic again.
    c.seq = 3;
    c.no_transit = false;
    assert!(r.handle_advert(now, c));
    r.recompute(now, &no_d);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
}

#[test]
fn a_scoped_router_keeps_routes_to_wanted_destinations_only() {
    let now = Instant::now();
    let mut r = square(now);
    r.scope_routes();
    r.want_route(B);
    let cut = [link(B, 100, false), link(C, 100, true), link(D, 100, true)];
    let ch = r.recompute(now, &cut);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));
    assert!(r.route(C).is_none() && r.route(D).is_none());
    assert_eq!(r.route_count(), 1);
    assert_eq!(r.reachable_count(), 3, "c and d are still reached");
    assert!(ch.iter().all(|c| c.dst == B));
    // Wanting one more takes effect at the next computation, even with
    // unchanged inputs.
    r.want_route(D);
    r.recompute_if_changed(now, &cut);
    assert_eq!(r.route(D).map(|x| x.next_hop), Some(D));
}

#[test]
fn multi_hop_and_loss_penalty() {
    let now = Instant::now();
    let mut r = Router::new(A, RouteConfig::default());
    // a–c–d–b chain plus a lossy a–b.
    r.handle_advert(now, advert(C, 1, &[(A, 100), (D, 100)]));
    r.handle_advert(now, advert(D, 1, &[(C, 100), (B, 100)]));
    r.handle_advert(now, advert(B, 1, &[(D, 100), (A, 100)]));
    let mut lossy = link(B, 100, true);
    lossy.loss_permille = 300;
    r.recompute(now, &[lossy, link(C, 100, true)]);
    let route = r.route(B).unwrap();
    assert_eq!((route.next_hop, route.hops), (C, 3));
}

/// a reaches b through c (cheaper) or d; e hangs off c. e's new advert
/// stops listing c while c's still lists e: c is suspected, and b moves to
/// d at once (no `switch_after` wait), until c's own newer advert.
#[test]
fn a_relay_a_neighbour_stopped_listing_is_left_at_once_until_it_speaks() {
    const E: NodeId = NodeId(5);
    let now = Instant::now();
    let mut r = Router::new(A, RouteConfig::default());
    r.handle_advert(now, advert(B, 1, &[(C, 100), (D, 150)]));
    r.handle_advert(now, advert(C, 1, &[(A, 100), (B, 100), (E, 100)]));
    r.handle_advert(now, advert(D, 1, &[(A, 100), (B, 150)]));
    r.handle_advert(now, advert(E, 1, &[(C, 100)]));
    let own = [link(C, 100, true), link(D, 100, true)];
    r.recompute(now, &own);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(C));

    assert!(!r.suspect(C, B, now), "b lists c: no accusation");
    r.handle_advert(now, advert(E, 2, &[]));
    assert!(r.suspect(C, E, now), "e stopped listing c, c still lists e");
    assert!(r.is_suspected(C));
    assert_eq!(r.suspicion_deadline(), Some(now + ms(2000)));
    r.recompute_if_changed(now, &own);
    assert_eq!(r.route(B).map(|x| x.next_hop), Some(D), "left at once");
    assert!(!r.suspect(C, E, now), "once per advert of c");

    // c speaks: it is alive, the suspicion ends.
    r.handle_advert(now, advert(C, 2, &[(A, 100), (B, 100)]));
    assert!(!r.is_suspected(C));
    assert_eq!(r.suspicion_deadline(), None);
    // c no longer lists e: e's withdrawal says nothing new.
    r.handle_advert(now, advert(E, 3, &[(C, 100)]));
    r.handle_advert(now, advert(E, 4, &[]));
    assert!(!r.suspect(C, E, now));

    // d suspected by b, until its hold runs out.
    r.handle_advert(now, advert(B, 2, &[(C, 100)]));
    assert!(r.suspect(D, B, now));
    assert!(!r.expire_suspicions(now + ms(1999)));
    assert!(r.expire_suspicions(now + ms(2000)));
    assert!(!r.is_suspected(D));

    // A stub is never suspected: no path passes through it anyway.
    let mut s = advert(E, 5, &[(C, 100)]);
    s.stub = true;
    r.handle_advert(now, s);
    r.handle_advert(now, advert(C, 3, &[(A, 100), (B, 100), (E, 100)]));
    r.handle_advert(now, advert(B, 3, &[]));
    assert!(r.suspect(C, B, now), "c still lists b");
    r.handle_advert(now, advert(C, 4, &[(A, 100), (E, 100)]));
    assert!(!r.suspect(E, C, now), "e is a stub");
}

proptest::proptest! {
    /// Random databases changing step by step (relays, stubs, no-transit
    /// nodes, links to nodes whose advert is not held, to this node, listed
    /// twice; adverts replaced and forgotten), the scope taken before or
    /// after the first adverts: a router keeping routes to a scope, whose
    /// graph leaves leaves out, reaches as many nodes as one keeping every
    /// route, and routes each destination of its scope the same way.
    #[test]
    fn a_scoped_router_reaches_and_routes_as_an_unscoped_one(
        steps in proptest::collection::vec(
            (0usize..12, 0u8..5, proptest::collection::vec((0u64..24, 1u32..3_000), 0..6)),
            1..40,
        ),
        own in proptest::collection::vec((1u64..24, 1u32..3_000, proptest::bool::ANY), 0..4),
        scope in proptest::collection::vec(1u64..24, 0..4),
        scope_late in proptest::bool::ANY,
    ) {
        let t0 = Instant::now();
        let me = NodeId(0);
        let mut all = Router::new(me, RouteConfig::default());
        let mut scoped = Router::new(me, RouteConfig::default());
        let own: Vec<OwnLink> = own.iter().map(|&(n, rtt, up)| link(NodeId(n), rtt, up)).collect();
        let take_scope = |r: &mut Router| {
            r.scope_routes();
            for &d in &scope {
                r.want_route(NodeId(d));
            }
        };
        if !scope_late {
            take_scope(&mut scoped);
        }
        for (i, (origin, kind, links)) in steps.iter().enumerate() {
            let now = t0 + Duration::from_millis(100 * i as u64);
            // Origins 1..=12; far ends up to 23 (never advertising), or 0 (this node).
            let origin = NodeId(*origin as u64 + 1);
            if *kind == 4 {
                all.forget(origin);
                scoped.forget(origin);
            } else {
                let links: Vec<(NodeId, u32)> = links.iter().map(|&(n, rtt)| (NodeId(n), rtt)).collect();
                let mut a = advert(origin, i as u64 + 1, &links);
                a.stub = *kind == 1;
                a.no_transit = *kind == 2;
                all.handle_advert(now, a.clone());
                scoped.handle_advert(now, a);
            }
            if scope_late && i == steps.len() / 2 {
                take_scope(&mut scoped);
            }
            all.recompute(now, &own);
            scoped.recompute(now, &own);
            proptest::prop_assert_eq!(scoped.reachable_count(), all.reachable_count(), "step {}", i);
            if scoped.scope.is_some() {
                for &d in &scope {
                    let d = NodeId(d);
                    let key = |r: &Router| r.route(d).map(|x| (x.next_hop, x.metric_us, x.hops));
                    proptest::prop_assert_eq!(key(&scoped), key(&all), "step {} to {:?}", i, d);
                }
            }
        }
    }
}
