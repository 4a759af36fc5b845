//! Member names over DNS: meshd answers A and AAAA queries for
//! `<name>.<domain>` (`[discovery] dns-domain`, `mesh` by default) on its
//! overlay addresses, port 53, from the certificates it holds: its own, its
//! peers', and those of members known from the mesh's link state. It is
//! authoritative for that domain alone: a name under it that no member
//! holds is NXDOMAIN, anything else is REFUSED (it resolves nothing else,
//! so a resolver set to ask it for `~mesh` only loses nothing).
//!
//! [`answer`] is a pure function of the query bytes; the thread in
//! [`serve`] reads queries and sends its answers.

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;

use std::time::{Duration, Instant};

use tracing::warn;

use crate::node::Shared;
use crate::worker::Outbox;

/// Seconds a client may keep an answer (a renumbered member is seen
/// within this).
pub const TTL: u32 = 30;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_RD: u16 = 0x0100;
const RCODE_FORMERR: u16 = 1;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;
const RCODE_REFUSED: u16 = 5;

/// The response to one DNS message, or `None` when it deserves none (a
/// response, or too short to carry an id).
pub fn answer(
    query: &[u8],
    domain: &str,
    lookup: impl FnOnce(&str) -> Option<Vec<IpAddr>>,
) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([query[2], query[3]]);
    if flags & FLAG_QR != 0 {
        return None;
    }
    let id = [query[0], query[1]];
    let rd = flags & FLAG_RD;
    let fail = |rcode: u16, question: &[u8]| {
        let mut r = header(id, rd | rcode, u16::from(!question.is_empty()), 0);
        r.extend_from_slice(question);
        Some(r)
    };
    if (flags >> 11) & 0xf != 0 {
        return fail(RCODE_NOTIMP, &[]);
    }
    if u16::from_be_bytes([query[4], query[5]]) != 1 {
        return fail(RCODE_FORMERR, &[]);
    }
    let Some((name, end)) = qname(query) else {
        return fail(RCODE_FORMERR, &[]);
    };
    let Some(fixed) = query.get(end..end + 4) else {
        return fail(RCODE_FORMERR, &[]);
    };
    let question = &query[12..end + 4];
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    let name = name.to_ascii_lowercase();
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let host = if name == domain {
        None
    } else {
        match name.strip_suffix(&format!(".{domain}")) {
            Some(h) => Some(h.to_string()),
            None => return fail(RCODE_REFUSED, question),
        }
    };
    if qclass != CLASS_IN {
        return fail(RCODE_REFUSED, question);
    }
    let addrs = match host {
        // The domain itself exists and holds no addresses.
        None => Vec::new(),
        Some(h) => match lookup(&h) {
            Some(a) => a,
            None => {
                let mut r = header(id, rd | FLAG_AA | RCODE_NXDOMAIN, 1, 0);
                r.extend_from_slice(question);
                return Some(r);
            }
        },
    };
    let wanted: Vec<IpAddr> = (addrs.into_iter())
        .filter(|a| match qtype {
            TYPE_A => a.is_ipv4(),
            TYPE_AAAA => a.is_ipv6(),
            TYPE_ANY => true,
            _ => false,
        })
        .collect();
    let mut r = header(id, rd | FLAG_AA, 1, wanted.len() as u16);
    r.extend_from_slice(question);
    for a in wanted {
        // The name: a pointer to the question's (offset 12).
        r.extend_from_slice(&[0xc0, 12]);
        let (t, data) = match a {
            IpAddr::V4(v) => (TYPE_A, v.octets().to_vec()),
            IpAddr::V6(v) => (TYPE_AAAA, v.octets().to_vec()),
        };
        r.extend_from_slice(&t.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(&data);
    }
    Some(r)
}

/// A response header: `flags` (QR is added), one question or none, `an`
/// answers.
/// Whether response `r` says the name does not exist.
fn is_nxdomain(r: &[u8]) -> bool {
    r.len() >= 4 && u16::from_be_bytes([r[2], r[3]]) & 0xf == RCODE_NXDOMAIN
}

