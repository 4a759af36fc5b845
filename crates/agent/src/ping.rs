//! `meshctl ping`: ICMP echo through the overlay, measured by the agent.
//!
//! The agent writes an ICMP echo request (ICMPv6 for an IPv6 target) from
//! its own overlay address of the target's family into
//! the data path, exactly as a packet from the TUN device would go, and
//! catches the matching echo reply (by identifier) before it reaches the TUN
//! device. The RTT therefore covers the real path: seal, underlay, the peer's
//! open, the peer kernel's reply, and back. The packets themselves are built
//! and read by `proto::wire::ip`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use types::admin::{AdminResponse, PingView, TraceView};

/// What a probe answers: a ping, or the end-to-end leg of a trace.
pub enum Report {
    Ping(PingView),
    Trace(TraceView),
}

impl Report {
    /// The admin answer, with the round trip if one was measured.
    fn finish(self, rtt: Option<Duration>) -> AdminResponse {
        let ms = rtt.map(|r| r.as_secs_f64() * 1e3);
        match self {
            Self::Ping(mut v) => {
                v.rtt_ms = ms;
                AdminResponse::Ping(v)
            }
            Self::Trace(mut v) => {
                v.rtt_ms = ms;
                AdminResponse::Trace(v)
            }
        }
    }
}

/// One probe waiting for its reply.
pub struct Probe {
    pub sent: Instant,
    pub deadline: Instant,
    pub report: Report,
    pub reply: oneshot::Sender<AdminResponse>,
}

/// Probes in flight, by sequence number.
#[derive(Default)]
pub struct Pinger {
    pub ident: u16,
    next_seq: u16,
    pub probes: HashMap<u16, Probe>,
}

impl Pinger {
    pub fn new(ident: u16) -> Self {
        Self {
            ident,
            ..Self::default()
        }
    }

    pub fn next_seq(&mut self) -> u16 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    /// A reply arrived: answer the probe; returns the RTT.
    pub fn complete(&mut self, seq: u16, now: Instant) -> Option<Duration> {
        let p = self.probes.remove(&seq)?;
        let rtt = now.saturating_duration_since(p.sent);
        let _ = p.reply.send(p.report.finish(Some(rtt)));
        Some(rtt)
    }

    /// Answers every probe past its deadline with no RTT.
    pub fn expire(&mut self, now: Instant) {
        let late: Vec<u16> = self
            .probes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in late {
            if let Some(p) = self.probes.remove(&s) {
                let _ = p.reply.send(p.report.finish(None));
            }
        }
    }

    /// Whether any probe waits for its reply (only then are received
    /// packets looked at).
    pub fn waiting(&self) -> bool {
        !self.probes.is_empty()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.probes.values().map(|p| p.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(sent: Instant, deadline: Instant) -> (Probe, oneshot::Receiver<AdminResponse>) {
        let (reply, rx) = oneshot::channel();
        let report = Report::Ping(PingView {
            peer: "b".into(),
            address: "100.64.0.2".into(),
            seq: 1,
            path: "direct".into(),
            endpoint: None,
            rtt_ms: None,
        });
        let p = Probe {
            sent,
            deadline,
            report,
            reply,
        };
        (p, rx)
    }

    #[test]
    fn a_reply_answers_its_probe_with_the_round_trip_and_a_late_one_without() {
        let t0 = Instant::now();
        let mut p = Pinger::new(7);
        assert!(!p.waiting());
        let (a, mut rx_a) = probe(t0, t0 + Duration::from_secs(1));
        let (b, mut rx_b) = probe(t0, t0 + Duration::from_millis(10));
        let (sa, sb) = (p.next_seq(), p.next_seq());
        p.probes.insert(sa, a);
        p.probes.insert(sb, b);
        assert!(p.waiting());
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(10)));
        p.expire(t0 + Duration::from_millis(20));
        match rx_b.try_recv() {
            Ok(AdminResponse::Ping(v)) => assert_eq!(v.rtt_ms, None, "timed out"),
            other => panic!("{other:?}"),
        }
        let rtt = p.complete(sa, t0 + Duration::from_millis(5));
        assert_eq!(rtt, Some(Duration::from_millis(5)));
        match rx_a.try_recv() {
            Ok(AdminResponse::Ping(v)) => assert_eq!(v.rtt_ms, Some(5.0)),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.complete(sa, t0), None, "answered once");
        assert!(!p.waiting());
    }
}
