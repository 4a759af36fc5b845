//! `meshctl`: offline CA, certificate and key tooling for meshd.
//!
//! Every command that shows something has `--json`. Private keys are written
//! with mode 0600 and never printed. Errors name the file and the fix.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use crypto::files;
use crypto::RealCrypto;
use proto::armor::{LABEL_CA_KEY, LABEL_NODE_KEY, LABEL_NODE_PUBLIC_KEY};
use proto::bundle::{Bundle, BundleKind};
use proto::cert::{self, hex, CertKind, Certificate, NodeCertParams, OverlayAddr, TrustedCa};
use proto::provider::Crypto;
use rand_core::RngCore;
use types::admin::{AdminRequest, AdminResponse};
use types::{CertificateView, IssuedFiles};

#[derive(Parser)]
#[command(
    name = "meshctl",
    version,
    about = "Administer a meshd mesh: CA, certificates, keys"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The mesh certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Node certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Node static keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// This node's state (asks the running meshd).
    Status(AdminArgs),
    /// This node's peers: sessions, traffic, handshake age (asks the running meshd).
    Peers(AdminArgs),
    /// Ping a peer through the overlay (ICMP echo sent and timed by meshd).
    Ping(PingArgs),
    /// The route table: destination, next hop, metric, age (asks the running meshd).
    Routes(AdminArgs),
    /// The path to a peer hop by hop with each link's RTT, and a measured
    /// round trip along it.
    Trace(TraceArgs),
    /// Segment policy: check and test offline, sign, push to the mesh.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Revoke node certificates mesh-wide: signs a new revocation list (the
    /// one in force plus these) and pushes it; sessions with the revoked
    /// nodes are torn down and refused everywhere as it spreads.
    Revoke(RevokeArgs),
}

/// The CA's certificate and key, for commands that sign.
#[derive(Args)]
struct CaFiles {
    /// CA certificate.
    #[arg(long, default_value = "ca.crt")]
    ca_crt: PathBuf,
    /// CA private key.
    #[arg(long, default_value = "ca.key")]
    ca_key: PathBuf,
}

impl CaFiles {
    /// The CA and its key, checked to belong together.
    fn load(&self) -> Result<(TrustedCa, [u8; 32])> {
        let ca = load_ca(&self.ca_crt)?;
        let seed = files::read_private_key(&self.ca_key, LABEL_CA_KEY)?;
        if RealCrypto.ed25519_public_key(&seed) != *ca.certificate().public_key() {
            return Err(format!(
                "{}: this key does not belong to the CA certificate {}",
                self.ca_key.display(),
                self.ca_crt.display()
            )
            .into());
        }
        Ok((ca, seed))
    }
}

#[derive(Args)]
struct SignArgs {
    #[command(flatten)]
    ca: CaFiles,
    /// Bundle version; must exceed the one in force (default: the Unix time).
    #[arg(long)]
    version: Option<u64>,
    /// Sign with a policy key the CA named (meshctl cert issue-policy-key)
    /// instead of the CA key: its certificate...
    #[arg(long, requires = "signer_key")]
    signer_crt: Option<PathBuf>,
    /// ...and its private key.
    #[arg(long, requires = "signer_crt")]
    signer_key: Option<PathBuf>,
    /// Also write the signed bundle to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct RevokeArgs {
    /// Certificates to revoke (repeatable).
    #[arg(long = "cert", required = true)]
    certs: Vec<PathBuf>,
    #[command(flatten)]
    sign: SignArgs,
    /// Only write --out; do not push (the list then starts from nothing
    /// unless --base names the current one).
    #[arg(long)]
    offline: bool,
    /// A revocation list file to extend (default: ask meshd for the one in force).
    #[arg(long)]
    base: Option<PathBuf>,
    /// meshd's admin socket.
    #[arg(long, env = "MESHD_SOCKET", default_value = "/run/meshd/meshd.sock")]
    socket: PathBuf,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Parse a policy file; errors name the file, the line and the fix.
    Check {
        /// The policy file (TOML, see docs/policy.md).
        file: PathBuf,
    },
    /// Evaluate the policy's [[expect]] entries against node certificates,
    /// before anything is pushed; exits 1 if any expectation fails.
    Test {
        /// The policy file.
        file: PathBuf,
        /// Node certificates naming the nodes the expectations use (repeatable).
        #[arg(long = "cert", required = true)]
        certs: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the policy in force on a running meshd: version, signer, text.
    Show(AdminArgs),
    /// Sign a policy file into a bundle (offline; writes --out).
    Sign {
        /// The policy file.
        file: PathBuf,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Sign a policy file (or take a signed bundle) and push it to the local
    /// meshd, which puts it in force and gossips it mesh-wide. With --cert,
    /// the policy's expectations must hold first.
    Push {
        /// The policy file, or with --bundle a signed bundle file.
        file: PathBuf,
        /// FILE is an already signed bundle (the signing options are unused).
        #[arg(long)]
        bundle: bool,
        #[command(flatten)]
        sign: SignArgs,
        /// Node certificates for the expectations (repeatable).
        #[arg(long = "cert")]
        certs: Vec<PathBuf>,
        /// meshd's admin socket.
        #[arg(long, env = "MESHD_SOCKET", default_value = "/run/meshd/meshd.sock")]
        socket: PathBuf,
    },
}

#[derive(Args)]
struct TraceArgs {
    /// Peer name or overlay address.
    target: String,
    /// Milliseconds to wait for the end-to-end reply.
    #[arg(short = 'W', long, default_value_t = 2000)]
    timeout_ms: u64,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args)]
struct PingArgs {
    /// Peer name or overlay address.
    target: String,
    /// Probes to send (1 to 10000).
    #[arg(short = 'c', long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    count: u32,
    /// Milliseconds between probes.
    #[arg(short = 'i', long, default_value_t = 1000)]
    interval_ms: u64,
    /// Milliseconds to wait for each reply.
    #[arg(short = 'W', long, default_value_t = 2000)]
    timeout_ms: u64,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args)]
