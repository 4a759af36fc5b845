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
mod sims;
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
    #[command(flatten)]
    Sim(sims::SimCommand),
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
        Command::Sim(c) => sims::run(c),
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