fn header(id: [u8; 2], flags: u16, qd: u16, an: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(512);
    h.extend_from_slice(&id);
    h.extend_from_slice(&(flags | FLAG_QR).to_be_bytes());
    h.extend_from_slice(&qd.to_be_bytes());
    h.extend_from_slice(&an.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// The question's name (dotted, without the root's dot) and where it
/// ends; `None` if malformed or compressed (a question has nothing to
/// point back to).
fn qname(q: &[u8]) -> Option<(String, usize)> {
    let mut at = 12;
    let mut name = String::new();
    loop {
        let len = usize::from(*q.get(at)?);
        at += 1;
        if len == 0 {
            return Some((name, at));
        }
        if len > 63 || name.len() + len > 253 {
            return None;
        }
        let label = std::str::from_utf8(q.get(at..at + len)?).ok()?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(label);
        at += len;
    }
}

/// How long a stub waits for its relay to answer a member lookup before
/// answering a query for a name it did not know, and how often it looks.
const LOOKUP_WAIT: Duration = Duration::from_millis(500);
const LOOKUP_POLL: Duration = Duration::from_millis(25);

/// Answers queries on `sock` for as long as meshd runs. A stub that knows
/// no member of the name asks its relay (sent on `udp`, the mesh socket)
/// and answers once the certificate came, or NXDOMAIN after
/// [`LOOKUP_WAIT`].
pub fn serve(sock: UdpSocket, shared: Arc<Shared>, domain: String, udp: UdpSocket) {
    let mut buf = [0u8; 1500];
    let mut out = Outbox::default();
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "dns: receive failed");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        let (mut reply, asked) = {
            let mut node = shared.lock();
            let now = Instant::now();
            let r = answer(&buf[..n], &domain, |name| {
                node.ep.addresses_named_or_look_up(now, name)
            });
            node.drain(&mut out);
            node.wake_timer(&shared.timer);
            (r, node.ep.looks_up())
        };
        out.send_direct(&udp);
        let start = Instant::now();
        while asked && reply.as_deref().is_some_and(is_nxdomain) && start.elapsed() < LOOKUP_WAIT {
            std::thread::sleep(LOOKUP_POLL);
            let node = shared.lock();
            reply = answer(&buf[..n], &domain, |name| node.ep.addresses_named(name));
        }
        if let Some(r) = reply {
            let _ = sock.send_to(&r, from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    fn lookup(name: &str) -> Option<Vec<IpAddr>> {
        (name == "beta").then(|| vec!["100.64.0.2".parse().unwrap(), "fd00::2".parse().unwrap()])
    }

    fn rcode(r: &[u8]) -> u16 {
        u16::from_be_bytes([r[2], r[3]]) & 0xf
    }

    fn answers(r: &[u8]) -> u16 {
        u16::from_be_bytes([r[6], r[7]])
    }

    #[test]
    fn a_member_name_gets_its_addresses_by_type_and_others_their_codes() {
        let q = query("Beta.Mesh", TYPE_A);
        let r = answer(&q, "mesh", lookup).unwrap();
        assert_eq!((r[0], r[1]), (0x12, 0x34), "id echoed");
        assert_eq!(
            u16::from_be_bytes([r[2], r[3]]) & (FLAG_QR | FLAG_AA | FLAG_RD),
            FLAG_QR | FLAG_AA | FLAG_RD
        );
        assert_eq!((rcode(&r), answers(&r)), (0, 1));
        assert_eq!(&r[r.len() - 4..], &[100, 64, 0, 2]);
        assert_eq!(&r[q.len()..q.len() + 2], &[0xc0, 12], "name by pointer");
        let r = answer(&query("beta.mesh", TYPE_AAAA), "mesh", lookup).unwrap();
        assert_eq!((rcode(&r), answers(&r)), (0, 1));
        assert_eq!(r[r.len() - 16], 0xfd);
        // Known name, a type it has nothing of: NOERROR, no answer.
        let r = answer(&query("beta.mesh", 16), "mesh", lookup).unwrap();
        assert_eq!((rcode(&r), answers(&r)), (0, 0));
        let r = answer(&query("nosuch.mesh", TYPE_A), "mesh", lookup).unwrap();
        assert_eq!((rcode(&r), answers(&r)), (RCODE_NXDOMAIN, 0));
        let r = answer(&query("example.org", TYPE_A), "mesh", lookup).unwrap();
        assert_eq!(rcode(&r), RCODE_REFUSED);
        let r = answer(&query("mesh", TYPE_A), "mesh.", lookup).unwrap();
        assert_eq!((rcode(&r), answers(&r)), (0, 0));
    }

    #[test]
    fn malformed_messages_get_formerr_or_nothing_and_never_panic() {
        let q = query("beta.mesh", TYPE_A);
        assert!(answer(&q[..11], "mesh", lookup).is_none());
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert!(
            answer(&resp, "mesh", lookup).is_none(),
            "a response is not answered"
        );
        for cut in 12..q.len() {
            let r = answer(&q[..cut], "mesh", lookup).unwrap();
            assert_eq!(rcode(&r), RCODE_FORMERR, "cut at {cut}");
        }
        let mut two = q.clone();
        two[5] = 2;
        assert_eq!(rcode(&answer(&two, "mesh", lookup).unwrap()), RCODE_FORMERR);
        let mut pointer = q.clone();
        pointer[12] = 0xc0;
        assert_eq!(
            rcode(&answer(&pointer, "mesh", lookup).unwrap()),
            RCODE_FORMERR
        );
        let mut update = q;
        update[2] = 5 << 3;
        assert_eq!(
            rcode(&answer(&update, "mesh", lookup).unwrap()),
            RCODE_NOTIMP
        );
        // Any bytes at all: no panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let len = (x % 64) as usize + 12;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    x = x.rotate_left(7) ^ (i as u64).wrapping_mul(0x2545_f491);
                    x as u8
                })
                .collect();
            let _ = answer(&bytes, "mesh", lookup);
        }
    }
}
