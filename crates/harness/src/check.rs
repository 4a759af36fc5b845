//! `mesh-harness check --targets FILE`: measure a two-host mesh against
//! written targets, with the raw underlay measured in the same run, print a
//! table (target, measured, raw, ratio, pass/fail), optionally write JSON,
//! and fail when a target is missed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use harness::netns::{self, state_dir};
use harness::targets::{load_targets, Target};
use harness::topology::Topology;

/// This run's topology name (`--name`; default `check` and the process id,
/// so that two runs on one host never meet).
static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets this run's topology name (once, before [`run`]).
pub fn set_name(name: Option<String>) {
    let _ = NAME.set(name.unwrap_or_else(|| format!("check{}", std::process::id() % 10_000)));
}

fn name() -> &'static str {
    NAME.get_or_init(|| format!("check{}", std::process::id() % 10_000))
}

/// The failover run's topology: this run's name and `f`.
fn failover_name() -> String {
    format!("{}f", name())
}
const TOPOLOGY: &str = "name = \"check\"\n[[host]]\nname = \"a\"\n[[host]]\nname = \"b\"\n[[link]]\nbetween = [\"a\", \"b\"]\n";
/// Addresses the handshake-rate nodes come from: 198.18.0.BASE and up on
/// a's link (a is .1, b is .2).
const HANDSHAKE_SOURCE_BASE: u8 = 3;
/// See [`HANDSHAKE_SOURCE_BASE`]: enough that 1,000 handshakes in a second
/// stay within each address's burst and rate under load (20 initiation
/// fragments a second, bursts of 5; a handshake answered with a cookie
/// costs 3).
const HANDSHAKE_SOURCES: u8 = 250;
/// meshd's TUN MTU in the check topology (the agent's default).
const TUN_MTU: f64 = 1420.0;

/// One row of the report.
#[derive(Debug, Serialize)]
pub struct Row {
    target: Target,
    measured: Option<f64>,
    raw: Option<f64>,
    ratio: Option<f64>,
    pass: bool,
}

fn in_ns(host: &str, args: &[&str]) -> std::process::Output {
    netns::output(name(), host, args)
}

