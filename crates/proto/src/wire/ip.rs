//! The IP packets meshd carries: IPv4 and IPv6 header parsing for routing
//! and policy, and the ICMP messages meshd writes itself (echo for
//! `meshctl ping`, "fragmentation needed" / "packet too big" for path MTU).
//! One parser and one set of builders for the endpoint, the policy filter,
//! the agent, the simulator and the tests.
//!
//! Invariants: every read is bounds-checked (`get`), so any byte string is a
//! valid input; [`Packet::parse`] fails only on a broken IP header, and a
//! transport header cut short reads as ports 0.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of TCP.
pub const TCP: u8 = 6;
/// IP protocol number of UDP.
pub const UDP: u8 = 17;
/// IP protocol number of ICMP.
pub const ICMP: u8 = 1;
/// IP protocol number of ICMPv6.
pub const ICMPV6: u8 = 58;

/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HEADER_LEN: usize = 40;

/// The source address of an IPv4 or IPv6 packet (fixed offsets only).
pub fn source(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= IPV4_HEADER_LEN => {
            Some(IpAddr::from(<[u8; 4]>::try_from(&packet[12..16]).ok()?))
        }
        6 if packet.len() >= IPV6_HEADER_LEN => {
            Some(IpAddr::from(<[u8; 16]>::try_from(&packet[8..24]).ok()?))
        }
        _ => None,
    }
}

/// Whether `ip` is an address the mesh never carries traffic to: multicast,
/// broadcast, link-local, loopback or unspecified (the kernel's router
/// solicitations and MLD reports on the TUN device, for instance). No
/// member holds one; it is no route and no lookup.
pub fn is_local_scope(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_multicast()
                || a.is_broadcast()
                || a.is_link_local()
                || a.is_loopback()
                || a.is_unspecified()
        }
        IpAddr::V6(a) => {
            a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80
                || a.is_loopback()
                || a.is_unspecified()
        }
    }
}

/// The destination address of an IPv4 or IPv6 packet (fixed offsets only).
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(packet.get(16..20)?).ok()?)),
        6 => Some(IpAddr::from(
            <[u8; 16]>::try_from(packet.get(24..40)?).ok()?,
        )),
        _ => None,
    }
}

/// What the parser found in a packet's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Source port (tcp/udp), or the ICMP echo identifier.
    pub sport: u16,
    /// Destination port (tcp/udp), or the ICMP echo identifier.
    pub dport: u16,
    /// What the policy matches as "port": the destination port for tcp/udp,
    /// the ICMP type for ICMP, 0 otherwise.
    pub policy_port: u16,
    /// Fragment position, if the packet is a fragment.
    pub fragment: Option<Fragment>,
    /// For ICMP errors: the flow of the packet quoted inside, as the sender
    /// of that packet saw it (src, dst, proto, sport, dport).
    pub quoted: Option<(IpAddr, IpAddr, u8, u16, u16)>,
}

/// A fragment's identification and whether it is the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// IPv4 identification or IPv6 fragment-header identification.
    pub ident: u32,
    /// Offset 0 (carries the transport header).
    pub first: bool,
}

/// Why a packet could not be classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not IPv4 or IPv6, or shorter than its header.
    Truncated,
    /// More IPv6 extension headers than we walk (8), or an unknown one.
    ExtensionHeaders,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Ports (or echo id / type) of a transport header at `l4`.
fn transport(proto: u8, l4: &[u8]) -> Option<(u16, u16, u16)> {
    match proto {
        TCP | UDP => {
            let (s, d) = (be16(l4, 0)?, be16(l4, 2)?);
            Some((s, d, d))
        }
        ICMP | ICMPV6 => {
            let ty = *l4.first()?;
            let echo = matches!((proto, ty), (ICMP, 8 | 0) | (ICMPV6, 128 | 129));
            let id = if echo { be16(l4, 4)? } else { 0 };
            Some((id, id, u16::from(ty)))
        }
        _ => Some((0, 0, 0)),
    }
}