struct AdminArgs {
    /// meshd's admin socket.
    #[arg(long, env = "MESHD_SOCKET", default_value = "/run/meshd/meshd.sock")]
    socket: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create a new CA: writes the CA certificate and its private key (0600).
    Init(CaInit),
}

#[derive(Args)]
struct CaInit {
    /// CA name.
    #[arg(long)]
    name: String,
    /// Validity, e.g. 3650d, 12h.
    #[arg(long, default_value = "3650d")]
    ttl: String,
    /// Where to write the CA certificate.
    #[arg(long, default_value = "ca.crt")]
    out_crt: PathBuf,
    /// Where to write the CA private key (mode 0600).
    #[arg(long, default_value = "ca.key")]
    out_key: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum CertCommand {
    /// Issue a node certificate signed by the CA.
    Issue(CertIssue),
    /// Show a certificate; with --ca, also verify it.
    Show(CertShow),
    /// Name a policy-signing key: a new Ed25519 key and a certificate by
    /// which the CA lets it sign policy bundles and revocation lists (so the
    /// CA key can stay offline). Revoke it like a node certificate.
    IssuePolicyKey(IssuePolicyKey),
}

#[derive(Args)]
struct IssuePolicyKey {
    /// Signer name (letters, digits, . _ -).
    #[arg(long)]
    name: String,
    /// Validity, e.g. 90d.
    #[arg(long, default_value = "90d")]
    ttl: String,
    #[command(flatten)]
    ca: CaFiles,
    /// Certificate output (default NAME.crt).
    #[arg(long)]
    out_crt: Option<PathBuf>,
    /// Key output, mode 0600 (default NAME.key).
    #[arg(long)]
    out_key: Option<PathBuf>,
}

#[derive(Args)]
struct CertIssue {
    /// Node name (letters, digits, . _ -).
    #[arg(long)]
    name: String,
    /// Overlay address with prefix, e.g. 100.64.0.1/10 or fd00::1/64 (repeatable).
    #[arg(long = "ip", required = true)]
    ips: Vec<String>,
    /// Segment the node belongs to (repeatable).
    #[arg(long = "segment")]
    segments: Vec<String>,
    /// Validity, e.g. 365d, 12h.
    #[arg(long, default_value = "365d")]
    ttl: String,
    #[command(flatten)]
    ca: CaFiles,
    /// Certify this existing public key (from `meshctl key generate`) instead of generating a key pair.
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// Where to write the certificate [default: NAME.crt].
    #[arg(long)]
    out_crt: Option<PathBuf>,
    /// Where to write the generated private key (mode 0600) [default: NAME.key].
    #[arg(long)]
    out_key: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CertShow {
    /// Certificate file.
    path: PathBuf,
    /// Verify against this CA certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Generate a node static key pair (private key 0600, public key 0644).
    Generate {
        /// Private key file.
        #[arg(long)]
        out: PathBuf,
        /// Public key file.
        #[arg(long)]
        public_out: PathBuf,
    },
}

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

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ca(CaCommand::Init(a)) => ca_init(a),
        Command::Cert(CertCommand::Issue(a)) => cert_issue(a),
        Command::Cert(CertCommand::Show(a)) => cert_show(a),
        Command::Cert(CertCommand::IssuePolicyKey(a)) => issue_policy_key(a),
        Command::Key(KeyCommand::Generate { out, public_out }) => key_generate(&out, &public_out),
        Command::Status(a) => status(&a),
        Command::Peers(a) => peers(&a),
        Command::Ping(a) => ping(&a),
        Command::Routes(a) => routes(&a),
        Command::Trace(a) => trace(&a),
        Command::Policy(PolicyCommand::Check { file }) => policy_check(&file).map(|_| ()),
        Command::Policy(PolicyCommand::Test { file, certs, json }) => {
            policy_test(&file, &certs, json)
        }
        Command::Policy(PolicyCommand::Show(a)) => policy_show(&a),
        Command::Policy(PolicyCommand::Sign { file, sign }) => {
            let out = sign
                .out
                .clone()
                .ok_or("policy sign needs --out FILE for the bundle")?;
            policy_check(&file)?;
            let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let b = sign_bundle(&sign, BundleKind::Policy, text)?;
            write_bundle(&out, &b)
        }
        Command::Policy(PolicyCommand::Push {
            file,
            bundle,
            sign,
            certs,
            socket,
        }) => {
            let b = if bundle {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                Bundle::from_armor(&text).map_err(|e| format!("{}: {e}", file.display()))?
            } else {
                if certs.is_empty() {
                    policy_check(&file)?;
                } else {
                    policy_test(&file, &certs, false)?;
                }
                let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                sign_bundle(&sign, BundleKind::Policy, text)?
            };
            if let Some(o) = &sign.out {
                write_bundle(o, &b)?;
            }
            push_bundle(&socket, &b)
        }
        Command::Revoke(a) => revoke(a),
    }
}

