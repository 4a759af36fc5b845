//! `mesh-harness`: meshd's demo and (later) topology and load harness.
//!
//! `mesh-harness handshake-demo` runs two meshd protocol endpoints in one
//! process over real UDP sockets on 127.0.0.1: a fresh CA issues both
//! certificates, the nodes perform the hybrid Noise IK + ML-KEM-768
//! handshake, and exchange encrypted packets, printing each step.

mod check;
mod demo;
mod events;
mod flood;
mod hsload;
mod mesh_demo;
mod pingpong;
mod reach;
mod reference;
mod stream;
mod tcp;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mesh-harness", version, about = "meshd demo and test harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The full demo (root): 4 hosts in namespaces with real meshd agents,
    /// sessions coming up, latency and bandwidth against the raw underlay, a
    /// link cut and restored, a summary; everything removed afterwards.
    Demo {
        /// Bytes for each TCP transfer (at most 10 GB).
        #[arg(long, default_value_t = 200_000_000, value_parser = clap::value_parser!(u64).range(1_000_000..=10_000_000_000))]
        bytes: u64,
        /// Topology name, part of its namespaces' names (default: demo and
        /// this process's id, so concurrent runs never meet).
        #[arg(long)]
        name: Option<String>,
    },
    /// Measure a two-host mesh against written targets (root); exits 1 when one is missed.
    Check {
        /// Targets file, e.g. configs/targets.toml.
        #[arg(long, default_value = "configs/targets.toml")]
        targets: PathBuf,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Short measurements (for CI).
        #[arg(long)]
        quick: bool,
        /// Also draw the latency CDF and the failover's throughput over
        /// time into this directory.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Offered rate of the UDP loss measurement, Mbit/s.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        offered_mbit: u64,
        /// Seconds of the long reliability run, each over raw and meshd
        /// (default 60; 3 with --quick).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
        long_run_secs: Option<u64>,
        /// Topology name, part of its namespaces' names (default: check and
        /// this process's id; the failover run adds `f`). At most 11 of a-z
        /// 0-9 -.
        #[arg(long)]
        name: Option<String>,
    },
    /// Route health at scale in the virtual-time simulator (real protocol
    /// endpoints): bring-up, steady gossip bytes per node, convergence after a
    /// link cut. Prints one JSON line per size.
    Scale {
        /// Mesh sizes to run (repeatable; each at most 10000).
        #[arg(long = "nodes", required = true, value_parser = clap::value_parser!(u64).range(4..=10_000))]
        nodes: Vec<u64>,
        /// Relaying nodes as a percentage of each size; the rest are stubs,
        /// each linked to two relays (default: every node relays).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
        relay_percent: Option<u64>,
        /// Average links per node.
        #[arg(long, default_value_t = 4)]
        degree: usize,
        /// Seed of topology, latencies and keys.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Runs with this many seeds from --seed on (each size), printing
        /// each run and then the spread: median [min–max] of each figure
        /// (--svg draws the first seed's).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=50))]
        seeds: u64,
        /// Virtual seconds of steady state over which gossip is counted
        /// (default: two advert refresh intervals; 0: skip the window and
        /// rely on the refresh-round figure).
        #[arg(long)]
        steady_secs: Option<u64>,
        /// Every link loses this percentage of its datagrams, each way.
        #[arg(long, default_value_t = 0.0)]
        loss_percent: f64,
        /// Every datagram is delayed by up to this many ms more than its
        /// link's latency (uniform).
        #[arg(long, default_value_t = 0.0)]
        jitter_ms: f64,
        /// Charge processing to each node's virtual clock (a signature
        /// check 150 µs, a handshake 370 µs, any other call 5 µs): a hub
        /// verifying thousands of adverts at bring-up saturates.
        #[arg(long)]
        cpu_model: bool,
        /// Also draw convergence and gossip against mesh size into this
        /// directory (scale-convergence.svg, scale-gossip.svg).
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Churn in the simulator: a share of the nodes crashes every minute
    /// and each starts again after a pause; random pairs of live nodes are
    /// checked every second for a path. Prints one JSON line per size.
    Churn {
        /// Mesh sizes to run (repeatable; each at most 10000).
        #[arg(long = "nodes", required = true, value_parser = clap::value_parser!(u64).range(8..=10_000))]
        nodes: Vec<u64>,
        /// Relaying nodes as a percentage of each size.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
        relay_percent: u64,
        /// Relays each stub links to.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=8))]
        stub_relays: u64,
        /// Nodes crashed per minute, percent of the mesh.
        #[arg(long, default_value_t = 5.0)]
        churn_percent: f64,
        /// Seconds a crashed node stays down before it starts again.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        down_secs: u64,
        /// Virtual minutes of churn.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
        minutes: u64,
        /// Seed of topology, latencies, keys and the churn.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Every link loses this percentage of its datagrams, each way.
        #[arg(long, default_value_t = 0.0)]
        loss_percent: f64,
        /// Every datagram is delayed by up to this much more (uniform).
        #[arg(long, default_value_t = 0.0)]
        jitter_ms: f64,
        /// Charge processing to each node's virtual clock (see `scale`).
        #[arg(long)]
        cpu_model: bool,
        /// Idle links are probed this often (`[health]
        /// idle-probe-interval-ms`).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
        idle_probe_ms: u64,
        /// Lost probes in a row that make a link down (`[health]
        /// down-after-misses`).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
        down_after_misses: u32,
        /// Fixed random pairs exchanging a packet every 100 ms each way:
        /// their delivery, and their paths' reachability, are reported
        /// apart (the links they cross are probed at the active rate).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
        flows: u64,
    },
    /// Mesh-wide quarantine by agreement in the simulator: a relaying
    /// member spoofs towards one neighbour (nobody else may follow), then
    /// two more; reports when the other nodes quarantined it on the three
    /// accusations, and their cost. Prints one JSON line per size.
    Quorum {
        /// Mesh sizes to run (repeatable; each at most 10000).
        #[arg(long = "nodes", required = true, value_parser = clap::value_parser!(u64).range(8..=10_000))]
        nodes: Vec<u64>,
        /// Relaying nodes as a percentage of each size (default: all).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
        relay_percent: Option<u64>,
        /// Average links per relay.
        #[arg(long, default_value_t = 4)]
        degree: usize,
        /// Seed of topology, latencies and keys.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Every link loses this percentage of its datagrams, each way.
        #[arg(long, default_value_t = 0.0)]
        loss_percent: f64,
    },
    /// What a hub with many peers costs to run: a star of leaves around one
    /// relay in the simulator, in steady state. Prints one JSON line per size.
    Hub {
        /// Leaf counts to run (repeatable; each at most 5000).
        #[arg(long = "leaves", required = true, value_parser = clap::value_parser!(u64).range(1..=5_000))]
        leaves: Vec<u64>,
        /// Leaves relay too (default: they are stubs).
        #[arg(long)]
        leaves_relay: bool,
        /// Virtual seconds measured.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
        secs: u64,
        /// Seed of latencies and keys.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Members joining a running mesh with two bootstrap addresses and
    /// nothing else, in the simulator: join time, whether the relays know
    /// them, first packets between joiners, traffic. Prints one JSON line
    /// per size (see docs/scale.md).
    Join {
        /// Mesh sizes to run (repeatable; each at most 10000).
        #[arg(long = "nodes", required = true, value_parser = clap::value_parser!(u64).range(10..=10_000))]
        nodes: Vec<u64>,
        /// Relays (the running mesh) as a percentage of each size; the
        /// rest join as stubs.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=50))]
        relay_percent: u64,
        /// Average links per relay in the backbone.
        #[arg(long, default_value_t = 4)]
        degree: usize,
        /// Virtual seconds over which the joins are spread evenly.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
        window_secs: u64,
        /// Nodes that join (default: every node but the relays); the rest
        /// are stubs configured with two relays, the running mesh.
        #[arg(long)]
        joiners: Option<usize>,
        /// Seed of topology, latencies, bootstrap choices and keys.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Draw the scale charts from the JSON lines of earlier `scale` runs.
    ScalePlot {
        /// Files of `scale` output (one JSON report per line; repeatable).
        #[arg(long = "json", required = true)]
        json: Vec<PathBuf>,
        /// Directory for scale-convergence.svg and scale-gossip.svg (or,
        /// when every run had loss, scale-impaired-agreement.svg and
        /// scale-impaired-budget.svg).
        #[arg(long)]
        svg: PathBuf,
    },
    /// Bring a topology up: namespaces, links, certificates, meshd on every host.
    Up {
        /// Topology file, e.g. configs/topologies/pair.toml.
        topology: PathBuf,
        /// Bring it up under this name instead of the file's (two copies
        /// of one topology side by side).
        #[arg(long)]
        name: Option<String>,
    },
    /// Run a command inside a host of a running topology.
    Exec {
        /// Topology name (default: the only one that is up).
        #[arg(long)]
        topology: Option<String>,
        /// Host name.
        host: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Tear a topology down: exactly its own namespaces, links, processes
    /// and state (default: the only topology that is up).
    Down {
        /// Topology name.
        topology: Option<String>,
    },
    /// Two in-process nodes on loopback UDP: CA, certificates, hybrid
    /// post-quantum handshake, encrypted packets, attack rejection.
    HandshakeDemo {
        /// Packets to exchange each way after the handshake (bounded: at most 100000).
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        packets: u32,
    },
    /// Receive one TCP connection to its end; print its length and BLAKE2s.
    TcpSink {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Give up after this many seconds without data.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
        /// Write bytes received per 50 ms here (`unix_ms bytes` lines).
        #[arg(long)]
        series: Option<PathBuf>,
        /// Count bytes only (no hash): for throughput measurements.
        #[arg(long)]
        plain: bool,
    },
    /// Floods a meshd UDP port (or, as the control, a closed port) with one
    /// of the attack campaign's floods, paced and bounded; prints what it
    /// sent.
    Flood {
        /// What to send: initiations, replay, junk-index, junk.
        #[arg(long)]
        kind: String,
        /// The target's underlay address.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// The target's certificate.
        #[arg(long)]
        cert: PathBuf,
        /// Spoof this IPv4 source address (a raw socket: root).
        #[arg(long)]
        from: Option<std::net::SocketAddrV4>,
        /// With --from: cycle through this many consecutive source
        /// addresses from it.
        #[arg(long, default_value_t = 1, requires = "from", value_parser = clap::value_parser!(u32).range(1..=65_536))]
        spread: u32,
        /// Datagrams per second (at most 200000).
        #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
        rate: u32,
        /// Seconds (at most 120).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
        secs: u64,
        /// Alternate with this target (a closed port: the control), a
        /// phase of --phase-ms each, control first; prints each phase's
        /// start.
        #[arg(long)]
        control_to: Option<std::net::SocketAddr>,
        /// Length of each phase with --control-to.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
        phase_ms: u64,
        /// `junk-index`: the receiver index of a session the target has.
        #[arg(long)]
        index: Option<u32>,
        /// `replay`: the certificate and key of the identity whose
        /// initiation is replayed.
        #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
        identity: Vec<String>,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// TCP SYNs through the overlay, each from a fresh source port, from
    /// this host's overlay address (a raw socket: root): the allowed-flow
    /// flood that would fill a node's connection tracking.
    SynFlood {
        /// This host's overlay address.
        #[arg(long)]
        from: std::net::Ipv4Addr,
        /// The target's overlay address and port.
        #[arg(long)]
        to: std::net::SocketAddrV4,
        /// SYNs (at most 1000000).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        count: u64,
        /// SYNs per second (at most 100000).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rate: u32,
    },
    /// New nodes (signed with the CA key in DIR) each handshake once with a
    /// running meshd; prints the handshakes completed per second.
    HandshakeLoad {
        /// Directory with ca.crt and ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// The target node's certificate.
        #[arg(long)]
        cert: PathBuf,
        /// Its underlay address.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Handshakes (at most 10000).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        count: u64,
        /// At most this many in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Confirm each session (send the keepalive after message 2), so the
        /// target keeps that many peers that then vanish.
        #[arg(long)]
        confirm: bool,
        /// Source address for the nodes' sockets, used in turn (repeatable;
        /// each must be on this host). Under load meshd holds each source
        /// address to 20 initiation fragments a second (a handshake answered
        /// with a cookie costs 3), so a higher rate needs many.
        #[arg(long = "source")]
        sources: Vec<std::net::IpAddr>,
    },
    /// Answer TCP connections and echo UDP datagrams on the given ports
    /// (the far end of `probe`) for a bounded time.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        addr: std::net::IpAddr,
        /// Ports (repeatable).
        #[arg(long = "port", required = true)]
        ports: Vec<u16>,
        /// Seconds to serve (at most 600).
        #[arg(long, default_value_t = 30)]
        secs: u64,
    },
    /// One TCP connection or UDP round trip to a `serve`; exit 0 if it
    /// answered, 1 if not.
    Probe {
        /// Where to.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// UDP instead of TCP.
        #[arg(long)]
        udp: bool,
        /// Milliseconds to wait.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Echo UDP datagrams (the far end of `udp-ping`) until idle.
    UdpEcho {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Exit after this many seconds without a datagram.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
    },
    /// Closed-loop UDP ping-pong; prints round-trip percentiles in microseconds.
    UdpPing {
        /// The `udp-echo` address.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Round trips (at most 1000000).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        count: u64,
        /// Datagram size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Also write the round-trip CDF here ("microseconds fraction" lines).
        #[arg(long)]
        cdf: Option<PathBuf>,
        /// Stop after this many seconds even if fewer round trips were made
        /// (measuring beside a transfer of a known length).
        #[arg(long)]
        secs: Option<f64>,
    },
    /// Send a seeded pseudorandom byte stream over TCP; print its length and BLAKE2s.
    TcpSource {
        /// Address to connect to.
        #[arg(long)]
        connect: std::net::SocketAddr,
        /// Bytes to send (at most 1 TB; with `--secs`, the bound is the time).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000_000))]
        bytes: u64,
        /// Stream seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give up after this many seconds without progress.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
        /// Pace the stream to this many Mbit/s (default: as fast as TCP goes).
        #[arg(long)]
        rate_mbit: Option<u64>,
        /// Send one buffer again and again, hashing nothing: for
        /// throughput measurements.
        #[arg(long)]
        plain: bool,
        /// Stop after this many seconds (at most 600) even if bytes are left.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600))]
        secs: Option<u64>,
    },
    /// Send a sequence-numbered UDP datagram at a fixed interval (the source
    /// of `udp-gaps`).
    UdpPace {
        /// Receiver address.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Microseconds between datagrams (at least 100).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
        interval_us: u64,
        /// Seconds to send for (at most 600).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600))]
        secs: u64,
    },
    /// Receive a `udp-pace` stream; print received, lost, and the longest
    /// silence between arrivals (the outage during a failover).
    UdpGaps {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Seconds to receive for after the first datagram (at most 600).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600))]
        secs: u64,
        /// Stop after this many seconds without a datagram.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
    },
}

fn scale(
    nodes: &[u64],
    relay_percent: Option<u64>,
    degree: usize,
    (first_seed, seeds): (u64, u64),
    steady_secs: Option<u64>,
    impair: harness::scale::Impairment,
    svg: Option<&std::path::Path>,
) -> Result<(), String> {
    let mut reports = Vec::new();
    for &n in nodes {
        let mut runs = Vec::new();
        for seed in first_seed..first_seed + seeds {
            let r = harness::scale::run(
                n as usize,
                degree,
                seed,
                steady_secs.map(Duration::from_secs),
                relay_percent.map(|p| (n * p / 100) as usize),
                impair,
            )
            .map_err(|e| format!("scale {n}, seed {seed}: {e}"))?;
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
            runs.push(r);
        }
        if seeds > 1 {
            // Comment lines: scale-plot reads only the JSON ones.
            println!(
                "# {n} nodes, seeds {first_seed}..={}:",
                first_seed + seeds - 1
            );
            for line in harness::scale::spread(&runs) {
                println!("#   {line}");
            }
        }
        // The charts draw one line per shape: the first seed's runs.
        reports.extend(runs.into_iter().next());
    }
    let Some(dir) = svg else { return Ok(()) };
    draw_scale(&reports, dir)
}

fn scale_plot(files: &[PathBuf], dir: &std::path::Path) -> Result<(), String> {
    let mut reports = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (n, line) in text.lines().enumerate().filter(|(_, l)| l.starts_with('{')) {
            let r = serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: not a scale report: {e}", f.display(), n + 1))?;
            reports.push(r);
        }
    }
    if reports.is_empty() {
        return Err("no scale reports in the files given".into());
    }
    draw_scale(&reports, dir)
}

