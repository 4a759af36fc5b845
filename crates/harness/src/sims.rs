//! The simulator's subcommands (`scale`, `scale-plot`, `join`, `churn`,
//! `quorum`, `hub`): their arguments, and each run's JSON lines on stdout.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

/// How every simulated link is impaired, and whether processing costs time
/// (`scale` and `churn`).
#[derive(clap::Args)]
pub struct ImpairArgs {
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
}

impl ImpairArgs {
    /// The impairment, or which flag is out of range for `cmd`.
    fn impairment(&self, cmd: &str) -> Result<harness::scale::Impairment, String> {
        if !(0.0..=50.0).contains(&self.loss_percent) || !(0.0..=1000.0).contains(&self.jitter_ms) {
            return Err(format!(
                "{cmd}: --loss-percent takes 0 to 50, --jitter-ms 0 to 1000"
            ));
        }
        Ok(harness::scale::Impairment {
            loss: self.loss_percent / 100.0,
            jitter: Duration::from_secs_f64(self.jitter_ms / 1e3),
            cpu: self.cpu_model,
        })
    }
}

#[derive(Subcommand)]
pub enum SimCommand {
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
        #[command(flatten)]
        impair: ImpairArgs,
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
        #[command(flatten)]
        impair: ImpairArgs,
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
}

/// Runs one simulator subcommand.
pub fn run(cmd: SimCommand) -> Result<(), String> {
    match cmd {
        SimCommand::Scale {
            nodes,
            relay_percent,
            degree,
            seed,
            seeds,
            steady_secs,
            impair,
            svg,
        } => scale(
            &nodes,
            relay_percent,
            degree,
            (seed, seeds),
            steady_secs,
            impair.impairment("scale")?,
            svg.as_deref(),
        ),
        SimCommand::ScalePlot { json, svg } => scale_plot(&json, &svg),
        SimCommand::Join {
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
        SimCommand::Churn {
            nodes,
            relay_percent,
            stub_relays,
            churn_percent,
            down_secs,
            minutes,
            seed,
            impair,
            idle_probe_ms,
            down_after_misses,
            flows,
        } => nodes.iter().try_for_each(|&n| {
            let impair = impair.impairment("churn")?;
            if !(0.1..=50.0).contains(&churn_percent) {
                return Err("churn: --churn-percent takes 0.1 to 50".into());
            }
            let n = n as usize;
            let relays = (n * relay_percent as usize / 100).max(3);
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
        SimCommand::Quorum {
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
        SimCommand::Hub {
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
    }
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