fn policy_show(a: &AdminArgs) -> Result<()> {
    let AdminResponse::Policy {
        version,
        issued,
        signer,
        text,
    } = ask(&a.socket, &AdminRequest::PolicyShow)?
    else {
        return Err("meshd answered something other than its policy".into());
    };
    if a.json {
        let v = serde_json::json!({
            "version": version, "issued": issued, "signer": signer, "text": text,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    match (version, text) {
        (Some(v), Some(t)) => {
            println!(
                "# policy version {v}, signed {} by {}",
                issued.map(rfc3339).unwrap_or_else(|| "-".into()),
                signer.unwrap_or_else(|| "-".into())
            );
            print!("{t}");
            if !t.ends_with('\n') {
                println!();
            }
        }
        _ => println!("no policy in force: all traffic between mesh members is allowed"),
    }
    Ok(())
}

fn sign_bundle(a: &SignArgs, kind: BundleKind, content: Vec<u8>) -> Result<Bundle> {
    let version = a.version.unwrap_or_else(now);
    if let (Some(crt), Some(key)) = (&a.signer_crt, &a.signer_key) {
        let cert = files::read_certificate(crt)?;
        let seed = files::read_private_key(key, proto::armor::LABEL_POLICY_SIGNER_KEY)?;
        return Bundle::sign_as(&RealCrypto, &cert, &seed, kind, version, now(), content)
            .map_err(|e| format!("{}: {e}", key.display()).into());
    }
    let (ca, seed) = a.ca.load()?;
    Bundle::sign(&RealCrypto, &ca, &seed, kind, version, now(), content)
        .map_err(|e| format!("{}: {e}", a.ca.ca_key.display()).into())
}

fn write_bundle(out: &Path, b: &Bundle) -> Result<()> {
    std::fs::write(out, b.to_armor()).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "wrote {} bundle version {} to {}",
        b.kind(),
        b.version(),
        out.display()
    );
    Ok(())
}

fn push_bundle(socket: &Path, b: &Bundle) -> Result<()> {
    let req = AdminRequest::PushBundle {
        bundle: b.to_armor(),
    };
    match ask(socket, &req)? {
        AdminResponse::Pushed { kind, version } => {
            println!("{kind} bundle version {version} in force on this node; spreading by gossip");
            Ok(())
        }
        _ => Err("meshd answered something other than 'pushed'".into()),
    }
}

fn revoke(a: RevokeArgs) -> Result<()> {
    use proto::bundle::{Content, RevocationList};
    let mut list = match (&a.base, a.offline) {
        (Some(base), _) => {
            let text =
                std::fs::read_to_string(base).map_err(|e| format!("{}: {e}", base.display()))?;
            let b = Bundle::from_armor(&text).map_err(|e| format!("{}: {e}", base.display()))?;
            match b.content() {
                Ok(Content::Revocation(l)) => l,
                _ => return Err(format!("{}: not a revocation list", base.display()).into()),
            }
        }
        (None, true) => RevocationList::default(),
        (None, false) => match ask(&a.socket, &AdminRequest::Revocations)? {
            AdminResponse::Revocations { entries, .. } => RevocationList {
                entries: entries
                    .into_iter()
                    .filter_map(|e| {
                        let mut fp = [0u8; 32];
                        (e.fingerprint.len() == 64).then_some(())?;
                        for (i, b) in fp.iter_mut().enumerate() {
                            *b = u8::from_str_radix(&e.fingerprint[2 * i..2 * i + 2], 16).ok()?;
                        }
                        Some(proto::bundle::RevokedCert {
                            fingerprint: fp,
                            name: e.name,
                        })
                    })
                    .collect(),
            },
            _ => return Err("meshd answered something other than its revocation list".into()),
        },
    };
    for c in &a.certs {
        let cert = files::read_certificate(c)?;
        list.revoke(&RealCrypto, &cert);
        println!(
            "revoking '{}' ({})",
            cert.name(),
            hex(&cert.fingerprint(&RealCrypto))
        );
    }
    let content = list.encode();
    let b = sign_bundle(&a.sign, BundleKind::Revocation, content)?;
    if let Some(o) = &a.sign.out {
        write_bundle(o, &b)?;
    }
    if a.offline {
        if a.sign.out.is_none() {
            return Err("--offline needs --out FILE".into());
        }
        return Ok(());
    }
    push_bundle(&a.socket, &b)
}

fn policy_check(file: &Path) -> Result<proto::policy::Policy> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let p = proto::policy::Policy::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    println!(
        "{}: valid: {} rule(s), {} enclave(s), {} expectation(s)",
        file.display(),
        p.rules.len(),
        p.enclaves.len(),
        p.expectations.len()
    );
    Ok(p)
}

fn policy_test(file: &Path, certs: &[PathBuf], json: bool) -> Result<()> {
    use proto::policy::{DenyReason, Verdict};
    let policy = policy_check(file)?;
    let mut inventory = Vec::new();
    for c in certs {
        let cert = files::read_certificate(c)?;
        let body = cert.body();
        let addr = body
            .addresses
            .first()
            .map(|a| a.addr())
            .ok_or_else(|| format!("{}: certificate has no overlay address", c.display()))?;
        inventory.push((body.name.clone(), body.segments.clone(), addr));
    }
    let results = policy
        .check_expectations(&inventory)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let failed = results.iter().filter(|r| !r.pass).count();
    let describe = |v: &Verdict| match v {
        Verdict::Allow => "allow".to_string(),
        Verdict::Deny(DenyReason::Enclave) => "deny (enclave boundary)".into(),
        Verdict::Deny(DenyReason::Rule(i)) => format!("deny (rule {})", i + 1),
        Verdict::Deny(DenyReason::Default) => "deny (no rule allows it)".into(),
    };
    if json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "from": r.expectation.from,
                    "to": r.expectation.to,
                    "proto": r.expectation.proto,
                    "port": r.expectation.port,
                    "expected": format!("{:?}", r.expectation.verdict).to_lowercase(),
                    "got": describe(&r.got),
                    "pass": r.pass,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &results {
            let e = &r.expectation;
            println!(
                "{} {} -> {} {}/{}: expected {:?}, policy says {}",
                if r.pass { "pass" } else { "FAIL" },
                e.from,
                e.to,
                e.proto,
                e.port,
                e.verdict,
                describe(&r.got)
            );
        }
        println!(
            "{} of {} expectations hold",
            results.len() - failed,
            results.len()
        );
    }
    if failed > 0 {
        return Err(format!("{}: {failed} expectation(s) fail", file.display()).into());
    }
    Ok(())
}

