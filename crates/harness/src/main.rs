//! `mesh-harness`: meshd's demo and (later) topology and load harness.
//!
//! `mesh-harness handshake-demo` runs two meshd protocol endpoints in one
//! process over real UDP sockets on 127.0.0.1: a fresh CA issues both
//! certificates, the nodes perform the hybrid Noise IK + ML-KEM-768
//! handshake, and exchange encrypted packets, printing each step.

mod demo;

use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::HandshakeDemo { packets } => match demo::run(packets) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mesh-harness: demo failed: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
