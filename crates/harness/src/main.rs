//! `mesh-harness`: meshd's demo and (later) topology and load harness.
//!
//! `mesh-harness handshake-demo` runs two meshd protocol endpoints in one
//! process over real UDP sockets on 127.0.0.1: a fresh CA issues both
//! certificates, the nodes perform the hybrid Noise IK + ML-KEM-768
//! handshake, and exchange encrypted packets, printing each step.

mod demo;
mod pingpong;
mod tcp;

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
    },
    /// Send malformed datagrams (random bytes, truncated headers, fake
    /// transport packets, fragments with bad MACs) to a meshd UDP port.
    UdpJunk {
        /// meshd's underlay address.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// How many datagrams (at most 1000000).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        count: u64,
        /// Seed of the junk generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
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
    },
    /// Send a seeded pseudorandom byte stream over TCP; print its length and BLAKE2s.
    TcpSource {
        /// Address to connect to.
        #[arg(long)]
        connect: std::net::SocketAddr,
        /// Bytes to send (at most 10 GB).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000_000))]
        bytes: u64,
        /// Stream seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give up after this many seconds without progress.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::HandshakeDemo { packets } => {
            demo::run(packets).map_err(|e| format!("demo failed: {e}"))
        }
        Command::TcpSink {
            listen,
            timeout_secs,
        } => tcp::sink(listen, Duration::from_secs(timeout_secs))
            .map(|r| println!("{r}"))
            .map_err(|e| format!("tcp-sink: {e}")),
        Command::UdpEcho { listen, idle_secs } => {
            pingpong::server(listen, Duration::from_secs(idle_secs))
                .map(|n| println!("echoed={n}"))
                .map_err(|e| format!("udp-echo: {e}"))
        }
        Command::UdpPing { to, count, size } => {
            pingpong::client(to, count as usize, size, Duration::from_secs(1))
                .map(|s| {
                    println!(
                        "count={} lost={} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1}",
                        s.count, s.lost, s.p50, s.p99, s.p999, s.max
                    )
                })
                .map_err(|e| format!("udp-ping: {e}"))
        }
        Command::UdpJunk { to, count, seed } => tcp::udp_junk(to, count, seed)
            .map(|n| println!("sent={n}"))
            .map_err(|e| format!("udp-junk: {e}")),
        Command::TcpSource {
            connect,
            bytes,
            seed,
            timeout_secs,
        } => tcp::source(connect, bytes, seed, Duration::from_secs(timeout_secs))
            .map(|r| println!("{r}"))
            .map_err(|e| format!("tcp-source: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-harness: {e}");
            ExitCode::FAILURE
        }
    }
}