/// Parses `90d`, `12h`, `30m`, `45s` into seconds.
fn parse_ttl(s: &str) -> Result<u64> {
    let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: u64 = num
        .parse()
        .map_err(|_| format!("--ttl '{s}': expected a number with a unit, e.g. 365d, 12h, 30m"))?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3600,
        "m" => 60,
        "s" | "" => 1,
        _ => return Err(format!("--ttl '{s}': unknown unit '{unit}', use d, h, m or s").into()),
    };
    let secs = n
        .checked_mul(mult)
        .ok_or_else(|| format!("--ttl '{s}' is too long"))?;
    if secs == 0 {
        return Err(format!("--ttl '{s}' must be positive").into());
    }
    Ok(secs)
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    crypto::os_rng().fill_bytes(&mut k);
    k
}

fn ca_init(a: CaInit) -> Result<()> {
    let c = RealCrypto;
    let ttl = parse_ttl(&a.ttl)?;
    let t = now();
    for p in [&a.out_crt, &a.out_key] {
        if p.exists() {
            return Err(format!(
                "{}: already exists; remove it or choose another path",
                p.display()
            )
            .into());
        }
    }
    let seed = random_key();
    let cert = cert::create_ca(&c, &a.name, &seed, t.saturating_sub(60), t + ttl)
        .map_err(|e| format!("--name/--ttl: {e}"))?;
    files::write_private_key(&a.out_key, LABEL_CA_KEY, &seed)?;
    files::write_public(&a.out_crt, &cert.to_armor())?;
    let view = view_of(&cert, None);
    if a.json {
        let out = IssuedFiles {
            certificate: a.out_crt.display().to_string(),
            private_key: Some(a.out_key.display().to_string()),
            details: view,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("created CA '{}'", cert.name());
        println!("  certificate  {}", a.out_crt.display());
        println!(
            "  private key  {} (mode 0600; keep it offline)",
            a.out_key.display()
        );
        println!("  fingerprint  {}", view.fingerprint);
        println!("  valid until  {}", view.not_after_utc);
    }
    Ok(())
}

fn load_ca(crt: &Path) -> Result<TrustedCa> {
    let cert = files::read_certificate(crt)?;
    TrustedCa::new(&RealCrypto, cert, now()).map_err(|e| format!("{}: {e}", crt.display()).into())
}

fn cert_issue(a: CertIssue) -> Result<()> {
    let c = RealCrypto;
    let ttl = parse_ttl(&a.ttl)?;
    let (ca, ca_seed) = a.ca.load()?;
    let addresses = a
        .ips
        .iter()
        .map(|s| s.parse::<OverlayAddr>().map_err(|e| format!("--ip {e}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let out_crt = a
        .out_crt
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.crt", a.name)));
    let out_key = a
        .out_key
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.key", a.name)));
    let (public, advert_key, secret) = match &a.public_key {
        Some(p) => {
            let (x, advert) = files::read_node_public_key(p)?;
            (x, advert, None)
        }
        None => {
            if out_key.exists() {
                return Err(format!(
                    "{}: already exists; remove it or choose another path",
                    out_key.display()
                )
                .into());
            }
            let s = random_key();
            (
                c.x25519_public_key(&s),
                proto::cert::advert_public_key(&c, &s),
                Some(s),
            )
        }
    };
    if out_crt.exists() {
        return Err(format!(
            "{}: already exists; remove it or choose another path",
            out_crt.display()
        )
        .into());
    }
    let t = now();
    // Never outlive the CA: clamp to its validity, and say so.
    let ca_end = ca.certificate().body().not_after;
    let not_after = (t + ttl).min(ca_end);
    let cert = ca
        .issue(
            &c,
            &ca_seed,
            NodeCertParams {
                name: a.name.clone(),
                addresses,
                segments: a.segments.clone(),
                static_public_key: public,
                advert_key,
                not_before: t.saturating_sub(60).max(ca.certificate().body().not_before),
                not_after,
            },
        )
        .map_err(|e| format!("--name/--ip/--segment: {e}"))?;
    if let Some(s) = secret {
        files::write_private_key(&out_key, LABEL_NODE_KEY, &s)?;
    }
    files::write_public(&out_crt, &cert.to_armor())?;
    let view = view_of(&cert, Some(&ca));
    if a.json {
        let out = IssuedFiles {
            certificate: out_crt.display().to_string(),
            private_key: secret.map(|_| out_key.display().to_string()),
            details: view,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("issued certificate for '{}'", cert.name());
        println!("  certificate  {}", out_crt.display());
        if secret.is_some() {
            println!("  private key  {} (mode 0600)", out_key.display());
        }
        println!("  addresses    {}", view.addresses.join(", "));
        println!(
            "  segments     {}",
            if view.segments.is_empty() {
                "-".into()
            } else {
                view.segments.join(", ")
            }
        );
        println!("  valid until  {}", view.not_after_utc);
        if not_after < t + ttl {
            println!("  note: validity shortened to the CA's end of validity");
        }
    }
    Ok(())
}

fn cert_show(a: CertShow) -> Result<()> {
    let cert = files::read_certificate(&a.path)?;
    let ca = match &a.ca {
        Some(p) => Some(load_ca(p)?),
        None => None,
    };
    let view = view_of(&cert, ca.as_ref());
    let failed = view
        .verification
        .as_ref()
        .filter(|v| !v.starts_with("valid"))
        .map(|v| format!("{}: {v}", a.path.display()));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return failed.map_or(Ok(()), |f| Err(f.into()));
    }
    println!("{} certificate '{}'", view.kind, view.name);
    if cert.kind() == CertKind::Node {
        println!("  addresses    {}", view.addresses.join(", "));
        println!(
            "  segments     {}",
            if view.segments.is_empty() {
                "-".into()
            } else {
                view.segments.join(", ")
            }
        );
        println!("  static key   {} (X25519)", view.public_key);
        println!("  issuer       {}", view.issuer);
    } else {
        println!("  signing key  {} (Ed25519)", view.public_key);
    }
    println!("  fingerprint  {}", view.fingerprint);
    println!("  not before   {}", view.not_before_utc);
    println!("  not after    {}", view.not_after_utc);
    if let Some(v) = &view.verification {
        println!("  verification {v}");
    }
    failed.map_or(Ok(()), |f| Err(f.into()))
}

fn issue_policy_key(a: IssuePolicyKey) -> Result<()> {
    let c = RealCrypto;
    let ttl = parse_ttl(&a.ttl)?;
    let (ca, ca_seed) = a.ca.load()?;
    let seed = random_key();
    let t = now();
    let not_after = (t + ttl).min(ca.certificate().body().not_after);
    let cert = ca
        .issue_policy_signer(
            &c,
            &ca_seed,
            &a.name,
            c.ed25519_public_key(&seed),
            t,
            not_after,
        )
        .map_err(|e| format!("{}: {e}", a.ca.ca_key.display()))?;
    let out_crt = a
        .out_crt
        .unwrap_or_else(|| PathBuf::from(format!("{}.crt", a.name)));
    let out_key = a
        .out_key
        .unwrap_or_else(|| PathBuf::from(format!("{}.key", a.name)));
    files::write_private_key(&out_key, proto::armor::LABEL_POLICY_SIGNER_KEY, &seed)?;
    files::write_public(&out_crt, &cert.to_armor())?;
    println!(
        "wrote policy signer '{}': {} and {} (mode 0600); valid until {}",
        a.name,
        out_crt.display(),
        out_key.display(),
        rfc3339(not_after)
    );
    Ok(())
}

fn key_generate(out: &Path, public_out: &Path) -> Result<()> {
    let s = random_key();
    let mut p = RealCrypto.x25519_public_key(&s).to_vec();
    p.extend_from_slice(&proto::cert::advert_public_key(&RealCrypto, &s));
    files::write_private_key(out, LABEL_NODE_KEY, &s)?;
    files::write_public(public_out, &proto::armor::encode(LABEL_NODE_PUBLIC_KEY, &p))?;
    println!(
        "wrote {} (mode 0600) and {}",
        out.display(),
        public_out.display()
    );
    Ok(())
}

/// Sends one request to meshd's admin socket and reads the answer.
fn ask(socket: &Path, req: &AdminRequest) -> Result<AdminResponse> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
            "{}: meshd is not running (no admin socket); start it with 'meshd --config FILE' or pass --socket",
            socket.display()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "{}: permission denied; the admin socket is mode 0600, run meshctl as the user meshd runs as (usually root)",
            socket.display()
        ),
        _ => format!("{}: {e}", socket.display()),
    })?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    match serde_json::from_str(&answer)? {
        AdminResponse::Error { message } => Err(format!("meshd: {message}").into()),
        r => Ok(r),
    }
}

