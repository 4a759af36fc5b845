//! `mesh-harness demo`: the README's main job. A 4-host topology in network
//! namespaces with real meshd agents: it comes up with progress, runs a short
//! latency and bandwidth check against the raw underlay, cuts a link (traffic
//! fails over to a relay) and repairs it (traffic returns after the
//! hold-down), prints a summary and tears everything down (also on Ctrl-C
//! or failure).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::netns::{self, state_dir};
use harness::topology::Topology;
use types::admin::{AdminRequest, AdminResponse, PeerView};

const TOPOLOGY: &str = include_str!("../../../configs/topologies/square.toml");
/// This run's topology name (`--name`; default `demo` and the process id).
static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets this run's topology name (once, before [`run`]).
pub fn set_name(name: Option<String>) {
    let _ = NAME.set(name.unwrap_or_else(|| format!("demo{}", std::process::id() % 100_000)));
}

fn name() -> &'static str {
    NAME.get_or_init(|| format!("demo{}", std::process::id() % 100_000))
}

fn ask(sock: &Path, req: &AdminRequest) -> Option<AdminResponse> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = serde_json::to_string(req).ok()?;
    line.push('\n');
    s.write_all(line.as_bytes()).ok()?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).ok()?;
    serde_json::from_str(&answer).ok()
}

fn peers(host: &str) -> Vec<PeerView> {
    match ask(
        &state_dir(name()).join(format!("{host}.sock")),
        &AdminRequest::Peers,
    ) {
        Some(AdminResponse::Peers { peers }) => peers,
        _ => Vec::new(),
    }
}

fn in_ns(host: &str, args: &[&str]) -> std::process::Output {
    netns::output(name(), host, args)
}

