//! What in an advert is news, and to whom: when a node re-originates its
//! own advert (other links or roles; a link cost that moved far), which
//! received adverts are refreshes (the same links and roles as the one
//! they replace), which changes stubs need (those of the backbone: links
//! between relays, and roles), and how a node costs its own advertised
//! links (as its advert says, like every other node does), and since which
//! advert of each origin a stub's view of it has not changed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::control::{Advert, LinkEntry};
use crate::route::{Ids, OwnLink, RouteConfig};
use crate::wire::NodeId;

/// An advert is originated for moved link costs alone at most this often:
/// every such advert goes to every relay, and on a lossy underlay some
/// link's estimate is always moving somewhere in a large mesh.
pub const COST_NEWS_INTERVAL: Duration = Duration::from_secs(30);
/// A cost moving by less than this (µs) is not news (a loss estimate 50 ‰
/// over the free 100 ‰, or 5 ms of RTT).
pub const COST_NEWS_MIN_US: u64 = 5_000;

/// Whether our advert `draft` says something `last` does not: other links
/// or roles, or (at most once per [`COST_NEWS_INTERVAL`] since
/// `last_cost_news`) a moved link cost ([`cost_moved`]).
pub(super) fn is_news(
    config: &RouteConfig,
    last_cost_news: Option<Instant>,
    last: &Advert,
    draft: &Advert,
    now: Instant,
) -> bool {
    if !same_topology(last, draft) {
        return true;
    }
    let due = last_cost_news.is_none_or(|t| now.saturating_duration_since(t) >= COST_NEWS_INTERVAL);
    due && cost_moved(config, last, draft)
}

/// Whether a link listed in both adverts costs (RTT plus loss penalty)
/// more than half and more than [`COST_NEWS_MIN_US`] more or less in
/// `draft` than in `last`: random loss and RTT noise stay below that, a
/// link turning slow or lossy does not.
fn cost_moved(config: &RouteConfig, last: &Advert, draft: &Advert) -> bool {
    let cost = |l: &LinkEntry| {
        u64::from(l.rtt_us)
            + u64::from(l.loss_permille.saturating_sub(config.loss_free_permille))
                * config.loss_penalty_us
    };
    draft.links.iter().any(|d| {
        last.links
            .iter()
            .find(|l| l.neighbor == d.neighbor)
            .is_some_and(|l| {
                let (a, b) = (cost(l), cost(d));
                a.abs_diff(b) > a.max(b) / 2 && a.abs_diff(b) > COST_NEWS_MIN_US
            })
    })
}

/// Whether adverts `a` and `b` describe the same links and roles: the
/// same neighbours, up or settling alike, and the same stub, truncated and
/// no-transit flags (RTT and loss may differ).
pub(super) fn same_topology(a: &Advert, b: &Advert) -> bool {
    same_links(a, b, |_| true)
}

/// Whether a relay's advert `new`, replacing `held`, tells a stub anything:
/// other roles, or other links to neighbours that are not stubs
/// (`is_stub`; a neighbour not known counts as a relay). A stub routes
/// through relays only and holds no other stub's advert, so which stubs a
/// relay lists is of no use to it; under churn those links are most of the
/// changes (every stub that crashes or starts changes its relays'
/// adverts), and a relay passing each one to its ~40 stubs was most of its
/// bytes (docs/decisions/stub-link-changes-stay-among-relays.md).
///
/// A link in hold-down counts as absent: routes keep off it while it
/// settles, and a stub only picks the relay its traffic goes to first
/// (which forwards by its own routes). A backbone link that flaps is then
/// news to stubs when it goes down and when its hold-down ends, not also
/// when it comes back (a third of a flap's bytes: the news goes to every
/// stub), and one that keeps failing within its hold-down is news once.
pub(super) fn for_stubs(held: &Advert, new: &Advert, is_stub: impl Fn(NodeId) -> bool) -> bool {
    !same_links(held, new, |l| !l.settling && !is_stub(l.neighbor))
}