/// Whether ICMP(v6) type `ty` is an error message (which quotes a packet).
pub fn is_icmp_error(proto: u8, ty: u16) -> bool {
    match proto {
        ICMP => matches!(ty, 3 | 4 | 5 | 11 | 12),
        ICMPV6 => matches!(ty, 1..=4),
        _ => false,
    }
}

/// The network header: addresses, protocol, offset of the transport header
/// and fragment position.
struct Network {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: usize,
    fragment: Option<Fragment>,
}

fn network(b: &[u8]) -> Result<Network, ParseError> {
    match b.first().map(|v| v >> 4) {
        Some(4) if b.len() >= IPV4_HEADER_LEN => {
            let ihl = usize::from(b[0] & 0x0f) * 4;
            if ihl < IPV4_HEADER_LEN || b.len() < ihl {
                return Err(ParseError::Truncated);
            }
            let src = IpAddr::from(<[u8; 4]>::try_from(&b[12..16]).unwrap_or_default());
            let dst = IpAddr::from(<[u8; 4]>::try_from(&b[16..20]).unwrap_or_default());
            let flags_off = u16::from_be_bytes([b[6], b[7]]);
            let offset = flags_off & 0x1fff;
            let more = flags_off & 0x2000 != 0;
            let fragment = (offset != 0 || more).then(|| Fragment {
                ident: u32::from(u16::from_be_bytes([b[4], b[5]])),
                first: offset == 0,
            });
            Ok(Network {
                src,
                dst,
                proto: b[9],
                l4: ihl,
                fragment,
            })
        }
        Some(6) if b.len() >= IPV6_HEADER_LEN => {
            let src = IpAddr::from(<[u8; 16]>::try_from(&b[8..24]).unwrap_or_default());
            let dst = IpAddr::from(<[u8; 16]>::try_from(&b[24..40]).unwrap_or_default());
            let mut next = b[6];
            let mut at = IPV6_HEADER_LEN;
            let mut fragment = None;
            for _ in 0..8 {
                match next {
                    // Hop-by-hop, routing, destination options.
                    0 | 43 | 60 => {
                        let len = usize::from(*b.get(at + 1).ok_or(ParseError::Truncated)?);
                        next = b[at];
                        at += (len + 1) * 8;
                    }
                    44 => {
                        let h = b.get(at..at + 8).ok_or(ParseError::Truncated)?;
                        let off = u16::from_be_bytes([h[2], h[3]]) >> 3;
                        fragment = Some(Fragment {
                            ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                            first: off == 0,
                        });
                        next = h[0];
                        at += 8;
                    }
                    _ => {
                        return Ok(Network {
                            src,
                            dst,
                            proto: next,
                            l4: at,
                            fragment,
                        })
                    }
                }
            }
            Err(ParseError::ExtensionHeaders)
        }
        _ => Err(ParseError::Truncated),
    }
}

impl Packet {
    /// Classifies an IPv4 or IPv6 packet. A transport header cut short
    /// yields ports 0 (the policy then sees port 0); only a broken IP header
    /// is an error.
    pub fn parse(b: &[u8]) -> Result<Self, ParseError> {
        let n = network(b)?;
        let later_fragment = n.fragment.is_some_and(|f| !f.first);
        let (sport, dport, policy_port) = if later_fragment {
            (0, 0, 0)
        } else {
            b.get(n.l4..)
                .and_then(|t| transport(n.proto, t))
                .unwrap_or((0, 0, 0))
        };
        let mut quoted = None;
        if !later_fragment && is_icmp_error(n.proto, policy_port) {
            // ICMP header is 8 bytes; the offending packet follows.
            if let Some(inner) = b.get(n.l4 + 8..) {
                if let Ok(q) = network(inner) {
                    if q.fragment.is_none_or(|f| f.first) {
                        if let Some((sp, dp, _)) =
                            inner.get(q.l4..).and_then(|t| transport(q.proto, t))
                        {
                            quoted = Some((q.src, q.dst, q.proto, sp, dp));
                        }
                    }
                }
            }
        }
        Ok(Self {
            src: n.src,
            dst: n.dst,
            proto: n.proto,
            sport,
            dport,
            policy_port,
            fragment: n.fragment,
            quoted,
        })
    }
}

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

