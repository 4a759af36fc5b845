//! Suspected relays: routes leave a node one of its neighbours says it
//! lost, before the others confirm it.
//!
//! When a relay crashes, every node routing through it keeps doing so until
//! each of its neighbours, by its own probes, withdraws its link to it: a
//! crashed node's own advert still lists them all. The first neighbour to
//! notice floods its advert within tens of milliseconds, but the others
//! each need their own lost probes (a suspicion probe at once, then a few
//! fast ones: ~0.3 s), and until the last of them has, some paths still
//! lead into the dead node.
//!
//! The evidence is in the database already: neighbour D's new advert no
//! longer lists X while X's own advert still lists D. Either X has not
//! noticed yet (a cut link: X's own advert withdrawing D follows within
//! its detection time) or X cannot advertise any more. Every node reading
//! it then adds [`super::RouteConfig::suspect_penalty_us`] to every link
//! into X for [`super::RouteConfig::suspect_hold`], and a route whose next
//! hop is suspected moves at once (hysteresis keeps no suspected hop): paths
//! avoid X wherever another way exists, and still use it where none does.
//! Neither routes nor links are taken out: the probes stay the judges of
//! links, and a wrong suspicion costs a detour, never reachability.
//!
//! A suspicion ends when X's own newer advert arrives (X is alive and
//! speaking) or when its hold runs out (by then X's neighbours have
//! confirmed or not by their probes). It is raised at most once per advert
//! of X: a member that keeps withdrawing and re-adding its link to X diverts
//! traffic from X for at most one hold per advert X originates.

use std::collections::HashMap;
use std::time::Instant;

use super::Ids;
use crate::wire::NodeId;

/// One suspected node.
#[derive(Debug, Clone, Copy)]
struct Suspicion {
    /// The sequence number of the node's advert when it was raised.
    seq: u64,
    /// When it stops counting.
    until: Instant,
    /// Counting in route computations.
    active: bool,
}

/// The suspected nodes of one router.
#[derive(Debug, Clone, Default)]
pub(super) struct Suspicions {
    by_node: HashMap<NodeId, Suspicion, Ids>,
}

impl Suspicions {
    /// Suspects `node`, whose held advert has sequence number `seq`, until
    /// `until`. False if it was suspected before on this same advert.
    pub fn raise(&mut self, node: NodeId, seq: u64, until: Instant) -> bool {
        if self.by_node.get(&node).is_some_and(|s| s.seq == seq) {
            return false;
        }
        let s = Suspicion {
            seq,
            until,
            active: true,
        };
        self.by_node.insert(node, s);
        true
    }

    /// `node` spoke (a newer advert) or is gone from the database. True if
    /// a suspicion that counted ended.
    pub fn clear(&mut self, node: NodeId) -> bool {
        self.by_node.remove(&node).is_some_and(|s| s.active)
    }

    /// Whether routes avoid `node`.
    pub fn is_active(&self, node: NodeId) -> bool {
        self.by_node.get(&node).is_some_and(|s| s.active)
    }

    /// Ends the suspicions whose hold is over at `now` (they stay recorded,
    /// so the same advert does not raise them again). True if any ended.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut ended = false;
        for s in self.by_node.values_mut() {
            if s.active && s.until <= now {
                s.active = false;
                ended = true;
            }
        }
        ended
    }

    /// When the next suspicion's hold ends.
    pub fn deadline(&self) -> Option<Instant> {
        (self.by_node.values())
            .filter(|s| s.active)
            .map(|s| s.until)
            .min()
    }

    /// Drops the records of nodes `keep` says are gone from the database.
    pub fn retain(&mut self, keep: impl Fn(NodeId) -> bool) {
        self.by_node.retain(|n, _| keep(*n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_suspicion_counts_until_its_hold_ends_or_the_node_speaks_and_is_raised_once_per_advert() {
        let t0 = Instant::now();
        let x = NodeId(7);
        let mut s = Suspicions::default();
        assert!(s.raise(x, 3, t0 + Duration::from_secs(2)));
        assert!(s.is_active(x));
        assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(2)));
        assert!(!s.raise(x, 3, t0 + Duration::from_secs(5)), "same advert");
        assert!(!s.expire(t0 + Duration::from_secs(1)));
        assert!(s.is_active(x));
        assert!(s.expire(t0 + Duration::from_secs(2)));
        assert!(!s.is_active(x));
        assert_eq!(s.deadline(), None);
        assert!(
            !s.raise(x, 3, t0 + Duration::from_secs(9)),
            "expired, same advert"
        );
        assert!(s.raise(x, 4, t0 + Duration::from_secs(9)), "a newer advert");
        assert!(s.clear(x));
        assert!(!s.is_active(x));
        assert!(!s.clear(x));
    }
}
