//! A closed-loop UDP ping-pong: the client sends one datagram, waits for the
//! echo, and sends the next; it reports round-trip percentiles from an HDR
//! histogram (3 significant digits) and can write the CDF. Unlike 10
//! ms-spaced pings this measures the path's latency under continuous use.

use std::error::Error;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Echoes datagrams back to their sender until `idle` passes without one.
pub fn server(listen: SocketAddr, idle: Duration) -> Result<u64> {
    let s = UdpSocket::bind(listen)?;
    s.set_read_timeout(Some(idle))?;
    let mut buf = [0u8; 2048];
    let mut n = 0u64;
    loop {
        match s.recv_from(&mut buf) {
            Ok((len, from)) => {
                s.send_to(&buf[..len], from)?;
                n += 1;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(n)
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Round-trip statistics in microseconds.
pub struct Stats {
    pub count: usize,
    pub lost: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// The CDF as (round trip µs, fraction at or below), one point per
    /// distinct HDR bucket.
    pub cdf: Vec<(f64, f64)>,
}

/// Sends `count` datagrams of `size` bytes one at a time to `server`,
/// stopping early once `for_at_most` has passed (if given).
pub fn client(
    server: SocketAddr,
    count: usize,
    size: usize,
    timeout: Duration,
    for_at_most: Option<Duration>,
) -> Result<Stats> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(server)?;
    s.set_read_timeout(Some(timeout))?;
    let mut out = vec![0u8; size.clamp(8, 1400)];
    let mut buf = [0u8; 2048];
    // HDR histogram in nanoseconds, 3 significant digits, 1 µs to 60 s.
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let mut lost = 0;
    // Warm-up: a few unmeasured round trips (first one may wait for a handshake).
    for i in 0..10u64 {
        out[..8].copy_from_slice(&(u64::MAX - i).to_le_bytes());
        s.send(&out)?;
        let _ = s.recv(&mut buf);
    }
    let start = Instant::now();
    for i in 0..count as u64 {
        if for_at_most.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        out[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        s.send(&out)?;
        loop {
            match s.recv(&mut buf) {
                Ok(n) if n >= 8 && buf[..8] == i.to_le_bytes() => {
                    let ns = (t.elapsed().as_nanos() as u64).clamp(1_000, 60_000_000_000);
                    hist.record(ns).map_err(|e| format!("histogram: {e}"))?;
                    break;
                }
                Ok(_) => continue, // a late echo of an earlier probe
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    let us = |ns: u64| ns as f64 / 1e3;
    let n = hist.len();
    let pct = |p: f64| {
        if n == 0 {
            f64::NAN
        } else {
            us(hist.value_at_quantile(p))
        }
    };
    let cdf = hist
        .iter_recorded()
        .map(|v| {
            (
                us(v.value_iterated_to()),
                v.count_since_last_iteration() as f64,
            )
        })
        .scan(0.0, |acc, (x, c)| {
            *acc += c;
            Some((x, *acc / n.max(1) as f64))
        })
        .collect();
    Ok(Stats {
        count: n as usize,
        lost,
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        max: if n == 0 { f64::NAN } else { us(hist.max()) },
        cdf,
    })
}
