//! Intrusion detection and prevention, per peer identity (sans-IO).
//!
//! The endpoint reports what it already counts, attributed to the
//! authenticated peer that sent it ([`Evidence`]): packets the policy
//! denied (with their destination), inner sources not in the sender's
//! certificate, control messages that do not decode. (Replayed counters
//! are not evidence: anyone on the path can replay a peer's packets.)
//! Each [`Scenario`] is a leaky bucket over one kind of evidence: every
//! piece adds one (for a scan, every *distinct* denied destination and
//! port, so a client retrying one denied service is not a scanner), the
//! bucket drains at `leak_per_sec`, and overflowing `capacity` is an
//! offence. Offences escalate, up to the scenario's strongest response:
//! the first raises an alert, the second also rate-limits the peer's
//! data, the third quarantines it (drops its data both ways; its control
//! messages, handshakes and probes still pass, so it can recover and the
//! mesh's routing is undisturbed) for a time that doubles with each
//! quarantine. Offences are forgotten after [`IdsConfig::forgive_after`]
//! without one; an operator can release a peer at once.
//!
//! It never touches a clock or a socket: time comes in with every call.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::wire::NodeId;

mod habit;

pub use habit::Habit;

/// What a peer did, as the endpoint saw it in the peer's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The policy denied a packet from it: to `dst`, IP protocol `proto`,
    /// destination port (ICMP type) `port`.
    Denied {
        /// Inner destination.
        dst: IpAddr,
        /// IP protocol.
        proto: u8,
        /// Destination port, or ICMP type.
        port: u16,
    },
    /// An inner packet whose source is not in its certificate.
    Spoofed,
    /// A control message that does not decode.
    BadControl,
    /// A signed accusation of a node it accused of nothing before
    /// (`crate::quorum`): attributable wherever it came from.
    Accusation,
    /// A data plaintext that is not an IP packet: no TUN device makes one.
    Junk,
    /// A handshake it initiated and we answered (a replayed initiation
    /// never completes, so only the member itself makes one).
    Handshake,
}

/// The kinds of evidence, as scenarios name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvidenceKind {
    /// Distinct denied destinations (address, protocol, port): scans.
    DeniedTargets,
    /// Every denied packet.
    Denied,
    /// See [`Evidence::Spoofed`].
    Spoofed,
    /// See [`Evidence::BadControl`].
    BadControl,
    /// See [`Evidence::Accusation`].
    Accusations,
    /// See [`Evidence::Junk`].
    Junk,
    /// See [`Evidence::Handshake`].
    Handshakes,
}

/// A response, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Response {
    /// Logged, counted, listed; nothing else.
    Alert,
    /// The peer's data packets are limited to [`IdsConfig::rate_limit_pps`].
    RateLimit,
    /// The peer's data is dropped both ways until the quarantine ends.
    Quarantine,
}

impl Response {
    /// The response named `name` (as [`Response::name`] spells it).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Alert, Self::RateLimit, Self::Quarantine]
            .into_iter()
            .find(|r| r.name() == name)
    }

    /// The name in configuration, alerts and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::RateLimit => "rate-limit",
            Self::Quarantine => "quarantine",
        }
    }
}

/// One detection rule: a leaky bucket over one kind of evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name, as alerts and metrics show it.
    pub name: &'static str,
    /// What fills the bucket.
    pub evidence: EvidenceKind,
    /// Pieces of evidence the bucket holds; one more is an offence.
    pub capacity: f64,
    /// Pieces it forgets per second.
    pub leak_per_sec: f64,
    /// The strongest response repeated offences reach.
    pub max_response: Response,
}

/// A scenario's thresholds as a policy sets them (`[detection.NAME]`),
/// for every node the policy reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// The scenario (one of [`SCENARIOS`]).
    pub scenario: String,
    /// Pieces of evidence the bucket holds.
    pub capacity: u32,
    /// Thousandths of a piece it forgets per second.
    pub leak_milli_per_sec: u32,
    /// The strongest response.
    pub response: Response,
}

