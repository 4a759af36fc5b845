//! `meshd`: the mesh agent.
//!
//! A thin driver around `proto::endpoint::Endpoint`: it owns the TUN device,
//! the UDP socket, the clock, the admin socket and the metrics endpoint, and
//! feeds packets and time into the sans-IO core.
//!
//! | module | job |
//! |---|---|
//! | `startup` | files, the endpoint from the config, TUN queues, sockets |
//! | `node` | the shared node state and the main thread: timers, admin, signals |
//! | `worker` | the packet workers: TUN and UDP batches through the endpoint |
//! | `events` | the endpoint's events: logs, learned routes, saved bundles |
//! | `views` | admin answers from the endpoint's state (pure, unit-tested) |
//! | `admin`, `metrics` | the admin socket and the Prometheus endpoint |
//! | `io`, `ping` | batched UDP (GSO/GRO); `meshctl ping` bookkeeping |
//! | `reload` | SIGHUP / `meshctl reload`: the file checked, what can change applied |

mod admin;
mod dns;
mod dropwatch;
mod events;
mod fq;
mod io;
mod metrics;
mod node;
mod ping;
mod reload;
mod startup;
mod views;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use types::config::{LogFormat, NodeConfig};

/// The version with the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("MESHD_COMMIT"), ")");

#[derive(Parser)]
#[command(
    name = "meshd",
    version = VERSION,
    about = "meshd: post-quantum secure mesh agent"
)]
struct Cli {
    /// Node configuration file.
    #[arg(long, short, required_unless_present = "man_page")]
    config: Option<PathBuf>,
    /// Print meshd's man page (roff) and exit (for packaging).
    #[arg(long, hide = true)]
    man_page: bool,
    /// Check the configuration and the files it names, then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.man_page {
        use clap::CommandFactory;
        let mut out = std::io::stdout();
        return match clap_mangen::Man::new(Cli::command()).render(&mut out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("meshd: cannot write the man page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(config) = cli.config else {
        eprintln!("meshd: --config FILE is required");
        return ExitCode::from(2);
    };
    let cfg = match NodeConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meshd: {e}");
            return ExitCode::from(2);
        }
    };
    let loaded = match startup::load(&cfg) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("meshd: {}: {e}", config.display());
            return ExitCode::from(2);
        }
    };
    for s in &loaded.skipped {
        eprintln!("meshd: warning: {}: {s}", config.display());
    }
    if cli.check {
        println!(
            "{}: configuration valid: node '{}', {} static peer(s)",
            config.display(),
            loaded.identity.certificate().name(),
            loaded.peers.len()
        );
        return ExitCode::SUCCESS;
    }
    let set_level = init_logging(&cfg);
    // The timer/admin task; packet workers run on their own threads.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(node::run(cfg, loaded, config.clone(), set_level)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("meshd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts logging; the returned function sets the level on reload (it
/// refuses while `MESHD_LOG` decides the filter).
fn init_logging(cfg: &NodeConfig) -> reload::SetLevel {
    use tracing_subscriber::EnvFilter;
    let from_env = EnvFilter::try_from_env("MESHD_LOG").ok();
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(cfg.log.level.to_ascii_lowercase()));
    // Colours only on a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    macro_rules! settable {
        ($b:expr) => {{
            let b = $b.with_filter_reloading();
            let handle = b.reload_handle();
            b.init();
            Box::new(move |level: &str| {
                if pinned {
                    return Err("MESHD_LOG is set and decides the log filter".into());
                }
                handle
                    .reload(EnvFilter::new(level.to_ascii_lowercase()))
                    .map_err(|e| format!("cannot set the log level: {e}"))
            })
        }};
    }
    match cfg.log.format {
        LogFormat::Json => settable!(builder.json()),
        LogFormat::Text => settable!(builder),
    }
}
