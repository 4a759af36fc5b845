//! `meshctl ping`: ICMP echo through the overlay, measured by the agent.
//!
//! The agent writes an ICMPv4 echo request from its own overlay address into
//! the data path, exactly as a packet from the TUN device would go, and
//! catches the matching echo reply (by identifier) before it reaches the TUN
//! device. The RTT therefore covers the real path: seal, underlay, the peer's
//! open, the peer kernel's reply, and back.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use types::admin::{AdminResponse, PingView, TraceView};

/// ICMP payload bytes (as `ping`'s default 56).
const PAYLOAD: usize = 56;

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 ICMP echo request.
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16) -> Vec<u8> {
    let total = 20 + 8 + PAYLOAD;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&seq.to_be_bytes());
    p[8] = 64;
    p[9] = 1; // ICMP
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20] = 8; // echo request
    p[24..26].copy_from_slice(&ident.to_be_bytes());
    p[26..28].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum(&p[20..]);
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

/// If `packet` is an ICMPv4 echo reply to `ident`, its sequence number.
pub fn echo_reply_seq(packet: &[u8], ident: u16) -> Option<u16> {
    if packet.len() < 28 || packet[0] >> 4 != 4 || packet[9] != 1 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let icmp = packet.get(ihl..)?;
    if icmp.len() < 8 || icmp[0] != 0 || u16::from_be_bytes([icmp[4], icmp[5]]) != ident {
        return None;
    }
    Some(u16::from_be_bytes([icmp[6], icmp[7]]))
}

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

    pub fn next_deadline(&self) -> Option<Instant> {
        self.probes.values().map(|p| p.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_and_replies_match() {
        let p = echo_request(
            Ipv4Addr::new(100, 64, 0, 1),
            Ipv4Addr::new(100, 64, 0, 2),
            0x4d53,
            7,
        );
        assert_eq!(checksum(&p[..20]), 0, "IPv4 header checksum");
        assert_eq!(checksum(&p[20..]), 0, "ICMP checksum");
        // Turn it into the reply a kernel would send.
        let mut r = p.clone();
        r[12..16].copy_from_slice(&p[16..20]);
        r[16..20].copy_from_slice(&p[12..16]);
        r[20] = 0;
        assert_eq!(echo_reply_seq(&r, 0x4d53), Some(7));
        assert_eq!(echo_reply_seq(&r, 0x4d54), None);
        assert_eq!(echo_reply_seq(&p, 0x4d53), None, "a request is not a reply");
    }
}
