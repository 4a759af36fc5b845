//! Link probing: each direct link's probes and their answers
//! (`crate::health`), path MTU discovery on it (`crate::pmtu`), and the
//! endpoint's own stall detection (Lifeguard's local health: a node that
//! was not running must not blame its peers for the probes it missed).
//!
//! What a link's state means for routes and adverts is the endpoint's:
//! these functions report a [`LinkChange`] and leave it at that.

use std::time::{Duration, Instant};

use crate::control::Control;
use crate::health::{HealthConfig, LinkChange, LinkStatus};
use crate::pmtu::PathMtu;
use crate::timers::REKEY_AFTER_TIME;
use crate::wire::{udp_overhead, TRANSPORT_OVERHEAD};

use super::api::{Event, PeerId};
use super::net::Cx;
use super::peer::Peers;
use super::RETIRE_AFTER;

/// What one run of a link's timers found.
pub(crate) struct Tick {
    /// The link went down or came back.
    pub change: Option<LinkChange>,
    /// A learned peer whose link has been down, idle, for [`RETIRE_AFTER`].
    pub retire: bool,
    /// The session is missing, expired, or (ours) due for rekeying: probing
    /// keeps sessions as data does, so a quiet mesh keeps measuring.
    pub stale: bool,
    /// A usable session exists.
    pub session: bool,
    /// The probe to send now, if any.
    pub probe: Option<u32>,
}

/// Runs `peer`'s link timers: counts lost probes, decides retirement and
/// the next probe. `None` when the link is not probed.
pub(crate) fn tick(peers: &mut Peers, now: Instant, peer: PeerId) -> Option<Tick> {
    let p = &mut peers[peer];
    let learned = p.learned;
    let session = p.sessions.current(now).is_some();
    let stale = p.sessions.current(now).is_none_or(|s| {
        s.is_initiator() && now.saturating_duration_since(s.established()) >= REKEY_AFTER_TIME
    });
    let h = p.health.as_mut()?;
    let change = h.handle_timeout(now);
    let gone = h
        .down_since()
        .is_some_and(|t| now.saturating_duration_since(t) >= RETIRE_AFTER);
    if learned && gone && !h.carries_data(now) {
        return Some(Tick {
            change,
            retire: true,
            stale,
            session,
            probe: None,
        });
    }
    let probe = if session {
        h.poll_probe(now)
    } else {
        h.defer_probe(now);
        None
    };
    Some(Tick {
        change,
        retire: false,
        stale,
        session,
        probe,
    })
}

/// Sends what [`tick`] decided on `peer`'s direct link: the probe, and the
/// path MTU discovery's next probe while a session is usable.
pub(crate) fn send(cx: &mut Cx<'_>, now: Instant, peer: PeerId, t: &Tick) {
    let Some(dst) = cx.peers[peer].endpoint else {
        return;
    };
    if let Some(seq) = t.probe {
        if let Some(d) = cx.seal_control(now, peer, &Control::Probe { seq }) {
            cx.out.stats.probes_sent += 1;
            cx.send_direct(dst, d);
        }
    }
    if t.session && cx.local.config.pmtu_discovery {
        probe_path_mtu(cx, now, peer);
    }
}

/// Path MTU discovery on `peer`'s direct link: a lost probe counted, the
/// next one sent. Only a working link is measured (a dead one loses every
/// size).
fn probe_path_mtu(cx: &mut Cx<'_>, now: Instant, peer: PeerId) {
    let ceiling = cx.local.config.underlay_mtu;
    let p = &mut cx.peers[peer];
    let Some(dst) = p.endpoint else { return };
    let Some(h) = p.health.as_ref().filter(|h| h.status() == LinkStatus::Up) else {
        return;
    };
    // A few RTTs; an unmeasured link gets a second.
    let timeout = h.srtt().map_or(Duration::from_secs(1), |r| {
        (3 * r).clamp(Duration::from_millis(200), Duration::from_secs(1))
    });
    let m = p.pmtu.get_or_insert_with(|| PathMtu::new(ceiling, now));
    let changed = m.handle_timeout(now);
    let probe = m.poll_probe(now, timeout);
    pmtu_changed(cx, peer, changed);
    let Some((seq, size)) = probe else { return };
    let len = size.saturating_sub(udp_overhead(&dst) + TRANSPORT_OVERHEAD);
    if let Some(d) = cx.seal_control(now, peer, &Control::MtuProbe { seq, len }) {
        cx.out.stats.pmtu_probes_sent += 1;
        cx.send_direct(dst, d);
    }
}

/// Reports a path MTU change of `peer`'s direct link.
fn pmtu_changed(cx: &mut Cx<'_>, peer: PeerId, changed: bool) {
    let mtu = cx.peers[peer].pmtu.as_ref().map(PathMtu::mtu);
    if let Some(mtu) = mtu.filter(|_| changed) {
        cx.out.event(Event::PathMtuChanged { peer, mtu });
    }
}

/// The answer to our probe `seq`, which came over the direct link.
pub(crate) fn on_probe_reply(
    peers: &mut Peers,
    now: Instant,
    peer: PeerId,
    seq: u32,
) -> Option<LinkChange> {
    peers[peer]
        .health
        .as_mut()
        .and_then(|h| h.on_reply(now, seq))
}

/// The answer to our path MTU probe `seq`, over the direct link.
pub(crate) fn on_mtu_reply(cx: &mut Cx<'_>, now: Instant, peer: PeerId, seq: u32) {
    let changed = cx.peers[peer]
        .pmtu
        .as_mut()
        .is_some_and(|m| m.on_ack(now, seq));
    pmtu_changed(cx, peer, changed);
}

/// Detects that this node itself was not running (Lifeguard's local
/// health): the deadline last told to the driver, due long ago and only now
/// acted on, with no call in between.
#[derive(Debug, Default)]
pub(crate) struct StallDetector {
    /// When `handle_timeout` last ran.
    last_timeout: Option<Instant>,
    /// The deadline `poll_timeout` last told the driver.
    told: Option<Instant>,
}

impl StallDetector {
    /// `poll_timeout` told the driver `deadline`.
    pub fn told(&mut self, deadline: Option<Instant>) {
        self.told = deadline;
    }

    /// `handle_timeout` runs at `now`: how late, if this node stalled by at
    /// least the threshold. A deadline merely left in the past would be
    /// acted on at every call, so the gap since the previous call must
    /// cover the lateness.
    pub fn check(&mut self, now: Instant, health: Option<&HealthConfig>) -> Option<Duration> {
        let last = self.last_timeout.replace(now);
        let threshold = health.and_then(|h| h.stall_threshold)?;
        let (due, last) = (self.told?, last?);
        let late = now.saturating_duration_since(due);
        if late < threshold || now.saturating_duration_since(last) < late {
            return None;
        }
        Some(late)
    }
}
