//! `meshctl`: the admin CLI of meshd.
//!
//! Offline, it is the mesh's PKI (`pki`: CA, certificates, keys) and policy
//! tool (`policy`: check, test, sign, revoke); online, a client of a running
//! meshd's admin socket (`client`: status, peers, routes, ping, trace,
//! policy push). Every command that shows something has `--json`, printing
//! a `types` struct; the text form comes from `render`. Private keys are
//! written with mode 0600 and never printed. Errors name the file and the
//! fix.

/// `println!` to stdout that ends meshctl quietly when the reader has gone
/// (`meshctl peers | head`) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            $crate::stdout_failed(e)
        }
    }};
}

/// `print!` as [`outln!`] does it.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($t)*) {
            $crate::stdout_failed(e)
        }
    }};
}

mod cli;
mod client;
mod doctor;
mod inventory;
mod pki;
mod policy;
mod render;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;

use cli::{CaCommand, CertCommand, Cli, Command, KeyCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshctl: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `meshctl generate DIR`: a man page per command (`man/meshctl.1`,
/// `man/meshctl-cert-issue.1`, …) and completions for bash, zsh and fish.
fn generate(dir: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man).map_err(|e| format!("{}: {e}", man.display()))?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "meshctl", &completions)
            .map_err(|e| format!("{}: {e}", completions.display()))?;
    }
    outln!("wrote {} and {}", man.display(), completions.display());
    Ok(())
}

/// Stdout failed: a reader that went away (a pipe closed early) ends
/// meshctl successfully, as it ends `head`'s writer; anything else is an
/// error.
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("meshctl: error: cannot write the output: {e}");
    std::process::exit(1);
}

/// Any error, shown to the operator as `meshctl: error: …`.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The wall clock, Unix seconds.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ca(CaCommand::Init(a)) => pki::ca_init(a),
        Command::Cert(CertCommand::Issue(a)) => pki::cert_issue(a),
        Command::Cert(CertCommand::Show(a)) => pki::cert_show(a),
        Command::Cert(CertCommand::Renew(a)) => pki::cert_renew(a),
        Command::Cert(CertCommand::IssuePolicyKey(a)) => pki::issue_policy_key(a),
        Command::Key(KeyCommand::Generate { out, public_out }) => {
            pki::key_generate(&out, &public_out)
        }
        Command::Status(a) => client::status(&a),
        Command::Peers(a) => client::peers(&a),
        Command::Ping(a) => client::ping(&a),
        Command::Routes(a) => client::routes(&a),
        Command::Reload(a) => client::reload(&a),
        Command::Rekey(a) => client::rekey(&a),
        Command::Revoked(a) => client::revoked(&a),
        Command::Alerts(a) => client::alerts(&a),
        Command::Doctor(a) => match doctor::doctor(&a) {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(e) => Err(e),
        },
        Command::Quarantine(a) => client::quarantine(&a),
        Command::Trace(a) => client::trace(&a),
        Command::Policy(p) => policy::run(p),
        Command::Revoke(a) => policy::revoke(a),
        Command::Generate { dir } => generate(&dir),
    }
}