/// The scenarios' names, as a policy's `[detection.NAME]` tables use them.
pub const SCENARIOS: [&str; 7] = [
    "scan",
    "denied-flood",
    "spoofing",
    "bad-control",
    "junk",
    "handshakes",
    "accusations",
];

/// Detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct IdsConfig {
    /// Respond (rate-limit, quarantine) as well as alert. Off: alerts only.
    pub prevent: bool,
    /// The scenarios.
    pub scenarios: Vec<Scenario>,
    /// The first quarantine's length; each further one doubles it.
    pub quarantine: Duration,
    /// The longest quarantine.
    pub quarantine_max: Duration,
    /// Data packets a second a rate-limited peer may send (burst: twice).
    pub rate_limit_pps: u32,
    /// How long a rate limit lasts.
    pub rate_limit_for: Duration,
    /// A peer's offences are forgotten after this long without a new one
    /// (its quarantine count too).
    pub forgive_after: Duration,
    /// Mesh-wide agreement on quarantines (`crate::quorum`).
    pub agreement: crate::quorum::QuorumConfig,
}

impl Default for IdsConfig {
    fn default() -> Self {
        Self {
            prevent: true,
            scenarios: default_scenarios(),
            quarantine: Duration::from_secs(60),
            quarantine_max: Duration::from_secs(3600),
            rate_limit_pps: 100,
            rate_limit_for: Duration::from_secs(60),
            forgive_after: Duration::from_secs(3600),
            agreement: crate::quorum::QuorumConfig::default(),
        }
    }
}

/// The built-in scenarios (docs/threat-model.md, "Detection").
pub fn default_scenarios() -> Vec<Scenario> {
    vec![
        // 20 distinct denied services at once, or one new one a second for
        // a minute: no client does that; a scan does it in a blink.
        Scenario {
            name: "scan",
            evidence: EvidenceKind::DeniedTargets,
            capacity: 20.0,
            leak_per_sec: 0.5,
            max_response: Response::Quarantine,
        },
        // Hammering what the policy denies (one service, retried fast).
        // Alerts only: a flow that a policy push just denied keeps coming
        // at full rate until the push reaches its sender (a fraction of a
        // second), and each denied packet costs this node one lookup.
        Scenario {
            name: "denied-flood",
            evidence: EvidenceKind::Denied,
            capacity: 500.0,
            leak_per_sec: 50.0,
            max_response: Response::Alert,
        },
        // Sending as an address it does not hold: a compromised or
        // misrouting member. A few are a misconfiguration worth an alert.
        Scenario {
            name: "spoofing",
            evidence: EvidenceKind::Spoofed,
            capacity: 10.0,
            leak_per_sec: 1.0,
            max_response: Response::Quarantine,
        },
        // Malformed control messages in an authenticated session: no
        // correct implementation sends one.
        Scenario {
            name: "bad-control",
            evidence: EvidenceKind::BadControl,
            capacity: 10.0,
            leak_per_sec: 0.2,
            max_response: Response::Quarantine,
        },
        // Data that is not IP, inside an authenticated session: no correct
        // implementation sends it (a TUN device yields only IP packets).
        Scenario {
            name: "junk",
            evidence: EvidenceKind::Junk,
            capacity: 10.0,
            leak_per_sec: 0.2,
            max_response: Response::Quarantine,
        },
        // Handshakes a member initiates: a rekey every 2 minutes, a few
        // after a restart or a NAT change. 30 at once, or one every 10 s
        // for long, is a member spending our CPU (each costs us an ML-KEM
        // encapsulation and three X25519).
        Scenario {
            name: "handshakes",
            evidence: EvidenceKind::Handshakes,
            capacity: 30.0,
            leak_per_sec: 0.1,
            max_response: Response::Quarantine,
        },
        // A member accusing more nodes than anyone catches scanning: an
        // honest node rarely quarantines more than one or two. Alerts
        // only: members that scan one node on purpose would otherwise
        // get it quarantined for accusing them.
        Scenario {
            name: "accusations",
            evidence: EvidenceKind::Accusations,
            capacity: 4.0,
            leak_per_sec: 1.0 / 600.0,
            max_response: Response::Alert,
        },
    ]
}

