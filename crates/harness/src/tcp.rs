//! `tcp-source` and `tcp-sink`: a bounded TCP transfer whose content is
//! verified end to end. The source sends `bytes` of a seeded ChaCha20
//! stream; both sides print `bytes=N blake2s=HEX`, so a test compares them.
//! And `udp-junk`: a bounded burst of malformed datagrams.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use blake2::{Blake2s256, Digest};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn report(n: u64, h: Blake2s256) -> String {
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
) -> Result<String> {
    let l = TcpListener::bind(listen)?;
    let (mut s, _) = l.accept()?;
    s.set_read_timeout(Some(timeout))?;
    let mut h = Blake2s256::new();
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
        h.update(&buf[..k]);
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

/// Connects to `connect` and sends `bytes` of the stream seeded by `seed`,
/// paced to `rate_mbit` if given.
pub fn source(
    connect: SocketAddr,
    bytes: u64,
    seed: u64,
    timeout: Duration,
    rate_mbit: Option<u64>,
) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&connect, timeout)?;
    s.set_write_timeout(Some(timeout))?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut h = Blake2s256::new();
    // Small writes when paced, so the pace is smooth.
    let chunk = if rate_mbit.is_some() {
        16 * 1024
    } else {
        256 * 1024
    };
    let mut buf = vec![0u8; chunk];
    let mut left = bytes;
    let start = std::time::Instant::now();
    while left > 0 {
        let k = (buf.len() as u64).min(left) as usize;
        rng.fill_bytes(&mut buf[..k]);
        s.write_all(&buf[..k])?;
        h.update(&buf[..k]);
        left -= k as u64;
        if let Some(r) = rate_mbit.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64((bytes - left) as f64 * 8.0 / (r as f64 * 1e6));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    s.shutdown(std::net::Shutdown::Write)?;
    Ok(report(bytes, h))
}

/// Sends `count` malformed datagrams of four shapes to `to`; returns how many
/// were sent.
pub fn udp_junk(to: SocketAddr, count: u64, seed: u64) -> Result<u64> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let s = std::net::UdpSocket::bind(bind)?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut buf = vec![0u8; 1500];
    for i in 0..count {
        let len = match i % 4 {
            // Random bytes of random length.
            0 => 1 + (rng.next_u32() as usize % 1400),
            // Truncated headers.
            1 => rng.next_u32() as usize % 16,
            // Transport packets for sessions that do not exist / bad tags.
            2 => 32 + (rng.next_u32() as usize % 1400),
            // Handshake fragments with garbage MACs.
            _ => 64 + (rng.next_u32() as usize % 1100),
        };
        rng.fill_bytes(&mut buf[..len]);
        match i % 4 {
            2 => {
                buf[0] = 4;
                buf[1..4].fill(0);
            }
            3 => {
                buf[0] = 1;
                buf[1] = 0;
                buf[2] = 1;
                buf[3] = 0;
            }
            _ => {}
        }
        s.send_to(&buf[..len], to)?;
        if i % 256 == 255 {
            // Stay bounded in rate as well as count.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(count)
}