fn status(a: &AdminArgs) -> Result<()> {
    let AdminResponse::Status(s) = ask(&a.socket, &AdminRequest::Status)? else {
        return Err("meshd answered something other than a status".into());
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("node '{}'  meshd {}", s.name, s.version);
    println!("  overlay      {}", s.addresses.join(", "));
    println!(
        "  segments     {}",
        if s.segments.is_empty() {
            "-".into()
        } else {
            s.segments.join(", ")
        }
    );
    println!("  listen       udp {}   tun {}", s.listen, s.tun);
    println!("  CA           {}", s.ca_fingerprint);
    println!("  uptime       {}s", s.uptime_secs);
    println!(
        "  peers        {} known, {} with a session",
        s.peers, s.sessions
    );
    println!("  handshakes   {} completed", s.handshakes_completed);
    let r = &s.routing;
    println!(
        "  routing      {}, {} adverts held, {} nodes reachable{}",
        if r.relay {
            "relay"
        } else {
            "stub (relays for nobody)"
        },
        r.adverts_held,
        r.nodes_reachable,
        if r.local_stalls > 0 {
            format!(", stalled {} times", r.local_stalls)
        } else {
            String::new()
        }
    );
    for (k, v) in &s.handshake_failures {
        println!("    failed     {v} {k}");
    }
    let p = &s.policy;
    match p.policy_version {
        Some(v) => println!(
            "  policy       version {v}, {} rule(s), enclaves: {}",
            p.rules,
            if p.enclaves.is_empty() {
                "-".into()
            } else {
                p.enclaves.join(", ")
            }
        ),
        None => println!("  policy       none in force: all traffic between members allowed"),
    }
    match p.revocation_version {
        Some(v) => println!(
            "  revocations  version {v}, {} certificate(s); {} peer(s) refused",
            p.revoked, p.refused_peers
        ),
        None => println!("  revocations  none"),
    }
    println!("  flows        {} tracked", p.tracked_flows);
    for (k, v) in &p.denied {
        println!("    denied     {v} {k}");
    }
    for (k, v) in &p.bundle_rejects {
        println!("    refused    {v} bundle(s): {k}");
    }
    if s.drops.is_empty() {
        println!("  drops        none");
    } else {
        for (k, v) in &s.drops {
            println!("  dropped      {v} {k}");
        }
    }
    Ok(())
}

fn ping(a: &PingArgs) -> Result<()> {
    let mut results = Vec::new();
    for i in 0..a.count {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(a.interval_ms));
        }
        let req = AdminRequest::Ping {
            target: a.target.clone(),
            timeout_ms: a.timeout_ms,
        };
        let AdminResponse::Ping(v) = ask(&a.admin.socket, &req)? else {
            return Err("meshd answered something other than a ping result".into());
        };
        if !a.admin.json {
            let path = match (v.path.as_str(), v.endpoint.as_deref()) {
                ("direct", Some(e)) => format!("direct to {e}"),
                (p, _) => p.to_string(),
            };
            match v.rtt_ms {
                Some(rtt) => println!(
                    "reply from {} ({}), path {path}: seq={} time={rtt:.3} ms",
                    v.peer, v.address, v.seq
                ),
                None => println!(
                    "no reply from {} ({}), path {path}: seq={} timeout",
                    v.peer, v.address, v.seq
                ),
            }
        }
        results.push(v);
    }
    let rtts: Vec<f64> = results.iter().filter_map(|v| v.rtt_ms).collect();
    if a.admin.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        let loss = 100.0 * (results.len() - rtts.len()) as f64 / results.len() as f64;
        println!(
            "{} sent, {} received, {loss:.0}% loss",
            results.len(),
            rtts.len()
        );
        if !rtts.is_empty() {
            let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rtts.iter().copied().fold(0.0, f64::max);
            let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
            println!("rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms");
        }
    }
    if rtts.is_empty() {
        return Err(format!("no reply from {}", a.target).into());
    }
    Ok(())
}

