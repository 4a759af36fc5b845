//! `udp-pace` and `udp-gaps`: a paced, sequence-numbered UDP stream and its
//! receiver, which reports the longest silence between two arrivals. While
//! a link is cut and traffic fails over, that silence is the outage the
//! application saw: from the last packet before the cut to the first one
//! through the relay.

use std::error::Error;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Sends a datagram carrying its sequence number every `interval` for `secs`.
pub fn pace(to: SocketAddr, interval: Duration, secs: Duration) -> Result<u64> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let s = UdpSocket::bind(bind)?;
    let start = Instant::now();
    let mut seq = 0u64;
    let mut buf = [0u8; 64];
    while start.elapsed() < secs {
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        // A send can fail while routes move (e.g. EPERM from a firewall
        // rule); the stream goes on, the receiver counts the loss.
        let _ = s.send_to(&buf, to);
        seq += 1;
        let next = start + interval * u32::try_from(seq).unwrap_or(u32::MAX);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(seq)
}

/// What the receiver saw.
pub struct Gaps {
    /// Datagrams received.
    pub received: u64,
    /// Sequence numbers never seen, up to the highest one seen.
    pub lost: u64,
    /// Longest time between two consecutive arrivals.
    pub max_gap: Duration,
    /// When (since the first arrival) that longest gap ended.
    pub max_gap_end: Duration,
}

/// Receives the stream on `listen` for up to `secs` after the first datagram
/// (or until `idle` without one).
pub fn gaps(listen: SocketAddr, secs: Duration, idle: Duration) -> Result<Gaps> {
    let s = UdpSocket::bind(listen)?;
    s.set_read_timeout(Some(idle))?;
    let mut buf = [0u8; 2048];
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut out = Gaps {
        received: 0,
        lost: 0,
        max_gap: Duration::ZERO,
        max_gap_end: Duration::ZERO,
    };
    let mut highest = 0u64;
    loop {
        if first.is_some_and(|f| f.elapsed() >= secs) {
            break;
        }
        match s.recv_from(&mut buf) {
            Ok((n, _)) if n >= 8 => {
                let now = Instant::now();
                let seq = u64::from_le_bytes(buf[..8].try_into()?);
                highest = highest.max(seq);
                match first {
                    None => first = Some(now),
                    Some(f) => {
                        let gap = now - last;
                        if gap > out.max_gap {
                            out.max_gap = gap;
                            out.max_gap_end = now - f;
                        }
                    }
                }
                last = now;
                out.received += 1;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e.into()),
        }
    }
    if out.received > 0 {
        out.lost = (highest + 1).saturating_sub(out.received);
    }
    Ok(out)
}
