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

/// An ICMP error telling the sender of `packet` (an IPv4 or IPv6 packet
/// read from the TUN device) that the path fits at most `mtu` bytes: ICMPv4
/// "fragmentation needed" (RFC 1191) or ICMPv6 "packet too big" (RFC 4443),
/// from the packet's destination to its source, to be written back into the
/// TUN device. The kernel then lowers the path MTU for that destination
/// (TCP shrinks its segments). `None` for a packet that must not get one:
/// an ICMP error itself, a non-first IPv4 fragment, or a malformed header.
pub fn too_big(packet: &[u8], mtu: usize) -> Option<Vec<u8>> {
    match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            if ihl < 20 || packet.len() < ihl {
                return None;
            }
            let frag_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
            let icmp_error = packet[9] == 1
                && packet
                    .get(ihl)
                    .is_some_and(|t| matches!(t, 3 | 4 | 5 | 11 | 12));
            if frag_offset != 0 || icmp_error {
                return None;
            }
            let quote = &packet[..(ihl + 8).min(packet.len())];
            let total = 20 + 8 + quote.len();
            let mut p = vec![0u8; total];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[8] = 64;
            p[9] = 1;
            p[12..16].copy_from_slice(&packet[16..20]);
            p[16..20].copy_from_slice(&packet[12..16]);
            let c = checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p[20] = 3; // destination unreachable
            p[21] = 4; // fragmentation needed and DF set
            let next_hop = u16::try_from(mtu.clamp(68, 65_535)).unwrap_or(u16::MAX);
            p[26..28].copy_from_slice(&next_hop.to_be_bytes());
            p[28..].copy_from_slice(quote);
            let c = checksum(&p[20..]);
            p[22..24].copy_from_slice(&c.to_be_bytes());
            Some(p)
        }
        6 => {
            if packet.len() < 40 {
                return None;
            }
            // An ICMPv6 error (types below 128) directly after the header.
            if packet[6] == 58 && packet.get(40).is_some_and(|t| *t < 128) {
                return None;
            }
            // RFC 4443 §2.4: as much of the packet as fits in 1280 bytes.
            let quote = &packet[..packet.len().min(1280 - 40 - 8)];
            let body_len = 8 + quote.len();
            let mut p = vec![0u8; 40 + body_len];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&(body_len as u16).to_be_bytes());
            p[6] = 58;
            p[7] = 64;
            p[8..24].copy_from_slice(&packet[24..40]);
            p[24..40].copy_from_slice(&packet[8..24]);
            p[40] = 2; // packet too big
            let mtu = u32::try_from(mtu.max(1280)).unwrap_or(u32::MAX);
            p[44..48].copy_from_slice(&mtu.to_be_bytes());
            p[48..].copy_from_slice(quote);
            let mut pseudo = Vec::with_capacity(40 + body_len);
            pseudo.extend_from_slice(&p[8..40]);
            pseudo.extend_from_slice(&(body_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 58]);
            pseudo.extend_from_slice(&p[40..]);
            let c = checksum(&pseudo);
            p[42..44].copy_from_slice(&c.to_be_bytes());
            Some(p)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_big_answers_ipv4_and_ipv6_with_valid_checksums_and_never_an_error() {
        // A 1420-byte IPv4 TCP segment from 100.64.0.1 to 100.64.0.4.
        let mut v4 = vec![0u8; 1420];
        v4[0] = 0x45;
        v4[2..4].copy_from_slice(&1420u16.to_be_bytes());
        v4[6] = 0x40; // DF
        v4[8] = 64;
        v4[9] = 6;
        v4[12..16].copy_from_slice(&[100, 64, 0, 1]);
        v4[16..20].copy_from_slice(&[100, 64, 0, 4]);
        let e = too_big(&v4, 1400).unwrap();
        assert_eq!(checksum(&e[..20]), 0);
        assert_eq!(checksum(&e[20..]), 0);
        assert_eq!((e[20], e[21]), (3, 4));
        assert_eq!(u16::from_be_bytes([e[26], e[27]]), 1400);
        assert_eq!(&e[12..16], &[100, 64, 0, 4], "from the destination");
        assert_eq!(&e[16..20], &[100, 64, 0, 1], "to the sender");
        assert_eq!(&e[28..], &v4[..28], "quotes header + 8 bytes");
        // Never in answer to an ICMP error, nor to a non-first fragment.
        assert!(too_big(&e, 1400).is_none());
        let mut frag = v4.clone();
        frag[7] = 10;
        assert!(too_big(&frag, 1400).is_none());
        // IPv6: fd00::1 → fd00::4, UDP, 1420 bytes.
        let mut v6 = vec![0u8; 1420];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&1380u16.to_be_bytes());
        v6[6] = 17;
        v6[7] = 64;
        v6[8] = 0xfd;
        v6[23] = 1;
        v6[24] = 0xfd;
        v6[39] = 4;
        let e = too_big(&v6, 1400).unwrap();
        assert!(e.len() <= 1280, "fits the IPv6 minimum MTU");
        assert_eq!((e[6], e[40]), (58, 2));
        assert_eq!(u32::from_be_bytes([e[44], e[45], e[46], e[47]]), 1400);
        assert_eq!(&e[8..24], &v6[24..40]);
        assert_eq!(&e[24..40], &v6[8..24]);
        let mut pseudo = e[8..40].to_vec();
        pseudo.extend_from_slice(&((e.len() - 40) as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        pseudo.extend_from_slice(&e[40..]);
        assert_eq!(checksum(&pseudo), 0, "ICMPv6 checksum");
        assert!(
            too_big(&e, 1400).is_none(),
            "not in answer to an ICMPv6 error"
        );
        assert!(too_big(&[0x45, 0, 0], 1400).is_none());
    }

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