/// Most distinct denied targets remembered per peer (beyond, every denied
/// packet counts as a new target: a scan too wide to track is a scan).
const MAX_TARGETS: usize = 1024;
/// Most peers with detection state (evidence comes only from peers with
/// sessions, so this bounds memory, not who is watched: beyond it, the
/// state of peers without a sanction goes first).
const MAX_TRACKED: usize = 16_384;
/// Most alerts kept for listing.
const MAX_ALERTS: usize = 256;

/// A raised alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// When.
    pub at: Instant,
    /// Who.
    pub node: NodeId,
    /// Which scenario overflowed.
    pub scenario: &'static str,
    /// What was done: the response this offence reached (an alert only,
    /// with prevention off).
    pub response: Response,
    /// The peer's offences in this scenario, this one included.
    pub offence: u32,
    /// Until when a rate limit or quarantine holds.
    pub until: Option<Instant>,
    /// For a quarantine by agreement (scenario `quorum`): the accusers
    /// whose accusations made the quorum; empty for this node's own.
    pub accusers: Vec<NodeId>,
}

/// A sanction in force against a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sanction {
    /// Who.
    pub node: NodeId,
    /// The strongest response in force.
    pub response: Response,
    /// Until when.
    pub until: Instant,
    /// Quarantines this node has put on it (each doubles the next).
    pub quarantines: u32,
    /// The quarantine is the mesh's (a quorum of accusers), not this
    /// node's own.
    pub by_quorum: bool,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    level: f64,
    at: Option<Instant>,
    offences: u32,
    last_offence: Option<Instant>,
}

impl Bucket {
    /// Drains to `now`.
    fn drain(&mut self, now: Instant, leak: f64) {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.level = (self.level - dt * leak).max(0.0);
        }
        self.at = Some(now);
    }
}

/// ...plus this many packets (a peer denied nothing so far is not flagged
/// for a handful).
const DENIED_FLOOR: f64 = 20.0;

#[derive(Debug, Clone, Default)]
struct PeerState {
    buckets: Vec<Bucket>,
    habit: Habit,
    surges: u32,
    targets: HashSet<(IpAddr, u8, u16)>,
    quarantined_until: Option<Instant>,
    /// When this node's own quarantine began, and for which scenario.
    quarantined_since: Option<(Instant, &'static str)>,
    /// Quarantined by agreement of other nodes until then.
    quorum_until: Option<Instant>,
    quarantines: u32,
    limited_until: Option<Instant>,
    tokens: f64,
    tokens_at: Option<Instant>,
}

impl PeerState {
    fn sanctioned(&self, now: Instant) -> bool {
        self.quarantined(now) || self.limited_until.is_some_and(|t| t > now)
    }

    fn quarantined(&self, now: Instant) -> bool {
        self.quarantined_until.is_some_and(|t| t > now)
            || self.quorum_until.is_some_and(|t| t > now)
    }
}

/// What to do with one data packet from (or to) a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing holds against it.
    Pass,
    /// Over its rate limit: drop.
    Limited,
    /// Quarantined: drop.
    Quarantined,
}

