//! `tcp-source` and `tcp-sink`: a bounded TCP transfer whose content is
//! verified end to end. The source sends `bytes` of a seeded ChaCha20
//! stream; both sides print `bytes=N blake2s=HEX`, so a test compares them.
//! With `plain`, neither side generates nor hashes anything (one buffer sent
//! again and again, as iperf3 does): the cost of a throughput measurement
//! then lies with the path, not with the ends.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use blake2::{Blake2s256, Digest};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn report(n: u64, h: Option<Blake2s256>) -> String {
    let Some(h) = h else {
        return format!("bytes={n}");
    };
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("bytes={n} blake2s={hex}")
}

/// Width of a throughput-series bucket.
pub const SERIES_BUCKET_MS: u64 = 50;

/// Accepts one connection on `listen` and reads it to the end. With
/// `series`, writes the bytes received per 50 ms there, one
/// `unix_ms bytes` line per bucket (Unix time, so another process can place
/// events such as a link cut on the same axis).
pub fn sink(
    listen: SocketAddr,
    timeout: Duration,
    series: Option<&std::path::Path>,
    plain: bool,
) -> Result<String> {
    let l = TcpListener::bind(listen)?;
    // Waits for the connection no longer than for data.
    l.set_nonblocking(true)?;
    let waiting = std::time::Instant::now();
    let mut s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if waiting.elapsed() >= timeout {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection to {listen} in {timeout:?}"),
                    )
                    .into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    };
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(timeout))?;
    let mut h = (!plain).then(Blake2s256::new);
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    let mut buckets: std::collections::BTreeMap<u64, u64> = Default::default();
    loop {
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        if series.is_some() {
            let ms = unix_ms();
            *buckets.entry(ms - ms % SERIES_BUCKET_MS).or_insert(0) += k as u64;
        }
        if let Some(h) = &mut h {
            h.update(&buf[..k]);
        }
        n += k as u64;
    }
    if let Some(path) = series {
        // Empty buckets inside the transfer are written as 0: they are the outage.
        let mut text = String::new();
        if let (Some(&first), Some(&last)) = (buckets.keys().next(), buckets.keys().last()) {
            let mut t = first;
            while t <= last {
                text.push_str(&format!("{t} {}\n", buckets.get(&t).copied().unwrap_or(0)));
                t += SERIES_BUCKET_MS;
            }
        }
        std::fs::write(path, text)?;
    }
    Ok(report(n, h))
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What `tcp-source` sends.
pub struct Source {
    pub connect: SocketAddr,
    /// Bytes at most.
    pub bytes: u64,
    pub seed: u64,
    /// Give up after this long without progress.
    pub timeout: Duration,
    /// Paced to this rate.
    pub rate_mbit: Option<u64>,
    /// One buffer again and again, nothing hashed.
    pub plain: bool,
    /// Stop after this long (with `bytes` sent or not).
    pub for_at_most: Option<Duration>,
}

/// Connects and sends `bytes` of the stream seeded by `seed` (or, plain,
/// of one buffer repeated), paced to `rate_mbit` if given.
pub fn source(o: &Source) -> Result<String> {
    let Source {
        connect,
        bytes,
        seed,
        timeout,
        rate_mbit,
        plain,
        for_at_most,
    } = *o;
    let mut s = TcpStream::connect_timeout(&connect, timeout)?;
    s.set_write_timeout(Some(timeout))?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut h = (!plain).then(Blake2s256::new);
    // Small writes when paced, so the pace is smooth.
    let chunk = if rate_mbit.is_some() {
        16 * 1024
    } else {
        256 * 1024
    };
    let mut buf = vec![0u8; chunk];
    if plain {
        rng.fill_bytes(&mut buf);
    }
    let mut left = bytes;
    let start = std::time::Instant::now();
    while left > 0 && for_at_most.is_none_or(|d| start.elapsed() < d) {
        let k = (buf.len() as u64).min(left) as usize;
        if let Some(h) = &mut h {
            rng.fill_bytes(&mut buf[..k]);
            h.update(&buf[..k]);
        }
        s.write_all(&buf[..k])?;
        left -= k as u64;
        if let Some(r) = rate_mbit.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64((bytes - left) as f64 * 8.0 / (r as f64 * 1e6));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    s.shutdown(std::net::Shutdown::Write)?;
    Ok(report(bytes - left, h))
}