/// Closed-loop UDP ping-pong from a to b's `addr`; (p50, p99) in µs.
fn pingpong(me: &Path, addr: &str, count: u32) -> Result<(f64, f64), String> {
    let me_s = me.to_str().unwrap_or_default();
    let mut echo = netns::spawn(
        name(),
        "b",
        &[
            me_s,
            "udp-echo",
            "--listen",
            "0.0.0.0:7000",
            "--idle-secs",
            "3",
        ],
        Stdio::null(),
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let out = in_ns(
        "a",
        &[
            me.to_str().unwrap_or_default(),
            "udp-ping",
            "--to",
            &format!("{addr}:7000"),
            "--count",
            &count.to_string(),
        ],
    );
    let _ = echo.kill();
    let _ = echo.wait();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    match (netns::field(&text, "p50_us"), netns::field(&text, "p99_us")) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(format!(
            "udp-ping failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// A checksummed TCP transfer of `bytes` from a to b's `addr`; Gbit/s.
fn transfer(me: &Path, addr: &str, bytes: u64) -> Result<f64, String> {
    let sink = netns::spawn(
        name(),
        "b",
        &[
            me.to_str().unwrap_or_default(),
            "tcp-sink",
            "--listen",
            &format!("{addr}:5001"),
            "--timeout-secs",
            "30",
        ],
        Stdio::piped(),
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let src = in_ns(
        "a",
        &[
            me.to_str().unwrap_or_default(),
            "tcp-source",
            "--connect",
            &format!("{addr}:5001"),
            "--bytes",
            &bytes.to_string(),
        ],
    );
    let secs = t.elapsed().as_secs_f64();
    let got = sink.wait_with_output().map_err(|e| e.to_string())?;
    let (sent, got) = (
        String::from_utf8_lossy(&src.stdout),
        String::from_utf8_lossy(&got.stdout),
    );
    if !src.status.success() || sent.trim() != got.trim() {
        return Err(format!(
            "transfer to {addr} failed or differs: sent '{}' got '{}'",
            sent.trim(),
            got.trim()
        ));
    }
    Ok(bytes as f64 * 8.0 / secs / 1e9)
}

/// Runs the demo; the topology is removed whatever happens.
pub fn run(bytes: u64) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let meshd: PathBuf = me.with_file_name("meshd");
    if !meshd.exists() {
        return Err(format!(
            "{} not found; build with: cargo build --release --workspace",
            meshd.display()
        ));
    }
    let topo =
        Topology::parse(&TOPOLOGY.replace("name = \"square\"", &format!("name = \"{}\"", name())))?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: tearing down");
        netns::down(name());
        std::process::exit(130);
    });
    let result = steps(&topo, &me, &meshd, bytes);
    let removed = netns::down(name());
    println!(
        "\nteardown: removed {} namespace(s) and the demo's state",
        removed
            .iter()
            .filter(|r| r.starts_with("namespace"))
            .count()
    );
    result
}

fn steps(topo: &Topology, me: &Path, meshd: &Path, bytes: u64) -> Result<(), String> {
    let t0 = Instant::now();
    let stamp = |t0: Instant| format!("[{:>6.2}s]", t0.elapsed().as_secs_f64());
    println!("meshd demo: 4 hosts in network namespaces, real meshd agents, hybrid post-quantum sessions\n");
    println!("  a ─── b        direct link a–b, plus relayed alternatives");
    println!("  │ ╲ ╱ │        a–c–b and a–d–b");
    println!("  c     d\n");
    netns::up(topo, meshd, &mut |line| println!("{} {line}", stamp(t0)))?;

    // Watch sessions come up on the direct links.
    let expected = [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")];
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < expected.len() && Instant::now() < deadline {
        for (x, y) in expected {
            if seen.contains(&(x, y)) {
                continue;
            }
            if peers(x)
                .iter()
                .any(|p| p.name == y && p.session && p.hybrid_post_quantum)
            {
                println!("{} session {x} ↔ {y} up (X25519 + ML-KEM-768)", stamp(t0));
                seen.insert((x, y));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if seen.len() < expected.len() {
        return Err(format!(
            "only {} of {} sessions came up",
            seen.len(),
            expected.len()
        ));
    }

    println!(
        "{} latency: closed-loop UDP ping-pong a → b, 2000 round trips",
        stamp(t0)
    );
    let raw_lat = pingpong(me, "198.18.0.2", 2000)?;
    let mesh_lat = pingpong(me, "100.64.0.2", 2000)?;
    println!(
        "{} bandwidth: {} MB TCP a → b, checksummed end to end",
        stamp(t0),
        bytes / 1_000_000
    );
    let raw_bw = transfer(me, "198.18.0.2", bytes)?;
    let mesh_bw = transfer(me, "100.64.0.2", bytes)?;

    println!(
        "{} cutting link a–b (nftables drops everything on a's a–b interface)",
        stamp(t0)
    );
    // A paced stream a → b (1 datagram per ms) across the cut; the receiver
    // reports the longest silence: the outage the application sees.
    let stream = netns::OutageStream::start(name(), me, "a", "b", "100.64.0.2:6000", 3)?;
    std::thread::sleep(Duration::from_millis(1000));
    netns::cut(name(), "a", "l0", true, true)?;
    let path = |host: &str, peer: &str| {
        peers(host)
            .into_iter()
            .find(|p| p.name == peer)
            .map_or_else(|| "unknown".to_string(), |p| p.path)
    };
    let cut = Instant::now();
    let mut detected = None;
    while cut.elapsed() < Duration::from_secs(5) {
        if path("a", "b").starts_with("via ") {
            detected = Some(cut.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let detected = detected.ok_or("a did not move b's traffic to a relay within 5 s of the cut")?;
    let failover = stream.finish()?;
    println!(
        "{} a → b now {} (switched {:.0} ms after the cut); longest silence in a 1000 packet/s stream: {failover:.0} ms",
        stamp(t0),
        path("a", "b"),
        detected.as_secs_f64() * 1e3
    );
    let relayed_bw = transfer(me, "100.64.0.2", bytes.min(50_000_000))?;
    println!(
        "{} TCP through the relay: {relayed_bw:.2} Gbit/s, checksum verified",
        stamp(t0)
    );
    netns::heal(name(), "a")?;
    let healed = Instant::now();
    let mut back = None;
    while healed.elapsed() < Duration::from_secs(15) {
        if path("a", "b") == "direct" {
            back = Some(healed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = back.ok_or("a → b did not return to the direct path within 15 s of the repair")?;
    println!(
        "{} link repaired: back on the direct path {:.1} s later (after the 2 s hold-down)",
        stamp(t0),
        back.as_secs_f64()
    );
    println!("\nsummary (a → b)");
    println!(
        "  {:<28} {:>14} {:>14} {:>8}",
        "measure", "raw underlay", "through meshd", "ratio"
    );
    println!(
        "  {:<28} {:>11.1} µs {:>11.1} µs {:>8.2}",
        "UDP round trip p50",
        raw_lat.0,
        mesh_lat.0,
        mesh_lat.0 / raw_lat.0
    );
    println!(
        "  {:<28} {:>11.1} µs {:>11.1} µs {:>8.2}",
        "UDP round trip p99",
        raw_lat.1,
        mesh_lat.1,
        mesh_lat.1 / raw_lat.1
    );
    println!(
        "  {:<28} {:>9.2} Gbit/s {:>9.2} Gbit/s {:>8.2}",
        "TCP, 1 stream, checksummed",
        raw_bw,
        mesh_bw,
        mesh_bw / raw_bw
    );
    println!(
        "  {:<28} {:>14} {:>11.0} ms",
        "failover outage (a–b cut)", "-", failover
    );
    println!(
        "  {:<28} {:>14} {:>9.2} Gbit/s",
        "TCP via relay, checksummed", "-", relayed_bw
    );
    println!(
        "  {:<28} {:>14} {:>14}",
        "sessions (hybrid PQ)",
        "-",
        format!("{}/{}", seen.len(), expected.len())
    );
    println!("\n(demo runs unpinned on a shared machine; for measured numbers use scripts/bench-dataplane.sh)");
    Ok(())
}