/// Detection state of one node.
#[derive(Debug, Clone)]
pub struct Detector {
    config: IdsConfig,
    /// The scenarios as configured, before a policy's tuning.
    base: Vec<Scenario>,
    peers: HashMap<NodeId, PeerState>,
    alerts: VecDeque<Alert>,
    /// Alerts raised, by scenario and response.
    pub counts: HashMap<(&'static str, Response), u64>,
    last_expiry: Option<Instant>,
    /// The latest end of any sanction ever set: before it, packets need a
    /// lookup; after it (the usual case), none does.
    sanctions_until: Option<Instant>,
}

/// Keeps `alert` for listing (the oldest goes beyond [`MAX_ALERTS`]) and
/// counts it by scenario and response.
fn record(
    alerts: &mut VecDeque<Alert>,
    counts: &mut HashMap<(&'static str, Response), u64>,
    alert: &Alert,
) {
    *counts.entry((alert.scenario, alert.response)).or_default() += 1;
    if alerts.len() == MAX_ALERTS {
        alerts.pop_front();
    }
    alerts.push_back(alert.clone());
}

/// [`Detector::expire`] does its work at most this often.
const EXPIRE_EVERY: Duration = Duration::from_secs(10);

impl Detector {
    /// A detector with `config`.
    pub fn new(config: IdsConfig) -> Self {
        Self {
            base: config.scenarios.clone(),
            config,
            peers: HashMap::new(),
            alerts: VecDeque::new(),
            counts: HashMap::new(),
            last_expiry: None,
            sanctions_until: None,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &IdsConfig {
        &self.config
    }

    /// Puts a policy's thresholds in force over the configured ones (an
    /// empty list restores them). Buckets keep their levels: a scenario's
    /// evidence so far counts against its new capacity.
    pub fn tune(&mut self, tuning: &[Tuning]) {
        self.config.scenarios = (self.base.iter())
            .map(|s| match tuning.iter().find(|t| t.scenario == s.name) {
                Some(t) => Scenario {
                    capacity: f64::from(t.capacity),
                    leak_per_sec: f64::from(t.leak_milli_per_sec) / 1000.0,
                    max_response: t.response,
                    ..s.clone()
                },
                None => s.clone(),
            })
            .collect();
    }

    /// Evidence against `node`; the alert it raised, if it overflowed a
    /// scenario.
    pub fn observe(&mut self, now: Instant, node: NodeId, ev: Evidence) -> Option<Alert> {
        if self.peers.len() >= MAX_TRACKED && !self.peers.contains_key(&node) {
            self.peers.retain(|_, s| s.sanctioned(now));
            if self.peers.len() >= MAX_TRACKED {
                return None;
            }
        }
        let scenarios = self.config.scenarios.len();
        let st = self.peers.entry(node).or_default();
        st.buckets.resize_with(scenarios, Bucket::default);
        if st.habit.floor == 0.0 {
            st.habit.floor = DENIED_FLOOR;
        }
        // A scan counts new targets only.
        let new_target = match ev {
            Evidence::Denied { dst, proto, port } => {
                st.targets.len() >= MAX_TARGETS || st.targets.insert((dst, proto, port))
            }
            _ => false,
        };
        let mut raised = None;
        if matches!(ev, Evidence::Denied { .. }) && st.habit.add(now, 1.0) {
            // A departure from its own habit: an alert, never a sanction
            // (a habit learned from little is a weak judge).
            st.surges += 1;
            let alert = Alert {
                at: now,
                node,
                scenario: "denied-surge",
                response: Response::Alert,
                offence: st.surges,
                until: None,
                accusers: Vec::new(),
            };
            record(&mut self.alerts, &mut self.counts, &alert);
            raised = Some(alert);
        }
        for (i, sc) in self.config.scenarios.iter().enumerate() {
            let counts = match (sc.evidence, ev) {
                (EvidenceKind::DeniedTargets, Evidence::Denied { .. }) => new_target,
                (EvidenceKind::Denied, Evidence::Denied { .. })
                | (EvidenceKind::Spoofed, Evidence::Spoofed)
                | (EvidenceKind::BadControl, Evidence::BadControl)
                | (EvidenceKind::Accusations, Evidence::Accusation)
                | (EvidenceKind::Junk, Evidence::Junk)
                | (EvidenceKind::Handshakes, Evidence::Handshake) => true,
                _ => false,
            };
            if !counts {
                continue;
            }
            let b = &mut st.buckets[i];
            b.drain(now, sc.leak_per_sec);
            if sc.evidence == EvidenceKind::DeniedTargets && b.level == 0.0 {
                // A new episode: targets of one long past count again.
                st.targets.clear();
                if let Evidence::Denied { dst, proto, port } = ev {
                    st.targets.insert((dst, proto, port));
                }
            }
            b.level += 1.0;
            if b.level <= sc.capacity {
                continue;
            }
            b.level = 0.0;
            if b.last_offence
                .is_some_and(|t| now.saturating_duration_since(t) >= self.config.forgive_after)
            {
                b.offences = 0;
                st.quarantines = 0;
            }
            b.offences += 1;
            b.last_offence = Some(now);
            let step = match b.offences {
                1 => Response::Alert,
                2 => Response::RateLimit,
                _ => Response::Quarantine,
            };
            let mut response = step.min(sc.max_response);
            if !self.config.prevent {
                response = Response::Alert;
            }
            let until = match response {
                Response::Alert => None,
                Response::RateLimit => {
                    let t = now + self.config.rate_limit_for;
                    st.limited_until = Some(st.limited_until.map_or(t, |u| u.max(t)));
                    st.tokens = f64::from(self.config.rate_limit_pps) * 2.0;
                    st.tokens_at = Some(now);
                    st.limited_until
                }
                Response::Quarantine => {
                    let d = (self.config.quarantine)
                        .saturating_mul(1 << st.quarantines.min(16))
                        .min(self.config.quarantine_max);
                    st.quarantines += 1;
                    let t = now + d;
                    if st.quarantined_until.is_none_or(|u| u <= now) {
                        st.quarantined_since = Some((now, sc.name));
                    }
                    st.quarantined_until = Some(st.quarantined_until.map_or(t, |u| u.max(t)));
                    st.quarantined_until
                }
            };
            if let Some(t) = until {
                self.sanctions_until = Some(self.sanctions_until.map_or(t, |u| u.max(t)));
            }
            let alert = Alert {
                at: now,
                node,
                scenario: sc.name,
                response,
                offence: b.offences,
                until,
                accusers: Vec::new(),
            };
            record(&mut self.alerts, &mut self.counts, &alert);
            if raised
                .as_ref()
                .is_none_or(|r: &Alert| r.response < alert.response)
            {
                raised = Some(alert);
            }
        }
        raised
    }

    /// Whether a data packet from or to `node` may pass now (a
    /// rate-limited peer's packets take tokens).
    pub fn verdict(&mut self, now: Instant, node: NodeId) -> Verdict {
        if self.sanctions_until.is_none_or(|t| t <= now) {
            return Verdict::Pass;
        }
        let Some(st) = self.peers.get_mut(&node) else {
            return Verdict::Pass;
        };
        if st.quarantined(now) {
            return Verdict::Quarantined;
        }
        if st.limited_until.is_none_or(|t| t <= now) {
            return Verdict::Pass;
        }
        let rate = f64::from(self.config.rate_limit_pps);
        let dt = st
            .tokens_at
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        st.tokens = (st.tokens + dt * rate).min(rate * 2.0);
        st.tokens_at = Some(now);
        if st.tokens >= 1.0 {
            st.tokens -= 1.0;
            Verdict::Pass
        } else {
            Verdict::Limited
        }
    }

    /// Whether `node` is quarantined now.
    pub fn is_quarantined(&self, now: Instant, node: NodeId) -> bool {
        self.sanctions_until.is_some_and(|t| t > now)
            && (self.peers.get(&node)).is_some_and(|s| s.quarantined(now))
    }

    /// Peers under a sanction now, by node.
    pub fn sanctioned(&self, now: Instant) -> Vec<Sanction> {
        let mut v: Vec<_> = (self.peers.iter())
            .filter_map(|(n, s)| {
                let own = s.quarantined_until.filter(|t| *t > now);
                let quorum = s.quorum_until.filter(|t| *t > now);
                let limited = s.limited_until.filter(|t| *t > now);
                let (response, until, by_quorum) = match (own, quorum, limited) {
                    (Some(t), q, _) => (Response::Quarantine, t.max(q.unwrap_or(t)), false),
                    (None, Some(t), _) => (Response::Quarantine, t, true),
                    (None, None, Some(t)) => (Response::RateLimit, t, false),
                    _ => return None,
                };
                Some(Sanction {
                    node: *n,
                    response,
                    until,
                    quarantines: s.quarantines,
                    by_quorum,
                })
            })
            .collect();
        v.sort_by_key(|x| x.node);
        v
    }

    /// This node's own quarantines in force: who, since when, until when,
    /// for which scenario (what it accuses the mesh of, `crate::quorum`).
    pub fn own_quarantines(&self, now: Instant) -> Vec<(NodeId, Instant, Instant, &'static str)> {
        let mut v: Vec<_> = (self.peers.iter())
            .filter_map(|(n, s)| {
                let until = s.quarantined_until.filter(|t| *t > now)?;
                let (since, scenario) = s.quarantined_since?;
                Some((*n, since, until, scenario))
            })
            .collect();
        v.sort_by_key(|x| x.0);
        v
    }

    /// Sets (or, `None`, lifts) the quarantine the mesh agreed on against
    /// `node`; the alert it raises when one starts. With prevention off
    /// nothing is set and no alert is raised.
    pub fn set_quorum(
        &mut self,
        now: Instant,
        node: NodeId,
        until: Option<Instant>,
        accusers: Vec<NodeId>,
    ) -> Option<Alert> {
        if !self.config.prevent {
            return None;
        }
        let Some(until) = until else {
            if let Some(st) = self.peers.get_mut(&node) {
                st.quorum_until = None;
            }
            return None;
        };
        if self.peers.len() >= MAX_TRACKED && !self.peers.contains_key(&node) {
            self.peers.retain(|_, s| s.sanctioned(now));
        }
        let st = self.peers.entry(node).or_default();
        let started = st.quorum_until.is_none_or(|t| t <= now);
        st.quorum_until = Some(until);
        self.sanctions_until = Some(self.sanctions_until.map_or(until, |u| u.max(until)));
        if !started {
            return None;
        }
        let alert = Alert {
            at: now,
            node,
            scenario: "quorum",
            response: Response::Quarantine,
            offence: 1,
            until: Some(until),
            accusers,
        };
        record(&mut self.alerts, &mut self.counts, &alert);
        Some(alert)
    }

    /// Lifts every sanction on `node` and forgets its evidence (an
    /// operator's release); whether there was one.
    pub fn release(&mut self, now: Instant, node: NodeId) -> bool {
        self.peers.remove(&node).is_some_and(|s| s.sanctioned(now))
    }

    /// The most recent alerts, oldest first.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter()
    }

    /// Forgets peers with nothing held against them any more (at most
    /// every 10 s; call it as often as convenient).
    pub fn expire(&mut self, now: Instant) {
        if self
            .last_expiry
            .is_some_and(|t| now.saturating_duration_since(t) < EXPIRE_EVERY)
        {
            return;
        }
        self.last_expiry = Some(now);
        let forgive = self.config.forgive_after;
        let leaks: Vec<f64> = self
            .config
            .scenarios
            .iter()
            .map(|s| s.leak_per_sec)
            .collect();
        self.peers.retain(|_, s| {
            if s.sanctioned(now) || s.habit.remembered(now) {
                return true;
            }
            s.buckets.iter_mut().zip(&leaks).any(|(b, leak)| {
                b.drain(now, *leak);
                b.level > 0.0
                    || b.last_offence
                        .is_some_and(|t| now.saturating_duration_since(t) < forgive)
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: NodeId = NodeId(7);

    fn denied(i: u16) -> Evidence {
        Evidence::Denied {
            dst: IpAddr::from([100, 64, 0, 2]),
            proto: 6,
            port: i,
        }
    }

    #[test]
    fn a_port_scan_escalates_from_alert_to_rate_limit_to_quarantine() {
        let t = Instant::now();
        let mut d = Detector::new(IdsConfig::default());
        let mut responses = Vec::new();
        for port in 1..=200 {
            if let Some(a) = d.observe(t, N, denied(port)) {
                responses.push((port, a.response));
            }
        }
        assert_eq!(
            responses,
            vec![
                (21, Response::Alert),
                (42, Response::RateLimit),
                (63, Response::Quarantine),
                (84, Response::Quarantine),
                (105, Response::Quarantine),
                (126, Response::Quarantine),
                (147, Response::Quarantine),
                (168, Response::Quarantine),
                (189, Response::Quarantine),
            ]
        );
        assert_eq!(d.verdict(t, N), Verdict::Quarantined);
        assert_eq!(d.verdict(t, NodeId(8)), Verdict::Pass);
        // Each further quarantine doubles, up to the maximum.
        let s = d.sanctioned(t)[0];
        assert_eq!(
            (s.response, s.quarantines, s.by_quorum),
            (Response::Quarantine, 7, false)
        );
        assert_eq!(s.until - t, Duration::from_secs(3600));
        assert!(d.release(t, N));
        assert_eq!(d.verdict(t, N), Verdict::Pass);
        assert!(!d.release(t, N));
    }

    #[test]
    fn retrying_one_denied_service_is_not_a_scan_and_slow_denials_drain() {
        let t = Instant::now();
        let mut d = Detector::new(IdsConfig::default());
        // The same denied port, 10 times a second for a minute: 600
        // packets, one target; the flood bucket drains 50 a second.
        for i in 0..600 {
            let now = t + Duration::from_millis(100 * i);
            assert_eq!(d.observe(now, N, denied(5432)), None);
        }
        // A new denied target every 3 s (the bucket drains 1.5 in that
        // time): never 20 at once.
        for i in 0..100u16 {
            let now = t + Duration::from_secs(60 + 3 * u64::from(i));
            assert_eq!(d.observe(now, N, denied(1000 + i)), None);
        }
        d.expire(t + Duration::from_secs(4000));
        assert!(d.sanctioned(t + Duration::from_secs(4000)).is_empty());
    }

    #[test]
    fn a_quarantine_ends_and_detection_only_never_sanctions() {
        let t = Instant::now();
        let mut d = Detector::new(IdsConfig::default());
        for _ in 0..33 {
            d.observe(t, N, Evidence::Spoofed);
        }
        assert!(d.is_quarantined(t, N));
        let after = t + Duration::from_secs(61);
        assert_eq!(d.verdict(after, N), Verdict::Pass);
        let mut off = Detector::new(IdsConfig {
            prevent: false,
            ..IdsConfig::default()
        });
        let raised: Vec<_> = (0..100)
            .filter_map(|_| off.observe(t, N, Evidence::Spoofed))
            .collect();
        assert!(raised.len() >= 3);
        assert!(raised.iter().all(|a| a.response == Response::Alert));
        assert_eq!(off.verdict(t, N), Verdict::Pass);
    }

    #[test]
    fn a_surge_of_denials_against_a_peers_own_habit_is_flagged_and_its_habit_is_not() {
        let t = Instant::now();
        let surges = |d: &mut Detector, from: u64, secs: u64, per_sec: u64| {
            let mut n = 0;
            for i in 0..secs * per_sec {
                let now = t + Duration::from_millis(from * 1000 + i * 1000 / per_sec);
                let a = d.observe(now, N, denied(5432));
                if a.is_some_and(|a| a.scenario == "denied-surge") {
                    n += 1;
                }
            }
            n
        };
        // Ten minutes of one denied service retried 10 times a second
        // (100 a window): its habit. Nothing flagged.
        let mut d = Detector::new(IdsConfig::default());
        assert_eq!(surges(&mut d, 0, 600, 10), 0);
        // Ten times that for 30 s: flagged once per window (a surge is
        // not learned as normal)...
        assert_eq!(surges(&mut d, 600, 30, 100), 3);
        // ...back to the habit: quiet again...
        assert_eq!(surges(&mut d, 630, 120, 10), 0);
        // ...and a lasting change is learned after a minute or so.
        let flagged = surges(&mut d, 750, 300, 100);
        assert!((6..=9).contains(&flagged), "{flagged}");
        // A new peer's first burst has no habit to leave (the scenarios
        // judge it).
        let mut fresh = Detector::new(IdsConfig::default());
        assert_eq!(surges(&mut fresh, 0, 30, 100), 0);
    }

    #[test]
    fn a_rate_limited_peer_gets_its_rate_and_no_more() {
        let t = Instant::now();
        let mut d = Detector::new(IdsConfig::default());
        for _ in 0..2 * 11 {
            d.observe(t, N, Evidence::Spoofed);
        }
        assert_eq!(d.sanctioned(t)[0].response, Response::RateLimit);
        // Burst of twice the rate, then the rate: 100 packets a second.
        let passed = (0..1000)
            .filter(|i| {
                let now = t + Duration::from_millis(*i);
                d.verdict(now, N) == Verdict::Pass
            })
            .count();
        assert!((295..=305).contains(&passed), "{passed}");
    }
}
