//! The simulator's processing model: what a call costs a node
//! ([`CpuModel`]), the datagrams that wait while it works, and the
//! signature checks it runs when its socket is empty (deferred checks, as
//! meshd's checks thread runs them).

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use proto::endpoint::CHECK_BATCH;

use super::Sim;

/// What processing costs a node, charged to its virtual clock: while it
/// works, datagrams wait in its socket and its timers wait, as on a real
/// host (a hub verifying thousands of signatures at bring-up saturates).
/// What a call costs is read from the endpoint's counters around it.
/// Outputs of a call leave at its start (the error is one call's cost).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuModel {
    /// Every datagram received or timer run (parsing, lookups, an AEAD pass).
    pub per_call: Duration,
    /// Every Ed25519 signature checked (adverts, certificates, accusations).
    pub per_signature: Duration,
    /// Every handshake completed (ML-KEM, X25519, signature checks).
    pub per_handshake: Duration,
}

impl CpuModel {
    /// Costs measured on this project's benchmark machine (docs/scale.md,
    /// "CPU model"): an Ed25519 verification 150 µs (115–170 µs measured),
    /// one side of a hybrid handshake 370 µs (`handshake/hybrid_first_contact`
    /// 737 µs for both), a datagram 5 µs (`endpoint_1400/send_and_receive`
    /// 2.2 µs for both ends, rounded up for control-message handling).
    pub fn measured() -> Self {
        Self {
            per_call: Duration::from_micros(5),
            per_signature: Duration::from_micros(150),
            per_handshake: Duration::from_micros(370),
        }
    }
}

impl Sim {
    /// Sets a wake for node `i`'s queued signature checks if none is set.
    pub(super) fn arm_checks(&mut self, i: usize) {
        let n = &self.nodes[i];
        if n.checks_wake.is_none() && !n.down && !n.checks_held && n.ep.checks_pending() > 0 {
            let at = self
                .stalled(i)
                .map_or(self.now, |r| r + Duration::from_micros(1));
            self.nodes[i].checks_wake = Some(at);
            self.wakes.push(Reverse((at, i)));
        }
    }

    /// Holds node `i`'s queued signature checks (a checks thread that does
    /// not get the CPU), or releases them; a test runs them by hand with
    /// `take_checks` meanwhile.
    pub fn hold_checks(&mut self, i: usize, hold: bool) {
        self.nodes[i].checks_held = hold;
        self.reschedule(i);
    }

    /// Node `i` runs one batch of its queued signature checks (as meshd's
    /// checks thread does, a plan of at most [`CHECK_BATCH`]), charged as
    /// one call.
    pub(super) fn run_checks(&mut self, i: usize) {
        let Some(plan) = self.nodes[i].ep.take_checks(CHECK_BATCH) else {
            return;
        };
        let before = self.work(i);
        let done = plan.run();
        let (now, unix) = (self.now, self.unix_nanos());
        self.nodes[i].ep.finish_checks(now, unix, done);
        self.charge(i, before);
        self.drain(i);
    }

    /// Charges processing to every node's virtual clock from now on
    /// (`None`: processing is free, the default).
    pub fn set_cpu_model(&mut self, cpu: Option<CpuModel>) {
        self.cpu = cpu;
    }

    /// What node `i`'s counters say it has done that costs CPU.
    pub(super) fn work(&self, i: usize) -> (u64, u64) {
        let s = self.nodes[i].ep.stats();
        (s.signatures_checked, s.handshakes_completed)
    }

    /// Charges node `i` for one call, given its work counters before it.
    pub(super) fn charge(&mut self, i: usize, before: (u64, u64)) {
        let Some(cpu) = self.cpu else {
            return;
        };
        let after = self.work(i);
        let sigs = u32::try_from(after.0 - before.0).unwrap_or(u32::MAX);
        let hs = u32::try_from(after.1 - before.1).unwrap_or(u32::MAX);
        let cost = cpu.per_call + cpu.per_signature * sigs + cpu.per_handshake * hs;
        let n = &mut self.nodes[i];
        let start = n
            .stalled_until
            .filter(|t| *t > self.now)
            .unwrap_or(self.now);
        n.stalled_until = Some(start + cost);
        n.busy += cost;
    }

    /// Node `i` reads the datagrams that waited for it, in order, while
    /// it is free (each may make it busy again: the rest wait on); with its
    /// socket empty, it runs a batch of queued signature checks. A node's
    /// socket comes before its checks, so a probe waits for one batch at
    /// most, never for a whole burst of checks.
    pub(super) fn read_backlog(&mut self, i: usize, at: Instant) {
        let checks = self.nodes[i].checks_wake == Some(at);
        if checks {
            self.nodes[i].checks_wake = None;
        }
        if self.nodes[i].backlog_wake == Some(at) {
            self.nodes[i].backlog_wake = None;
        }
        let mut checked = false;
        while self.stalled(i).is_none() {
            if let Some((seq, from)) = self.nodes[i].backlog.pop_front() {
                if let Some(d) = self.in_flight.remove(&seq) {
                    self.arrive(from, i, d);
                }
            } else if checks && !checked && !self.nodes[i].down {
                checked = true;
                self.run_checks(i);
            } else {
                break;
            }
        }
        let n = &self.nodes[i];
        if let (Some(resume), false, None) = (self.stalled(i), n.backlog.is_empty(), n.backlog_wake)
        {
            let later = resume + Duration::from_micros(1);
            self.nodes[i].backlog_wake = Some(later);
            self.wakes.push(Reverse((later, i)));
        }
        // Checks left (or not reached: the socket kept it busy) get a wake.
        self.arm_checks(i);
    }
}