fn routes(a: &AdminArgs) -> Result<()> {
    let AdminResponse::Routes { routes } = ask(&a.socket, &AdminRequest::Routes)? else {
        return Err("meshd answered something other than a route table".into());
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&routes)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<18} {:>12} {:>5} {:>9}",
        "DESTINATION", "NEXT HOP", "METRIC", "HOPS", "AGE"
    );
    for r in routes {
        let next = if r.next_hop == r.destination {
            "direct".to_string()
        } else {
            r.next_hop
        };
        println!(
            "{:<18} {:<18} {:>10}µs {:>5} {:>8.0}s",
            r.destination, next, r.metric_us, r.hops, r.age_secs
        );
    }
    Ok(())
}

fn trace(a: &TraceArgs) -> Result<()> {
    let req = AdminRequest::Trace {
        target: a.target.clone(),
        timeout_ms: a.timeout_ms,
    };
    let AdminResponse::Trace(t) = ask(&a.admin.socket, &req)? else {
        return Err("meshd answered something other than a trace".into());
    };
    if a.admin.json {
        println!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        println!("trace to {}", t.peer);
        for (i, h) in t.hops.iter().enumerate() {
            println!(
                "{:>3}  {:<18} link {:>8.3} ms   total {:>8.3} ms",
                i + 1,
                h.node,
                h.link_rtt_ms,
                h.cumulative_ms
            );
        }
        match t.rtt_ms {
            Some(r) => println!("end to end: {r:.3} ms (measured ICMP round trip)"),
            None => println!("end to end: no reply within {} ms", a.timeout_ms),
        }
    }
    if t.rtt_ms.is_none() {
        return Err(format!("no reply from {}", a.target).into());
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn peers(a: &AdminArgs) -> Result<()> {
    let AdminResponse::Peers { peers } = ask(&a.socket, &AdminRequest::Peers)? else {
        return Err("meshd answered something other than a peer list".into());
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<18} {:<22} {:>10} {:<8} {:<8} {:>12} {:>12} {:>9} {:<12} {:<18} {:>5}",
        "NAME",
        "OVERLAY",
        "ENDPOINT",
        "HANDSHAKE",
        "PQ",
        "CIPHER",
        "RX",
        "TX",
        "RTT",
        "PATH",
        "LINK",
        "MTU"
    );
    for p in peers {
        let link = match (&p.link, p.link_rtt_ms, p.link_loss) {
            (Some(state), Some(rtt), Some(loss)) => {
                format!("{state} {rtt:.2}ms {:.0}%", loss * 100.0)
            }
            (Some(state), _, _) => state.clone(),
            _ => "-".into(),
        };
        println!(
            "{:<16} {:<18} {:<22} {:>10} {:<8} {:<8} {:>12} {:>12} {:>9} {:<12} {:<18} {:>5}",
            p.name,
            p.addresses.first().cloned().unwrap_or_else(|| "-".into()),
            p.endpoint.unwrap_or_else(|| "-".into()),
            p.handshake_age_secs
                .map(|s| format!("{s:.0}s ago"))
                .unwrap_or_else(|| "never".into()),
            if p.hybrid_post_quantum { "hybrid" } else { "-" },
            match p.cipher.as_deref() {
                Some("aes-256-gcm") => "aes-gcm",
                Some("chacha20-poly1305") => "chacha",
                _ => "-",
            },
            human_bytes(p.rx_bytes),
            human_bytes(p.tx_bytes),
            p.last_rtt_ms
                .map(|r| format!("{r:.2}ms"))
                .unwrap_or_else(|| "-".into()),
            p.path,
            link,
            p.path_mtu
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}

fn view_of(cert: &Certificate, ca: Option<&TrustedCa>) -> CertificateView {
    let b = cert.body();
    let verification = ca.map(|ca| match cert.kind() {
        CertKind::Node => match ca.verify_node(&RealCrypto, cert, now()) {
            Ok(()) => "valid".to_string(),
            Err(e) => e.to_string(),
        },
        CertKind::PolicySigner => match ca.verify_policy_signer(&RealCrypto, cert, now()) {
            Ok(()) => "valid policy signer".to_string(),
            Err(e) => e.to_string(),
        },
        CertKind::Ca if cert == ca.certificate() => "valid (this is the CA)".to_string(),
        CertKind::Ca => "a different CA".to_string(),
    });
    CertificateView {
        kind: match cert.kind() {
            CertKind::Ca => "ca",
            CertKind::Node => "node",
            CertKind::PolicySigner => "policy-signer",
        }
        .into(),
        name: b.name.clone(),
        addresses: b.addresses.iter().map(|a| a.to_string()).collect(),
        segments: b.segments.clone(),
        public_key: hex(&b.public_key),
        not_before: b.not_before,
        not_after: b.not_after,
        not_before_utc: rfc3339(b.not_before),
        not_after_utc: rfc3339(b.not_after),
        issuer: if cert.kind() == CertKind::Ca {
            String::new()
        } else {
            hex(&b.issuer)
        },
        fingerprint: hex(&cert.fingerprint(&RealCrypto)),
        verification,
    }
}

/// RFC 3339 UTC from Unix seconds (Howard Hinnant's civil-from-days).
fn rfc3339(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let rem = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("2d").unwrap(), 172_800);
        assert_eq!(parse_ttl("90m").unwrap(), 5400);
        assert_eq!(parse_ttl("15").unwrap(), 15);
        assert!(parse_ttl("0d").is_err());
        assert!(parse_ttl("5y")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_ttl("abc").is_err());
    }
}