/// Closed-loop ping-pong; (p50, p99, p99.9) in µs. With `cdf`, the round-trip
/// CDF is written there (by udp-ping, inside the namespace).
fn pingpong(
    me: &Path,
    addr: &str,
    count: u32,
    cdf: Option<&Path>,
) -> Result<(f64, f64, f64), String> {
    let target = format!("{addr}:7000");
    let count_s = count.to_string();
    let mut args = vec![
        me.to_str().unwrap_or_default(),
        "udp-ping",
        "--to",
        &target,
        "--count",
        &count_s,
    ];
    let cdf_s = cdf.map(|p| p.to_string_lossy().to_string());
    if let Some(c) = &cdf_s {
        args.extend(["--cdf", c]);
    }
    let out = in_ns("a", &args);
    let t = String::from_utf8_lossy(&out.stdout);
    netns::field(&t, "p99_us")
        .zip(netns::field(&t, "p999_us"))
        .map(|(p99, p999)| (netns::field(&t, "p50_us").unwrap_or(f64::NAN), p99, p999))
        .ok_or_else(|| {
            format!(
                "udp-ping to {addr} failed: {t}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// A sequence-numbered UDP stream a → `addr` at 10,000 datagrams/s for
/// `secs`; the fraction delivered (losses counted by sequence number).
fn long_run(me: &Path, addr: &str, secs: u64) -> Result<f64, String> {
    let me_s = me.to_str().unwrap_or_default();
    let listen = format!("{addr}:7100");
    let rx = netns::spawn(
        name(),
        "b",
        &[
            me_s,
            "udp-gaps",
            "--listen",
            &listen,
            "--secs",
            &secs.to_string(),
            "--idle-secs",
            "5",
        ],
        Stdio::piped(),
    )?;
    let mut guard = Reap(vec![]);
    std::thread::sleep(Duration::from_millis(200));
    guard.0.push(netns::spawn(
        name(),
        "a",
        &[
            me_s,
            "udp-pace",
            "--to",
            &listen,
            "--interval-us",
            "100",
            "--secs",
            &(secs + 1).to_string(),
        ],
        Stdio::null(),
    )?);
    let out = rx.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (got, lost) = netns::field(&text, "received")
        .zip(netns::field(&text, "lost"))
        .ok_or_else(|| format!("udp-gaps to {addr}: {text}"))?;
    if got == 0.0 {
        return Err(format!("long run to {addr}: nothing arrived"));
    }
    Ok(got / (got + lost))
}

fn iperf_json(args: &[&str]) -> Result<serde_json::Value, String> {
    let mut full = vec!["iperf3"];
    full.extend_from_slice(args);
    full.push("-J");
    // The iperf3 server takes one test at a time; give a finishing one a moment.
    let mut last = String::new();
    for _ in 0..5 {
        let out = in_ns("a", &full);
        match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            Ok(v) if v.get("error").is_none() => return Ok(v),
            Ok(v) => last = v["error"].to_string(),
            Err(e) => last = format!("{e}: {}", String::from_utf8_lossy(&out.stderr)),
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    Err(format!("iperf3 {args:?}: {last}"))
}

fn tcp_gbps(addr: &str, secs: u64) -> Result<f64, String> {
    let v = iperf_json(&["-c", addr, "-t", &secs.to_string()])?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| format!("iperf3 to {addr}: {v}"))
}

/// UDP goodput, Gbit/s: 1,200-byte datagrams offered as fast as iperf3 can.
fn udp_gbps(addr: &str, secs: u64) -> Result<f64, String> {
    let v = iperf_json(&[
        "-c",
        addr,
        "-u",
        "-b",
        "0",
        "-l",
        "1200",
        "-w",
        "4M",
        "-t",
        &secs.to_string(),
    ])?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .or_else(|| {
            // Older iperf3: receiver totals in "sum" with lost packets.
            let s = &v["end"]["sum"];
            let (b, l, t) = (
                s["bits_per_second"].as_f64()?,
                s["lost_percent"].as_f64()?,
                100.0,
            );
            Some(b * (t - l) / t)
        })
        .map(|b| b / 1e9)
        .ok_or_else(|| format!("iperf3 UDP to {addr}: {v}"))
}

fn udp_delivered(addr: &str, secs: u64, mbit: u64) -> Result<f64, String> {
    let rate = format!("{mbit}M");
    let v = iperf_json(&[
        "-c",
        addr,
        "-u",
        "-b",
        &rate,
        "-l",
        "1200",
        // 4 MB socket buffers, so drops inside iperf3 do not count against the path.
        "-w",
        "4M",
        "-t",
        &secs.to_string(),
    ])?;
    let s = &v["end"]["sum"];
    let (lost, total) = (s["lost_packets"].as_f64(), s["packets"].as_f64());
    match (lost, total) {
        (Some(l), Some(t)) if t > 0.0 => Ok((t - l) / t),
        _ => Err(format!("iperf3 UDP to {addr}: {v}")),
    }
}

/// Processes killed (and reaped) on drop.
struct Reap(Vec<std::process::Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a failover run measured.
struct Failover {
    /// Longest silence in the paced UDP stream, ms.
    outage_ms: f64,
    /// A paced TCP stream's throughput around the cut: (seconds since the
    /// cut, Mbit/s per 50 ms).
    throughput: Vec<(f64, f64)>,
}

/// Across a cut of the direct a–b link on the square topology: the longest
/// silence (ms) in a 1000 datagram/s stream a → b, and the throughput over
/// time of a TCP stream a → b paced at 100 Mbit/s.
fn failover(me: &Path, meshd: &Path, work: &Path) -> Result<Failover, String> {
    let text = include_str!("../../../configs/topologies/square.toml").replace(
        "name = \"square\"",
        &format!("name = \"{}\"", failover_name()),
    );
    let topo = Topology::parse(&text)?;
    netns::up(&topo, meshd, &mut |l| println!("  {l}"))?;
    // Sessions and adverts: wait until a reaches b through the overlay, then
    // give the link-state exchange a moment.
    let t = Instant::now();
    while !netns::output(
        &failover_name(),
        "a",
        &["ping", "-c", "1", "-W", "1", "100.64.0.2"],
    )
    .status
    .success()
    {
        if t.elapsed() > Duration::from_secs(10) {
            return Err("a cannot reach b through the overlay".into());
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let me_s = me.to_str().unwrap_or_default();
    let series = work.join("failover.series");
    let series_s = series.to_string_lossy().to_string();
    let sink = netns::spawn(
        &failover_name(),
        "b",
        &[
            me_s,
            "tcp-sink",
            "--listen",
            "100.64.0.2:6001",
            "--timeout-secs",
            "10",
            "--series",
            &series_s,
        ],
        Stdio::null(),
    )?;
    let mut tcp = Reap(vec![sink]);
    std::thread::sleep(Duration::from_millis(200));
    // 100 Mbit/s for about 4 s: from before the cut to well after the return.
    tcp.0.push(netns::spawn(
        &failover_name(),
        "a",
        &[
            me_s,
            "tcp-source",
            "--connect",
            "100.64.0.2:6001",
            "--bytes",
            "50000000",
            "--rate-mbit",
            "100",
            "--timeout-secs",
            "10",
        ],
        Stdio::null(),
    )?);
    let stream = netns::OutageStream::start(&failover_name(), me, "a", "b", "100.64.0.2:6000", 3)?;
    std::thread::sleep(Duration::from_millis(1000));
    let cut_ms = crate::tcp::unix_ms();
    netns::cut(&failover_name(), "a", "l0", true, true)?;
    let outage_ms = stream.finish()?;
    // The TCP transfer ends by itself (bounded by its 10 s timeouts).
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if tcp
            .0
            .iter_mut()
            .all(|c| c.try_wait().ok().flatten().is_some())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(tcp);
    let bucket = crate::tcp::SERIES_BUCKET_MS as f64;
    let throughput = std::fs::read_to_string(&series)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (t, b) = l.split_once(' ')?;
            let (t, b): (f64, f64) = (t.parse().ok()?, b.parse().ok()?);
            Some(((t - cut_ms as f64) / 1e3, b * 8.0 / (bucket / 1e3) / 1e6))
        })
        .collect();
    Ok(Failover {
        outage_ms,
        throughput,
    })
}

/// Reads a CDF file written by `udp-ping --cdf`.
fn read_cdf(path: &Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (x, f) = l.split_once(' ')?;
            Some((x.parse().ok()?, f.parse().ok()?))
        })
        .collect()
}

/// Knobs of a check run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Short measurements (for CI).
    pub quick: bool,
    /// Offered UDP rate for the loss measurement, Mbit/s.
    pub offered_mbit: u64,
    /// Seconds of the long reliability run (each of raw and meshd).
    pub long_run_secs: Option<u64>,
}

/// Runs the check. `quick` shortens every measurement (for CI). With `svg`,
/// the idle round-trip CDFs (raw and through meshd) are drawn there as
/// `check-latency-cdf.svg`, and the failover's TCP throughput over time as
/// `check-failover-throughput.svg`.
pub fn run(
    targets_path: &Path,
    json: Option<PathBuf>,
    opts: Options,
    svg: Option<PathBuf>,
) -> Result<bool, String> {
    let targets = load_targets(targets_path)?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let meshd = me.with_file_name("meshd");
    let topo =
        Topology::parse(&TOPOLOGY.replace("name = \"check\"", &format!("name = \"{}\"", name())))?;
    let _ = ctrlc::set_handler(|| {
        netns::down(name());
        netns::down(&failover_name());
        std::process::exit(130);
    });
    println!("mesh-harness check: 2 hosts, one veth link; every metric also over the raw underlay");
    if std::thread::available_parallelism().map_or(1, usize::from) >= 2 {
        // Each end on its own CPU, as the benchmarks run: otherwise the
        // loaded figures measure where the scheduler put meshd beside iperf3.
        netns::pin(name(), "a", 0);
        netns::pin(name(), "b", 1);
        println!("  pinned: a's processes (meshd, tools) on CPU 0, b's on CPU 1");
    }
    netns::up(&topo, &meshd, &mut |l| println!("  {l}"))?;
    let cdf_dir = std::env::temp_dir().join(format!("mesh-harness-cdf-{}", std::process::id()));
    std::fs::create_dir_all(&cdf_dir).map_err(|e| format!("{}: {e}", cdf_dir.display()))?;
    let result = measure(&me, &meshd, opts, &cdf_dir);
    let mut ids_lines = netns::ids_log_lines(name(), &["a", "b"]);
    netns::down(name());
    let cdfs = [
        ("raw underlay", read_cdf(&cdf_dir.join("raw.cdf"))),
        ("through meshd", read_cdf(&cdf_dir.join("meshd.cdf"))),
    ];
    let _ = std::fs::remove_dir_all(&cdf_dir);
    let (mut meshd_m, raw_m) = result?;
    if let Some(dir) = &svg {
        let chart = harness::svg::Chart {
            title: "UDP round trip, closed loop, idle: CDF (HDR histogram)".into(),
            x_label: "fraction of round trips at or below".into(),
            y_label: "round trip µs".into(),
            log_x: false,
            series: cdfs
                .iter()
                .map(|(name, pts)| harness::svg::Series {
                    name: (*name).into(),
                    // Quantile on x, latency on y: the tail is visible at the right.
                    points: pts.iter().map(|(us, f)| (*f, *us)).collect(),
                })
                .collect(),
            target: Some((1000.0, "1 ms".into())),
            markers: vec![],
        };
        let path = dir.join("check-latency-cdf.svg");
        std::fs::write(&path, chart.render()).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if targets.iter().any(|t| t.metric == "failover-ms") {
        println!("failover: the square topology (a–b direct, relays c and d), a–b cut under paced UDP and TCP streams");
        let work = std::env::temp_dir().join(format!("mesh-harness-fo-{}", std::process::id()));
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let r = failover(&me, &meshd, &work);
        ids_lines += netns::ids_log_lines(&failover_name(), &["a", "b", "c", "d"]);
        netns::down(&failover_name());
        let _ = std::fs::remove_dir_all(&work);
        let r = r?;
        meshd_m.insert("failover-ms".into(), r.outage_ms);
        if let Some(dir) = &svg {
            let chart = harness::svg::Chart {
                title: "TCP a → b paced at 100 Mbit/s while the direct link is cut".into(),
                x_label: "seconds since the cut".into(),
                y_label: "Mbit/s (per 50 ms)".into(),
                log_x: false,
                series: vec![harness::svg::Series {
                    name: "received at b".into(),
                    points: r.throughput,
                }],
                target: None,
                markers: vec![(0.0, format!("a–b cut; UDP outage {:.0} ms", r.outage_ms))],
            };
            let path = dir.join("check-failover-throughput.svg");
            std::fs::write(&path, chart.render())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    // A false-positive run: everything above is normal operation (bulk
    // TCP and UDP, request/response, a handshake storm, restarts, a
    // reload, a policy push, rekeys, a renewal, a link cut and failover).
    meshd_m.insert("ids-alerts".into(), ids_lines as f64);
    println!("intrusion detection over the whole run: {ids_lines} log line(s) (alerts, sanctions, accusations)");
    let yearly = crate::events::yearly_outage_s(|k| meshd_m.get(k).copied());
    meshd_m.insert("yearly-outage-s".into(), yearly);
    println!(
        "yearly outage from the events measured: {yearly:.1} s (five nines: {:.0} s a year)",
        crate::events::FIVE_NINES_BUDGET_S
    );
    for (metric, per_year, why) in crate::events::YEARLY {
        if let Some(ms) = meshd_m.get(metric) {
            println!(
                "  {metric:<22} {ms:>7.1} ms × {per_year:>7} a year ({why}) = {:.1} s",
                ms * per_year / 1e3
            );
        }
    }
    let mut rows = Vec::new();
    let mut all = true;
    for t in targets {
        let measured = meshd_m.get(&t.metric).copied();
        let raw = raw_m.get(&t.metric).copied();
        let pass =
            measured.is_some_and(|m| t.max.is_none_or(|x| m <= x) && t.min.is_none_or(|x| m >= x));
        all &= pass;
        let ratio = match (measured, raw) {
            (Some(m), Some(r)) if r != 0.0 => Some(m / r),
            _ => None,
        };
        rows.push(Row {
            target: t,
            measured,
            raw,
            ratio,
            pass,
        });
    }
    println!(
        "\n{:<42} {:>14} {:>12} {:>12} {:>8}  result",
        "target", "bound", "measured", "raw", "ratio"
    );
    for r in &rows {
        let bound = match (r.target.min, r.target.max) {
            (Some(m), _) => format!(">= {m}"),
            (_, Some(m)) => format!("<= {m}"),
            _ => "-".into(),
        };
        let f = |v: Option<f64>| v.map(|v| format!("{v:.5}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<42} {:>14} {:>12} {:>12} {:>8}  {}",
            r.target.name,
            bound,
            f(r.measured),
            f(r.raw),
            r.ratio
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into()),
            if r.pass { "pass" } else { "FAIL" }
        );
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(all)
}

type Metrics = BTreeMap<String, f64>;

/// Measures `f` over the raw underlay (b's underlay address) and through
/// meshd (b's overlay address), in that order, and records both as `key`.
fn both(
    raw: &mut Metrics,
    m: &mut Metrics,
    key: &str,
    mut f: impl FnMut(&str) -> Result<f64, String>,
) -> Result<(f64, f64), String> {
    let r = f("198.18.0.2")?;
    raw.insert(key.into(), r);
    let x = f("100.64.0.2")?;
    m.insert(key.into(), x);
    Ok((r, x))
}

fn measure(
    me: &Path,
    meshd: &Path,
    opts: Options,
    cdf_dir: &Path,
) -> Result<(Metrics, Metrics), String> {
    let (secs, count) = if opts.quick { (2, 1000) } else { (10, 10_000) };
    let long_secs = opts
        .long_run_secs
        .unwrap_or(if opts.quick { 3 } else { 60 });
    let mut m = Metrics::new();
    let mut raw = Metrics::new();
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
            "60",
        ],
        Stdio::null(),
    )?;
    let mut iperf = netns::spawn(name(), "b", &["iperf3", "-s"], Stdio::null())?;
    std::thread::sleep(Duration::from_millis(300));
    let r = (|| -> Result<(), String> {
        println!("  idle latency (closed-loop UDP ping-pong, {count} round trips)");
        for (addr, into, cdf) in [
            ("198.18.0.2", &mut raw, "raw.cdf"),
            ("100.64.0.2", &mut m, "meshd.cdf"),
        ] {
            let (p50, p99, p999) = pingpong(me, addr, count, Some(&cdf_dir.join(cdf)))?;
            into.insert("udp-rtt-p50-us".into(), p50);
            into.insert("udp-rtt-p99-us".into(), p99);
            into.insert("udp-rtt-p999-us".into(), p999);
        }
        println!("  TCP throughput ({secs} s each)");
        let (r_bw, m_bw) = both(&mut raw, &mut m, "tcp-gbps", |a| tcp_gbps(a, secs))?;
        raw.insert("tcp-ratio".into(), 1.0);
        m.insert("tcp-ratio".into(), m_bw / r_bw);
        match crate::reference::find() {
            Some(bt) => {
                println!("  TCP through a reference WireGuard (boringtun, one thread, same hosts and CPUs)");
                let reference = crate::reference::start(name(), &bt)?;
                let g = tcp_gbps(&crate::reference::overlay(2), secs);
                drop(reference);
                let g = g?;
                m.insert("reference-tcp-gbps".into(), g);
                m.insert("tcp-vs-reference".into(), m_bw / g);
            }
            None => println!(
                "  TCP through a reference WireGuard: boringtun-cli not installed (cargo install boringtun-cli), not measured"
            ),
        }
        println!("  latency under load (ping-pong during a TCP transfer)");
        for (addr, into) in [("198.18.0.2", &mut raw), ("100.64.0.2", &mut m)] {
            let load = netns::spawn(
                name(),
                "a",
                &["iperf3", "-c", addr, "-t", &(secs + 2).to_string()],
                Stdio::null(),
            )?;
            std::thread::sleep(Duration::from_millis(500));
            let r = pingpong(me, addr, count / 2, None);
            let _ = load.wait_with_output();
            std::thread::sleep(Duration::from_millis(300));
            let (p50, p99, p999) = r?;
            into.insert("udp-rtt-loaded-p50-us".into(), p50);
            into.insert("udp-rtt-loaded-p99-us".into(), p99);
            into.insert("udp-rtt-loaded-p999-us".into(), p999);
        }
        // What meshd adds to the path, idle and under load, against the
        // raw underlay measured in the same run.
        for (added, of) in [
            ("udp-rtt-added-p50-us", "udp-rtt-p50-us"),
            ("udp-rtt-added-p99-us", "udp-rtt-p99-us"),
            ("udp-rtt-loaded-added-p50-us", "udp-rtt-loaded-p50-us"),
        ] {
            m.insert(added.into(), m[of] - raw[of]);
            raw.insert(added.into(), 0.0);
        }
        m.insert(
            "udp-rtt-loaded-p99-ratio".into(),
            m["udp-rtt-loaded-p99-us"] / raw["udp-rtt-loaded-p99-us"],
        );
        raw.insert("udp-rtt-loaded-p99-ratio".into(), 1.0);
        println!("  UDP throughput (1,200-byte datagrams, unlimited offered rate, {secs} s each)");
        let (r_udp, m_udp) = both(&mut raw, &mut m, "udp-gbps", |a| udp_gbps(a, secs))?;
        raw.insert("udp-ratio".into(), 1.0);
        m.insert("udp-ratio".into(), m_udp / r_udp);
        let mbit = opts.offered_mbit;
        println!("  loss at an offered rate (UDP at {mbit} Mbit/s for {secs} s)");
        both(&mut raw, &mut m, "udp-delivered-ratio", |a| {
            udp_delivered(a, secs, mbit)
        })?;
        println!("  reliability over a long run (10,000 datagrams/s for {long_secs} s, sequence-numbered)");
        both(&mut raw, &mut m, "longrun-delivered-ratio", |a| {
            long_run(me, a, long_secs)
        })?;
        // Wire efficiency at full-size packets: inner bytes per underlay byte
        // (IPv4 + UDP + meshd's 32 bytes), against the raw link's 1.
        m.insert("wire-efficiency".into(), TUN_MTU / (TUN_MTU + 28.0 + 32.0));
        raw.insert("wire-efficiency".into(), 1.0);
        let n = if opts.quick { 100 } else { 1000 };
        // New nodes from many addresses, as on a real network: under load b
        // holds each source address to 20 initiation fragments a second.
        let sources: Vec<String> = (0..HANDSHAKE_SOURCES)
            .map(|k| format!("198.18.0.{}", HANDSHAKE_SOURCE_BASE + k))
            .collect();
        for s in &sources {
            let out = in_ns("a", &["ip", "addr", "add", &format!("{s}/24"), "dev", "l0"]);
            if !out.status.success() {
                return Err(format!(
                    "adding source address {s} on a: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        println!(
            "  handshake rate ({n} new nodes from {HANDSHAKE_SOURCES} addresses each handshake once with b, 64 in flight)"
        );
        let dir = state_dir(name());
        let (dir_s, cert_s) = (
            dir.to_string_lossy().to_string(),
            dir.join("b.crt").to_string_lossy().to_string(),
        );
        let n_s = n.to_string();
        let mut args = vec![
            me.to_str().unwrap_or_default(),
            "handshake-load",
            "--dir",
            &dir_s,
            "--cert",
            &cert_s,
            "--to",
            "198.18.0.2:51820",
            "--count",
            &n_s,
        ];
        for s in &sources {
            args.extend(["--source", s.as_str()]);
        }
        let out = in_ns("a", &args);
        let text = String::from_utf8_lossy(&out.stdout);
        let done = netns::field(&text, "handshakes").unwrap_or(0.0);
        if done < f64::from(n) {
            return Err(format!(
                "handshake load: {done} of {n} completed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        m.insert(
            "handshakes-per-sec".into(),
            netns::field(&text, "rate").ok_or_else(|| format!("handshake-load: {text}"))?,
        );
        println!("  time from agent start to first packet through");
        let dir = state_dir(name());
        let pid = std::fs::read_to_string(dir.join("a.pid")).unwrap_or_default();
        let _ = Command::new("kill").arg(pid.trim()).status();
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        netns::start_agent(name(), "a", meshd)?;
        let mut first = None;
        while t.elapsed() < Duration::from_secs(10) {
            if in_ns("a", &["ping", "-c", "1", "-W", "1", "100.64.0.2"])
                .status
                .success()
            {
                first = Some(t.elapsed());
                break;
            }
        }
        m.insert(
            "first-packet-ms".into(),
            first
                .ok_or("no packet through within 10 s of agent start")?
                .as_secs_f64()
                * 1e3,
        );
        println!("  outage per event on b (1,000 datagrams/s a → b; lost datagrams × 1 ms)");
        for o in crate::events::measure(name(), me, meshd, &me.with_file_name("meshctl"))? {
            println!(
                "    {:<22} {:>7.1} ms lost, longest silence {:.1} ms",
                o.metric, o.lost_ms, o.max_gap_ms
            );
            m.insert(o.metric.into(), o.lost_ms);
        }
        Ok(())
    })();
    let _ = echo.kill();
    let _ = iperf.kill();
    let _ = echo.wait();
    let _ = iperf.wait();
    r.map(|()| (m, raw))
}