/// The relay that passes a stub the changes it needs of other relays'
/// adverts ([`for_stubs`]): of the relays the stub's advert lists, the one
/// ranking first for that stub (rendezvous hashing: stubs spread evenly
/// over their relays, and a relay that goes moves only the stubs it
/// served). Each change then reaches a stub once, not from every relay it
/// has. `None`: the advert lists no node known to relay (every relay
/// passes on then).
///
/// The stub and its relays each compute this from the stub's advert; a
/// stub whose designated relay changes syncs with the new one
/// (`Gossip::catch_up`), which covers what neither relay passed on while
/// they disagreed.
pub(super) fn designated(stub: &Advert, is_relay: impl Fn(NodeId) -> bool) -> Option<NodeId> {
    let rank = |relay: NodeId| {
        let h = crate::mix64(stub.origin.0 ^ relay.0.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        (h, relay)
    };
    (stub.links.iter())
        .map(|l| l.neighbor)
        .filter(|&n| is_relay(n))
        .max_by_key(|&n| rank(n))
}

/// The neighbours whose link `new` adds, removes or moves in or out of
/// hold-down, against `held` (every neighbour `new` lists when there is
/// none).
pub(super) fn touched(held: Option<&Advert>, new: &Advert) -> Vec<NodeId> {
    let entries = |a: &Advert| -> Vec<(NodeId, bool)> {
        a.links.iter().map(|l| (l.neighbor, l.settling)).collect()
    };
    let new_links = entries(new);
    let Some(held) = held else {
        return new_links.into_iter().map(|(n, _)| n).collect();
    };
    let old_links = entries(held);
    let mut out: Vec<NodeId> = (new_links.iter())
        .filter(|e| !old_links.contains(e))
        .chain(old_links.iter().filter(|e| !new_links.contains(e)))
        .map(|(n, _)| *n)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Per origin, the sequence number of the first advert held with the links
/// a stub needs ([`for_stubs`]) of the one held now: a stub holding any
/// advert of that origin numbered at least this has what it needs of it
/// (relays' refreshes and stub-link changes do not go to stubs, so a
/// stub's copy is older than a relay's, and answering a stub's sync by
/// sequence number alone sent it every relay's advert again after each
/// flap of one of its links).
///
/// Only the adverts this node held are compared: one it never held (it
/// went straight from A to C, the B between lost on every path to it) may
/// differ from both, and a stub holding B is then not sent C. That needs
/// every copy of B to this node lost before C replaced it; the stub then
/// keeps B's view of that relay until the relay's next change reaches it.
#[derive(Debug, Default)]
pub(super) struct StubViews {
    since: HashMap<NodeId, u64, Ids>,
}

impl StubViews {
    /// What [`StubViews::set`] takes when `new` replaces `held` (`None`:
    /// the first of its origin held); `news`: [`for_stubs`] of the two.
    pub fn after(&self, held: Option<&Advert>, new: &Advert, news: bool) -> u64 {
        held.filter(|_| !news)
            .and_then(|h| self.since.get(&h.origin).copied())
            .unwrap_or(new.seq)
    }

    /// `origin`'s advert was replaced; `since` from [`StubViews::after`].
    pub fn set(&mut self, origin: NodeId, since: u64) {
        self.since.insert(origin, since);
    }

    /// Whether a stub holding `origin`'s advert numbered `seq` has what it
    /// needs of `current`, that origin's advert held here.
    pub fn holds(&self, current: &Advert, seq: u64) -> bool {
        seq >= current.seq || self.since.get(&current.origin).is_some_and(|s| seq >= *s)
    }

    /// Forgets origins `keep` says no.
    pub fn retain(&mut self, keep: impl Fn(NodeId) -> bool) {
        self.since.retain(|n, _| keep(*n));
    }
}

/// Whether `a` and `b` have the same flags and the same links (neighbour
/// and settling flag) among those `keep` selects.
fn same_links(a: &Advert, b: &Advert, keep: impl Fn(&LinkEntry) -> bool) -> bool {
    let links = |x: &Advert| {
        let mut v: Vec<(NodeId, bool)> = (x.links.iter())
            .filter(|l| keep(l))
            .map(|l| (l.neighbor, l.settling))
            .collect();
        v.sort_unstable();
        v
    };
    a.stub == b.stub
        && a.truncated == b.truncated
        && a.no_transit == b.no_transit
        && links(a) == links(b)
}

/// Costs each of `own` links that is up and listed in our `advert` as the
/// advert says (hold-down included), as every other node costs it: were
/// it costed from live probes here and from the advert elsewhere, this
/// node and a neighbour could each route a destination through the other
/// (a loop). A cost that moves far from the advertised one is advertised
/// anew ([`is_news`]). Probes still decide whether a link is up.
pub(super) fn cost_as_advertised(own: &mut [OwnLink], advert: &Advert) {
    for l in own.iter_mut().filter(|l| l.up) {
        if let Some(e) = advert.links.iter().find(|e| e.neighbor == l.neighbor) {
            l.rtt_us = e.rtt_us;
            l.loss_permille = e.loss_permille;
            l.settled = !e.settling;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(links: &[(u64, u32, bool)]) -> Advert {
        Advert {
            origin: NodeId(1),
            seq: 1,
            stub: false,
            truncated: false,
            no_transit: false,
            links: (links.iter())
                .map(|&(n, rtt_us, settling)| LinkEntry {
                    neighbor: NodeId(n),
                    rtt_us,
                    loss_permille: 0,
                    settling,
                })
                .collect(),
            signature: [0; 64],
        }
    }

    #[test]
    fn each_stub_has_one_designated_relay_and_stubs_spread_over_relays() {
        let relays = [10u64, 11, 12];
        let is_relay = |n: NodeId| relays.contains(&n.0);
        let mut served = [0usize; 3];
        for s in 100..400u64 {
            // Its links to relays, in any order, and to another stub.
            let mut stub = advert(&[(12, 1_000, false), (10, 1_000, true), (11, 1_000, false)]);
            stub.origin = NodeId(s);
            stub.stub = true;
            stub.links.push(LinkEntry {
                neighbor: NodeId(s + 1_000),
                rtt_us: 1,
                loss_permille: 0,
                settling: false,
            });
            let d = designated(&stub, is_relay).unwrap();
            assert!(relays.contains(&d.0), "{d:?}");
            stub.links.reverse();
            assert_eq!(designated(&stub, is_relay), Some(d), "order matters not");
            served[relays.iter().position(|r| *r == d.0).unwrap()] += 1;
            // Its designated relay goes: another takes over; the others'
            // stubs keep theirs.
            stub.links.retain(|l| l.neighbor != d);
            let next = designated(&stub, is_relay).unwrap();
            assert_ne!(next, d);
            let other = relays.iter().find(|r| **r != d.0 && **r != next.0).unwrap();
            stub.links.retain(|l| l.neighbor.0 != *other);
            assert_eq!(designated(&stub, is_relay), Some(next));
        }
        assert!(served.iter().all(|&n| (70..130).contains(&n)), "{served:?}");
        let mut lonely = advert(&[(500, 1_000, false)]);
        lonely.stub = true;
        assert_eq!(designated(&lonely, is_relay), None);
    }

    #[test]
    fn costs_alone_are_not_topology_and_small_moves_are_not_news() {
        let config = RouteConfig::default();
        let now = Instant::now();
        let last = advert(&[(2, 1_000, false), (3, 2_000, false)]);
        let noisy = advert(&[(2, 1_400, false), (3, 2_000, false)]);
        assert!(same_topology(&last, &noisy));
        assert!(!is_news(&config, None, &last, &noisy, now));
        // 1 ms → 9 ms: more than half and more than 5 ms.
        let slow = advert(&[(2, 9_000, false), (3, 2_000, false)]);
        assert!(is_news(&config, None, &last, &slow, now));
        // ...but not twice within COST_NEWS_INTERVAL.
        assert!(!is_news(&config, Some(now), &last, &slow, now));
        let later = now + COST_NEWS_INTERVAL;
        assert!(is_news(&config, Some(now), &last, &slow, later));
        // A link gone, or settling, is news at once.
        let fewer = advert(&[(2, 1_000, false)]);
        assert!(is_news(&config, Some(now), &last, &fewer, now));
        let settling = advert(&[(2, 1_000, true), (3, 2_000, false)]);
        assert!(is_news(&config, Some(now), &last, &settling, now));
    }

    #[test]
    fn only_backbone_changes_are_for_stubs() {
        // Neighbours 10 and 11 are stubs, 2 and 3 relays.
        let is_stub = |n: NodeId| n.0 >= 10;
        let held = advert(&[(2, 1_000, false), (3, 1_000, false), (10, 500, false)]);
        // A stub link comes, goes or settles: not for stubs.
        let more = advert(&[
            (2, 1_000, false),
            (3, 1_000, false),
            (10, 500, false),
            (11, 1, true),
        ]);
        let fewer = advert(&[(2, 1_000, false), (3, 1_000, false)]);
        assert!(!for_stubs(&held, &more, is_stub));
        assert!(!for_stubs(&held, &fewer, is_stub));
        // A relay link goes, or a role changes: for stubs.
        let cut = advert(&[(2, 1_000, false), (10, 500, false)]);
        let mut no_transit = held.clone();
        no_transit.no_transit = true;
        assert!(for_stubs(&held, &cut, is_stub));
        assert!(for_stubs(&held, &no_transit, is_stub));
        // It comes back in hold-down: not yet (still absent to stubs); its
        // hold-down ends: for stubs.
        let healing = advert(&[(2, 1_000, false), (3, 1_000, true), (10, 500, false)]);
        assert!(!for_stubs(&cut, &healing, is_stub));
        assert!(for_stubs(&healing, &held, is_stub));
        // A neighbour nobody knows is a relay till its advert says not.
        let unknown = advert(&[
            (2, 1_000, false),
            (3, 1_000, false),
            (10, 500, false),
            (99, 1, false),
        ]);
        assert!(for_stubs(&held, &unknown, |n| n.0 >= 10 && n.0 < 99));
    }

    #[test]
    fn a_stubs_view_holds_until_a_backbone_change() {
        let is_stub = |n: NodeId| n.0 >= 10;
        let numbered = |seq: u64, links: &[(u64, u32, bool)]| Advert {
            seq,
            ..advert(links)
        };
        let mut views = StubViews::default();
        let after = |views: &StubViews, held: Option<&Advert>, new: &Advert| {
            views.after(held, new, held.is_none_or(|h| for_stubs(h, new, is_stub)))
        };
        let first = numbered(5, &[(2, 1_000, false), (10, 500, false)]);
        views.set(first.origin, after(&views, None, &first));
        // A refresh and a stub-link change keep the view of seq 5.
        let refresh = numbered(6, &[(2, 1_200, false), (10, 500, false)]);
        views.set(first.origin, after(&views, Some(&first), &refresh));
        let stub_gone = numbered(7, &[(2, 1_200, false)]);
        views.set(first.origin, after(&views, Some(&refresh), &stub_gone));
        assert!(views.holds(&stub_gone, 5));
        assert!(!views.holds(&stub_gone, 4));
        // A backbone change starts a new view.
        let cut = numbered(8, &[(3, 1_000, false)]);
        views.set(first.origin, after(&views, Some(&stub_gone), &cut));
        assert!(!views.holds(&cut, 7));
        assert!(views.holds(&cut, 8));
        // An origin not tracked: the same advert or a newer one only.
        let other = Advert {
            origin: NodeId(2),
            ..cut.clone()
        };
        assert!(!views.holds(&other, 7) && views.holds(&other, 8));
        views.retain(|n| n != first.origin);
        assert!(!views.holds(&cut, 7));
    }

    #[test]
    fn own_up_links_take_the_advertised_cost() {
        let a = advert(&[(2, 3_000, true)]);
        let live = |n: u64, up: bool| OwnLink {
            neighbor: NodeId(n),
            up,
            settled: true,
            rtt_us: 100,
            loss_permille: 7,
            spread_us: 0,
        };
        let mut own = [live(2, true), live(3, true), live(2, false)];
        cost_as_advertised(&mut own, &a);
        assert_eq!(
            (own[0].rtt_us, own[0].loss_permille, own[0].settled),
            (3_000, 0, false)
        );
        // Not advertised (a truncated advert): from probes.
        assert_eq!(own[1].rtt_us, 100);
        // Down: stays down, cost untouched.
        assert_eq!((own[2].up, own[2].rtt_us), (false, 100));
    }
}