/// An IPv4 packet (no options, TTL 64, header checksum set) from `src` to
/// `dst` carrying `payload` as protocol `proto`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = IPV4_HEADER_LEN + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = checksum(&p[..IPV4_HEADER_LEN]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[IPV4_HEADER_LEN..].copy_from_slice(payload);
    p
}

/// ICMP payload bytes of [`echo_request`] (as `ping`'s default 56).
pub const ECHO_PAYLOAD: usize = 56;

/// An IPv4 ICMP echo request (`seq` also as the IP identification).
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16) -> Vec<u8> {
    let mut icmp = vec![0u8; 8 + ECHO_PAYLOAD];
    icmp[0] = 8; // echo request
    icmp[4..6].copy_from_slice(&ident.to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in icmp[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = ipv4(src.octets(), dst.octets(), ICMP, &icmp);
    p[4..6].copy_from_slice(&seq.to_be_bytes());
    p[10..12].fill(0);
    let c = checksum(&p[..IPV4_HEADER_LEN]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// An ICMPv6 echo request (RFC 4443), hop limit 64, the payload as
/// [`echo_request`]'s.
pub fn echo_request_v6(src: Ipv6Addr, dst: Ipv6Addr, ident: u16, seq: u16) -> Vec<u8> {
    let body_len = 8 + ECHO_PAYLOAD;
    let mut p = vec![0u8; IPV6_HEADER_LEN + body_len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(body_len as u16).to_be_bytes());
    p[6] = ICMPV6;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40] = 128; // echo request
    p[44..46].copy_from_slice(&ident.to_be_bytes());
    p[46..48].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[48..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut pseudo = Vec::with_capacity(40 + body_len);
    pseudo.extend_from_slice(&p[8..40]);
    pseudo.extend_from_slice(&(body_len as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
    pseudo.extend_from_slice(&p[40..]);
    let c = checksum(&pseudo);
    p[42..44].copy_from_slice(&c.to_be_bytes());
    p
}

/// If `packet` is an ICMPv4 or ICMPv6 echo reply to `ident`, its sequence
/// number.
pub fn echo_reply_seq(packet: &[u8], ident: u16) -> Option<u16> {
    let icmp = match packet.first()? >> 4 {
        4 if packet.len() >= 28 && packet[9] == ICMP => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            packet.get(ihl..).filter(|i| i.first() == Some(&0))?
        }
        6 if packet.len() >= IPV6_HEADER_LEN + 8 && packet[6] == ICMPV6 => packet
            .get(IPV6_HEADER_LEN..)
            .filter(|i| i.first() == Some(&129))?,
        _ => return None,
    };
    if icmp.len() < 8 || u16::from_be_bytes([icmp[4], icmp[5]]) != ident {
        return None;
    }
    Some(u16::from_be_bytes([icmp[6], icmp[7]]))
}

/// An ICMP error telling the sender of `packet` (an IPv4 or IPv6 packet
/// about to be sent into the overlay) that the path fits at most `mtu`
/// bytes: ICMPv4 "fragmentation needed" (RFC 1191) or ICMPv6 "packet too
/// big" (RFC 4443), from the packet's destination to its source. The kernel
/// then lowers the path MTU for that destination (TCP shrinks its
/// segments). `None` for a packet that must not get one: an ICMP error
/// itself, a non-first IPv4 fragment, or a malformed header.
pub fn too_big(packet: &[u8], mtu: usize) -> Option<Vec<u8>> {
    match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            if ihl < IPV4_HEADER_LEN || packet.len() < ihl {
                return None;
            }
            let frag_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
            let icmp_error = packet[9] == ICMP
                && packet
                    .get(ihl)
                    .is_some_and(|t| is_icmp_error(ICMP, u16::from(*t)));
            if frag_offset != 0 || icmp_error {
                return None;
            }
            let quote = &packet[..(ihl + 8).min(packet.len())];
            let mut icmp = vec![0u8; 8 + quote.len()];
            icmp[0] = 3; // destination unreachable
            icmp[1] = 4; // fragmentation needed and DF set
            let next_hop = u16::try_from(mtu.clamp(68, 65_535)).unwrap_or(u16::MAX);
            icmp[6..8].copy_from_slice(&next_hop.to_be_bytes());
            icmp[8..].copy_from_slice(quote);
            let c = checksum(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let (mut src, mut dst) = ([0u8; 4], [0u8; 4]);
            src.copy_from_slice(&packet[16..20]);
            dst.copy_from_slice(&packet[12..16]);
            Some(ipv4(src, dst, ICMP, &icmp))
        }
        6 => {
            if packet.len() < IPV6_HEADER_LEN {
                return None;
            }
            // An ICMPv6 error (types below 128) directly after the header.
            if packet[6] == ICMPV6 && packet.get(40).is_some_and(|t| *t < 128) {
                return None;
            }
            // RFC 4443 §2.4: as much of the packet as fits in 1280 bytes.
            let quote = &packet[..packet.len().min(1280 - IPV6_HEADER_LEN - 8)];
            let body_len = 8 + quote.len();
            let mut p = vec![0u8; IPV6_HEADER_LEN + body_len];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&(body_len as u16).to_be_bytes());
            p[6] = ICMPV6;
            p[7] = 64;
            p[8..24].copy_from_slice(&packet[24..40]);
            p[24..40].copy_from_slice(&packet[8..24]);
            p[40] = 2; // packet too big
            let mtu = u32::try_from(mtu.max(1280)).unwrap_or(u32::MAX);
            p[44..48].copy_from_slice(&mtu.to_be_bytes());
            p[48..].copy_from_slice(quote);
            let mut pseudo = Vec::with_capacity(IPV6_HEADER_LEN + body_len);
            pseudo.extend_from_slice(&p[8..40]);
            pseudo.extend_from_slice(&(body_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
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

    #[test]
    fn local_scope_addresses_are_the_kernels_own_never_members() {
        for a in [
            "ff02::2",
            "ff02::16",
            "fe80::1",
            "::1",
            "::",
            "224.0.0.22",
            "255.255.255.255",
            "169.254.1.1",
            "127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_local_scope(a.parse().unwrap()), "{a}");
        }
        for a in ["100.64.0.1", "fd00::1", "198.18.0.1"] {
            assert!(!is_local_scope(a.parse().unwrap()), "{a}");
        }
    }

    use super::*;

    #[test]
    fn addresses_at_fixed_offsets() {
        let p = ipv4([100, 64, 0, 1], [100, 64, 0, 2], UDP, &[0; 8]);
        assert_eq!(source(&p), Some(IpAddr::from([100, 64, 0, 1])));
        assert_eq!(destination(&p), Some(IpAddr::from([100, 64, 0, 2])));
        assert_eq!(source(&p[..19]), None);
        assert_eq!(source(&[0x60; 39]), None);
        assert_eq!(destination(&[0x70; 60]), None);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[8] = 0xfd;
        v6[24] = 0xfd;
        v6[39] = 2;
        assert_eq!(source(&v6), Some("fd00::".parse().expect("address")));
        assert_eq!(destination(&v6), Some("fd00::2".parse().expect("address")));
    }

    #[test]
    fn parse_reads_ports_and_echo_ids_and_tolerates_short_transport_headers() {
        let udp = ipv4([100, 64, 0, 1], [100, 64, 0, 2], UDP, &[0x9c, 0x41, 0, 53]);
        let p = Packet::parse(&udp).expect("parses");
        assert_eq!(
            (p.proto, p.sport, p.dport, p.policy_port),
            (UDP, 40001, 53, 53)
        );
        let short = ipv4([100, 64, 0, 1], [100, 64, 0, 2], TCP, &[1]);
        let p = Packet::parse(&short).expect("parses");
        assert_eq!((p.sport, p.dport), (0, 0));
        let echo = echo_request(
            Ipv4Addr::new(100, 64, 0, 1),
            Ipv4Addr::new(100, 64, 0, 2),
            77,
            1,
        );
        let p = Packet::parse(&echo).expect("parses");
        assert_eq!(
            (p.proto, p.sport, p.dport, p.policy_port),
            (ICMP, 77, 77, 8)
        );
        assert_eq!(Packet::parse(&[0x45; 10]), Err(ParseError::Truncated));
        let mut bad_ihl = udp.clone();
        bad_ihl[0] = 0x44;
        assert_eq!(Packet::parse(&bad_ihl), Err(ParseError::Truncated));
    }

    #[test]
    fn too_big_answers_ipv4_and_ipv6_with_valid_checksums_and_never_an_error() {
        // A 1420-byte IPv4 TCP segment from 100.64.0.1 to 100.64.0.4.
        let mut v4 = vec![0u8; 1420];
        v4[0] = 0x45;
        v4[2..4].copy_from_slice(&1420u16.to_be_bytes());
        v4[6] = 0x40; // DF
        v4[8] = 64;
        v4[9] = TCP;
        v4[12..16].copy_from_slice(&[100, 64, 0, 1]);
        v4[16..20].copy_from_slice(&[100, 64, 0, 4]);
        let e = too_big(&v4, 1400).expect("an answer");
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
        // The answer's quote is what the filter matches the flow by.
        let q = Packet::parse(&e).expect("parses").quoted;
        assert_eq!(
            q.map(|q| (q.0, q.1, q.2)),
            Some((
                IpAddr::from([100, 64, 0, 1]),
                IpAddr::from([100, 64, 0, 4]),
                TCP
            ))
        );
        // IPv6: fd00::1 → fd00::4, UDP, 1420 bytes.
        let mut v6 = vec![0u8; 1420];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&1380u16.to_be_bytes());
        v6[6] = UDP;
        v6[7] = 64;
        v6[8] = 0xfd;
        v6[23] = 1;
        v6[24] = 0xfd;
        v6[39] = 4;
        let e = too_big(&v6, 1400).expect("an answer");
        assert!(e.len() <= 1280, "fits the IPv6 minimum MTU");
        assert_eq!((e[6], e[40]), (ICMPV6, 2));
        assert_eq!(u32::from_be_bytes([e[44], e[45], e[46], e[47]]), 1400);
        assert_eq!(&e[8..24], &v6[24..40]);
        assert_eq!(&e[24..40], &v6[8..24]);
        let mut pseudo = e[8..40].to_vec();
        pseudo.extend_from_slice(&((e.len() - 40) as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
        pseudo.extend_from_slice(&e[40..]);
        assert_eq!(checksum(&pseudo), 0, "ICMPv6 checksum");
        assert!(
            too_big(&e, 1400).is_none(),
            "not in answer to an ICMPv6 error"
        );
        assert!(too_big(&[0x45, 0, 0], 1400).is_none());
    }

    #[test]
    fn echo_checksums_verify_and_replies_match() {
        let p = echo_request(
            Ipv4Addr::new(100, 64, 0, 1),
            Ipv4Addr::new(100, 64, 0, 2),
            0x4d53,
            7,
        );
        assert_eq!(p.len(), 20 + 8 + ECHO_PAYLOAD);
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

    #[test]
    fn icmpv6_echo_checksums_verify_and_replies_match() {
        let (a, b): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let p = echo_request_v6(a, b, 0x4d53, 9);
        assert_eq!(p.len(), 40 + 8 + ECHO_PAYLOAD);
        let pseudo = |p: &[u8]| {
            let mut v = p[8..40].to_vec();
            v.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, ICMPV6]);
            v.extend_from_slice(&p[40..]);
            v
        };
        assert_eq!(checksum(&pseudo(&p)), 0, "ICMPv6 checksum");
        let parsed = Packet::parse(&p).expect("parses");
        assert_eq!(parsed.proto, ICMPV6);
        // The kernel's reply: addresses swapped, type 129.
        let mut r = p.clone();
        r[8..24].copy_from_slice(&p[24..40]);
        r[24..40].copy_from_slice(&p[8..24]);
        r[40] = 129;
        assert_eq!(echo_reply_seq(&r, 0x4d53), Some(9));
        assert_eq!(echo_reply_seq(&r, 0x4d54), None);
        assert_eq!(echo_reply_seq(&p, 0x4d53), None, "a request is not a reply");
    }
}