/// Writes the scale charts for `reports` into `dir`.
fn draw_scale(
    reports: &[harness::scale::ScaleReport],
    dir: &std::path::Path,
) -> Result<(), String> {
    for (file, chart) in harness::scale::charts(reports) {
        let path = dir.join(file);
        std::fs::write(&path, chart.render()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn cmd_up(path: &std::path::Path, name: Option<String>) -> Result<(), String> {
    let mut topo = harness::topology::Topology::load(path)?;
    if let Some(n) = name {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        topo = harness::topology::Topology::parse(&text.replacen(
            &format!("name = \"{}\"", topo.name),
            &format!("name = \"{n}\""),
            1,
        ))
        .map_err(|e| format!("--name: {e}"))?;
    }
    let meshd = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("meshd")))
        .filter(|p| p.exists())
        .ok_or(
            "meshd not found next to mesh-harness; build it: cargo build --release --workspace",
        )?;
    println!(
        "bringing up '{}' ({} hosts, {} links)",
        topo.name,
        topo.hosts.len(),
        topo.links.len()
    );
    harness::netns::up(&topo, &meshd, &mut |line| println!("  {line}"))?;
    println!(
        "up. try: mesh-harness exec {} -- ping -c 3 100.64.0.2",
        topo.hosts[0].name
    );
    println!(
        "     mesh-harness exec {} -- meshctl peers",
        topo.hosts[0].name
    );
    println!("     mesh-harness down {}", topo.name);
    Ok(())
}

/// Topologies with state on this machine.
fn up_topologies() -> Vec<String> {
    std::fs::read_dir("/tmp/mesh-harness")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn running_topology(given: Option<String>) -> Result<String, String> {
    if let Some(t) = given {
        return Ok(t);
    }
    match up_topologies().as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(
            "no topology is up; start one with: mesh-harness up configs/topologies/pair.toml"
                .into(),
        ),
        many => Err(format!(
            "several topologies are up ({}); pick one with --topology",
            many.join(", ")
        )),
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Up { topology, name } => cmd_up(&topology, name),
        Command::Check {
            targets,
            json,
            quick,
            svg,
            offered_mbit,
            long_run_secs,
            name,
        } => {
            check::set_name(name);
            match check::run(
                &targets,
                json,
                check::Options {
                    quick,
                    offered_mbit,
                    long_run_secs,
                },
                svg,
            ) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    eprintln!("mesh-harness: check: some targets were missed (see the table)");
                    return ExitCode::from(1);
                }
                Err(e) => Err(format!("check: {e}")),
            }
        }
        Command::Scale {
            nodes,
            relay_percent,
            degree,
            seed,
            seeds,
            steady_secs,
            loss_percent,
            jitter_ms,
            cpu_model,
            svg,
        } => {
            let impair = harness::scale::Impairment {
                loss: loss_percent / 100.0,
                jitter: Duration::from_secs_f64(jitter_ms.clamp(0.0, 1000.0) / 1e3),
                cpu: cpu_model,
            };
            if !(0.0..=50.0).contains(&loss_percent) || !(0.0..=1000.0).contains(&jitter_ms) {
                Err("scale: --loss-percent takes 0 to 50, --jitter-ms 0 to 1000".into())
            } else {
                scale(
                    &nodes,
                    relay_percent,
                    degree,
                    (seed, seeds),
                    steady_secs,
                    impair,
                    svg.as_deref(),
                )
            }
        }
        Command::ScalePlot { json, svg } => scale_plot(&json, &svg),
        Command::Join {
            nodes,
            relay_percent,
            degree,
            window_secs,
            joiners,
            seed,
        } => nodes.iter().try_for_each(|&n| {
            let window = Duration::from_secs(window_secs);
            let pct = relay_percent as usize;
            let r = harness::join::run(n as usize, pct, degree, window, joiners, seed)
                .map_err(|e| format!("join {n}: {e}"))?;
            println!(
                "{}",
                serde_json::to_string(&r).map_err(|e| format!("join: {e}"))?
            );
            Ok(())
        }),
        Command::Churn {
            nodes,
            relay_percent,
            stub_relays,
            churn_percent,
            down_secs,
            minutes,
            seed,
            loss_percent,
            jitter_ms,
            cpu_model,
            idle_probe_ms,
            down_after_misses,
            flows,
        } => nodes.iter().try_for_each(|&n| {
            if !(0.0..=50.0).contains(&loss_percent)
                || !(0.1..=50.0).contains(&churn_percent)
                || !(0.0..=1000.0).contains(&jitter_ms)
            {
                return Err("churn: --loss-percent takes 0 to 50, --churn-percent 0.1 to 50, --jitter-ms 0 to 1000".into());
            }
            let n = n as usize;
            let relays = (n * relay_percent as usize / 100).max(3);
            let impair = harness::scale::Impairment {
                loss: loss_percent / 100.0,
                jitter: Duration::from_secs_f64(jitter_ms / 1e3),
                cpu: cpu_model,
            };
            let spec = harness::churn::Churn {
                relays,
                stub_relays: stub_relays as usize,
                churn_percent,
                down: Duration::from_secs(down_secs),
                impair,
                health: proto::health::HealthConfig {
                    idle_probe_interval: Duration::from_millis(idle_probe_ms),
                    down_after_misses,
                    ..proto::health::HealthConfig::default()
                },
                flows: flows as usize,
                ..harness::churn::Churn::new(n, minutes, seed)
            };
            let r = harness::churn::run(&spec).map_err(|e| format!("churn {n}: {e}"))?;
            println!(
                "{}",
                serde_json::to_string(&r).map_err(|e| format!("churn: {e}"))?
            );
            Ok(())
        }),
        Command::Quorum {
            nodes,
            relay_percent,
            degree,
            seed,
            loss_percent,
        } => nodes.iter().try_for_each(|&n| {
            if !(0.0..=50.0).contains(&loss_percent) {
                return Err("quorum: --loss-percent takes 0 to 50".into());
            }
            let n = n as usize;
            let relays = relay_percent.map_or(n, |p| n * p as usize / 100);
            let impair = harness::scale::Impairment {
                loss: loss_percent / 100.0,
                jitter: Duration::ZERO,
                cpu: false,
            };
            let r = harness::quorum::run(n, relays, degree, seed, impair)
                .map_err(|e| format!("quorum {n}: {e}"))?;
            println!(
                "{}",
                serde_json::to_string(&r).map_err(|e| format!("quorum: {e}"))?
            );
            Ok(())
        }),
        Command::Hub {
            leaves,
            leaves_relay,
            secs,
            seed,
        } => leaves.iter().try_for_each(|&n| {
            let r = harness::scale::hub(n as usize, leaves_relay, secs, seed)
                .map_err(|e| format!("hub with {n} leaves: {e}"))?;
            println!(
                "{}",
                serde_json::to_string(&r).map_err(|e| format!("hub: {e}"))?
            );
            Ok(())
        }),
        Command::Demo { bytes, name } => {
            mesh_demo::set_name(name);
            mesh_demo::run(bytes).map_err(|e| format!("demo failed: {e}"))
        }
        Command::Exec {
            topology,
            host,
            cmd,
        } => {
            return match running_topology(topology)
                .and_then(|t| harness::netns::exec(&t, &host, &cmd))
            {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => {
                    eprintln!("mesh-harness: exec: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Down { topology } => running_topology(topology).map(|t| {
            let removed = harness::netns::down(&t);
            println!("{t}: removed {} item(s)", removed.len());
        }),
        Command::HandshakeDemo { packets } => {
            demo::run(packets).map_err(|e| format!("demo failed: {e}"))
        }
        Command::TcpSink {
            listen,
            timeout_secs,
            series,
            plain,
        } => tcp::sink(
            listen,
            Duration::from_secs(timeout_secs),
            series.as_deref(),
            plain,
        )
        .map(|r| println!("{r}"))
        .map_err(|e| format!("tcp-sink: {e}")),
        Command::Serve { addr, ports, secs } => reach::serve(addr, &ports, secs),
        Command::HandshakeLoad {
            dir,
            cert,
            to,
            count,
            concurrency,
            confirm,
            sources,
        } => hsload::run(
            &dir,
            &cert,
            to,
            &hsload::Shape {
                count: count as usize,
                concurrency: concurrency.clamp(1, 1024),
                confirm,
                sources: &sources,
            },
        )
        .map(|l| {
            let ms = |q| l.latency(q).as_secs_f64() * 1e3;
            println!(
                "handshakes={} secs={:.3} rate={:.1} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
                l.completed,
                l.elapsed.as_secs_f64(),
                l.completed as f64 / l.elapsed.as_secs_f64().max(1e-9),
                ms(0.5),
                ms(0.99),
                ms(1.0)
            )
        }),
        Command::Probe {
            to,
            udp,
            timeout_ms,
        } => match reach::probe(udp, to, Duration::from_millis(timeout_ms)) {
            Ok(true) => {
                println!("answered");
                Ok(())
            }
            Ok(false) => {
                println!("no answer");
                return ExitCode::FAILURE;
            }
            Err(e) => Err(format!("probe: {e}")),
        },
        Command::UdpEcho { listen, idle_secs } => {
            pingpong::server(listen, Duration::from_secs(idle_secs))
                .map(|n| println!("echoed={n}"))
                .map_err(|e| format!("udp-echo: {e}"))
        }
        Command::UdpPing {
            to,
            count,
            size,
            cdf,
            secs,
        } => pingpong::client(
            to,
            count as usize,
            size,
            Duration::from_secs(1),
            secs.map(Duration::from_secs_f64),
        )
        .map_err(|e| format!("udp-ping: {e}"))
        .and_then(|s| {
            println!(
                "count={} lost={} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1}",
                s.count, s.lost, s.p50, s.p99, s.p999, s.max
            );
            match cdf {
                Some(path) => {
                    let text: String = s
                        .cdf
                        .iter()
                        .map(|(x, f)| format!("{x:.3} {f:.6}\n"))
                        .collect();
                    std::fs::write(&path, text)
                        .map_err(|e| format!("udp-ping: {}: {e}", path.display()))
                }
                None => Ok(()),
            }
        }),
        Command::SynFlood {
            from,
            to,
            count,
            rate,
        } => flood::syn_flood(from, to, count, rate).map(|n| println!("sent={n}")),
        Command::Flood {
            kind,
            to,
            cert,
            from,
            spread,
            rate,
            secs,
            control_to,
            phase_ms,
            index,
            identity,
            seed,
        } => flood_kind(&kind, index, identity).and_then(|kind| {
            flood::run(&flood::Flood {
                kind,
                to,
                target_cert: &cert,
                from,
                spread,
                rate,
                duration: Duration::from_secs(secs),
                seed,
                control: control_to.map(|c| (c, Duration::from_millis(phase_ms))),
            })
            .map(|s| println!("sent={} secs={:.3}", s.datagrams, s.elapsed.as_secs_f64()))
            .map_err(|e| format!("flood: {e}"))
        }),
        Command::TcpSource {
            connect,
            bytes,
            seed,
            timeout_secs,
            rate_mbit,
            plain,
            secs,
        } => tcp::source(&tcp::Source {
            connect,
            bytes,
            seed,
            timeout: Duration::from_secs(timeout_secs),
            rate_mbit,
            plain,
            for_at_most: secs.map(Duration::from_secs),
        })
        .map(|r| println!("{r}"))
        .map_err(|e| format!("tcp-source: {e}")),
        Command::UdpPace {
            to,
            interval_us,
            secs,
        } => stream::pace(
            to,
            Duration::from_micros(interval_us),
            Duration::from_secs(secs),
        )
        .map(|n| println!("sent={n}"))
        .map_err(|e| format!("udp-pace: {e}")),
        Command::UdpGaps {
            listen,
            secs,
            idle_secs,
        } => stream::gaps(
            listen,
            Duration::from_secs(secs),
            Duration::from_secs(idle_secs),
        )
        .map(|g| {
            println!(
                "received={} lost={} max_gap_ms={:.1} max_gap_end_ms={:.0}",
                g.received,
                g.lost,
                g.max_gap.as_secs_f64() * 1e3,
                g.max_gap_end.as_secs_f64() * 1e3
            )
        })
        .map_err(|e| format!("udp-gaps: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-harness: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `flood --kind` and the options that kind needs.
fn flood_kind(
    kind: &str,
    index: Option<u32>,
    identity: Vec<String>,
) -> Result<flood::Kind, String> {
    match (kind, index, identity.as_slice()) {
        ("initiations", None, []) => Ok(flood::Kind::Initiations),
        ("junk", None, []) => Ok(flood::Kind::Junk),
        ("junk-index", Some(i), []) => Ok(flood::Kind::JunkIndex(i)),
        ("replay", None, [cert, key]) => Ok(flood::Kind::Replay {
            cert: cert.clone(),
            key: key.clone(),
        }),
        ("junk-index", None, _) => Err("flood: --kind junk-index needs --index".into()),
        ("replay", _, []) => Err("flood: --kind replay needs --identity CERT KEY".into()),
        ("initiations" | "junk" | "junk-index" | "replay", _, _) => Err(format!(
            "flood: --index goes with junk-index and --identity with replay, not with {kind}"
        )),
        _ => Err(format!(
            "flood: --kind {kind} is unknown; use initiations, replay, junk-index or junk"
        )),
    }
}
