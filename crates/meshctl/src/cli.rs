//! The command line: every command, argument and its help text (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use crypto::files;
use crypto::RealCrypto;
use proto::armor::LABEL_CA_KEY;
use proto::cert::TrustedCa;
use proto::provider::Crypto;

use crate::Result;

#[derive(Parser)]
#[command(
    name = "meshctl",
    version,
    about = "Administer a meshd mesh: CA, certificates, keys"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// The revocation list in force on the running meshd: its version and
    /// every revoked certificate by name and fingerprint.
    Revoked(AdminArgs),
    /// Intrusion-detection alerts raised by the running meshd against its
    /// peers (scans, spoofing, malformed control messages…), and what was
    /// done about each.
    Alerts(AdminArgs),
    /// Check the running meshd: certificates about to expire, peers that
    /// never answered, links down or lossy, narrow paths, policy and
    /// bundles, drops worth knowing, sanctions; each finding with what to
    /// do. Exits 1 when any finding is an error.
    Doctor(AdminArgs),
    /// Peers the running meshd holds under a rate limit or quarantine;
    /// `--release PEER` lifts one.
    Quarantine(QuarantineArgs),
    /// New session keys with a peer now: a fresh hybrid handshake, the
    /// current session carrying traffic until the new one is confirmed
    /// (meshd also rekeys every 2 minutes by itself)
    Rekey(RekeyArgs),
    /// Make the running meshd re-read its configuration file (as SIGHUP
    /// does): what can change live is applied, what needs a restart is
    /// named, and a file that does not check changes nothing.
    Reload(AdminArgs),
    /// Segment policy: check and test offline, sign, push to the mesh.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Revoke node certificates mesh-wide: signs a new revocation list (the
    /// one in force plus these) and pushes it; sessions with the revoked
    /// nodes are torn down and refused everywhere as it spreads.
    Revoke(RevokeArgs),
    /// Write meshctl's man pages and shell completions (for packaging).
    #[command(hide = true)]
    Generate {
        /// Directory for `man/*.1` and `completions/` (bash, zsh, fish).
        dir: PathBuf,
    },
}

/// The CA's certificate and key, for commands that sign.
#[derive(Args)]
pub struct CaFiles {
    /// CA certificate.
    #[arg(long, default_value = "ca.crt")]
    pub ca_crt: PathBuf,
    /// CA private key.
    #[arg(long, default_value = "ca.key")]
    pub ca_key: PathBuf,
}

impl CaFiles {
    /// The CA and its key, checked to belong together.
    pub fn load(&self) -> Result<(TrustedCa, [u8; 32])> {
        let ca = crate::pki::load_ca(&self.ca_crt)?;
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
pub struct SignArgs {
    #[command(flatten)]
    pub ca: CaFiles,
    /// Bundle version; must exceed the one in force (default: the Unix time).
    #[arg(long)]
    pub version: Option<u64>,
    /// Sign with a policy key the CA named (meshctl cert issue-policy-key)
    /// instead of the CA key: its certificate...
    #[arg(long, requires = "signer_key")]
    pub signer_crt: Option<PathBuf>,
    /// ...and its private key.
    #[arg(long, requires = "signer_crt")]
    pub signer_key: Option<PathBuf>,
    /// Also write the signed bundle to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// Certificates to revoke (repeatable).
    #[arg(long = "cert", required = true)]
    pub certs: Vec<PathBuf>,
    #[command(flatten)]
    pub sign: SignArgs,
    /// Only write --out; do not push (the list then starts from nothing
    /// unless --base names the current one).
    #[arg(long)]
    pub offline: bool,
    /// A revocation list file to extend (default: ask meshd for the one in force).
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// meshd's admin socket.
    #[arg(long, env = "MESHD_SOCKET", default_value = "/run/meshd/meshd.sock")]
    pub socket: PathBuf,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Parse a policy file; errors name the file, the line and the fix.
    Check {
        /// The policy file (TOML, see docs/policy.md).
        file: PathBuf,
    },
    /// Evaluate the policy's [[expect]] entries against node certificates,
    /// before anything is pushed; exits 1 if any expectation fails. Also
    /// says whether it allows nothing, or names a segment or node no member
    /// has.
    Test {
        /// The policy file.
        file: PathBuf,
        /// Node certificates naming the nodes the expectations use
        /// (repeatable; default: the running meshd's peers and itself).
        #[arg(long = "cert")]
        certs: Vec<PathBuf>,
        /// meshd's admin socket, asked for its members when no --cert is given.
        #[arg(long, env = "MESHD_SOCKET", default_value = "/run/meshd/meshd.sock")]
        socket: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the policy in force on a running meshd: version, signer, text.
    Show(AdminArgs),
    /// Sign a policy file into a bundle (offline; writes --out). Its
    /// expectations must hold against --cert (needed when it has any), and
    /// a policy that allows nothing or names an unknown segment or node
    /// needs --force.
    Sign {
        /// The policy file.
        file: PathBuf,
        #[command(flatten)]
        sign: SignArgs,
        /// Node certificates: the members the expectations and names are
        /// checked against (repeatable).
        #[arg(long = "cert")]
        certs: Vec<PathBuf>,
        /// Sign even if the policy allows nothing, or names a segment or
        /// node no member given has.
        #[arg(long)]
        force: bool,
    },
    /// Sign a policy file (or take a signed bundle) and push it to the local
    /// meshd, which puts it in force and gossips it mesh-wide. The policy's
    /// expectations must hold first, against --cert or else the members
    /// the running meshd knows; a policy that allows nothing or names an
    /// unknown segment or node needs --force.
    Push {
        /// The policy file, or with --bundle a signed bundle file.
        file: PathBuf,
        /// FILE is an already signed bundle (the signing options are unused).
        #[arg(long)]
        bundle: bool,
        #[command(flatten)]
        sign: SignArgs,
        /// Node certificates for the expectations (repeatable; default:
        /// the running meshd's peers and itself).
        #[arg(long = "cert")]
        certs: Vec<PathBuf>,
        /// Push even if the policy allows nothing, or names a segment or
        /// node no known member has.
        #[arg(long)]
        force: bool,
        /// meshd's admin socket.
        #[arg(long, env = "MESHD_SOCKET", default_value = "/run/meshd/meshd.sock")]
        socket: PathBuf,
    },
}

#[derive(Args)]
pub struct TraceArgs {
    /// Peer name or overlay address.
    pub target: String,
    /// Milliseconds to wait for the end-to-end reply.
    #[arg(short = 'W', long, default_value_t = 2000)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Args)]
pub struct PingArgs {
    /// Peer name or overlay address.
    pub target: String,
    /// Probes to send (1 to 10000).
    #[arg(short = 'c', long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,
    /// Milliseconds between probes.
    #[arg(short = 'i', long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Milliseconds to wait for each reply.
    #[arg(short = 'W', long, default_value_t = 2000)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Args)]
pub struct QuarantineArgs {
    /// Lift the sanction on this peer (a name or overlay address) and
    /// forget the evidence against it.
    #[arg(long, value_name = "PEER")]
    pub release: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Args)]
pub struct RekeyArgs {
    /// The peer: a name or overlay address.
    pub peer: String,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Args)]
pub struct AdminArgs {
    /// meshd's admin socket.
    #[arg(long, env = "MESHD_SOCKET", default_value = "/run/meshd/meshd.sock")]
    pub socket: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create a new CA: writes the CA certificate and its private key (0600).
    Init(CaInit),
}

#[derive(Args)]
pub struct CaInit {
    /// CA name.
    #[arg(long)]
    pub name: String,
    /// Validity, e.g. 3650d, 12h.
    #[arg(long, default_value = "3650d")]
    pub ttl: String,
    /// Where to write the CA certificate.
    #[arg(long, default_value = "ca.crt")]
    pub out_crt: PathBuf,
    /// Where to write the CA private key (mode 0600).
    #[arg(long, default_value = "ca.key")]
    pub out_key: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum CertCommand {
    /// Issue a node certificate signed by the CA.
    Issue(CertIssue),
    /// Show a certificate; with --ca, also verify it.
    Show(CertShow),
    /// Renew a node certificate: the same key, name, addresses and
    /// segments, a new validity (the old one may have expired). Put it in
    /// place of the old one on the node and reload meshd; no peer changes.
    Renew(CertRenew),
    /// Name a policy-signing key: a new Ed25519 key and a certificate by
    /// which the CA lets it sign policy bundles and revocation lists (so the
    /// CA key can stay offline). Revoke it like a node certificate.
    IssuePolicyKey(IssuePolicyKey),
}

#[derive(Args)]
pub struct IssuePolicyKey {
    /// Signer name (letters, digits, . _ -).
    #[arg(long)]
    pub name: String,
    /// Validity, e.g. 90d.
    #[arg(long, default_value = "90d")]
    pub ttl: String,
    #[command(flatten)]
    pub ca: CaFiles,
    /// Certificate output (default NAME.crt).
    #[arg(long)]
    pub out_crt: Option<PathBuf>,
    /// Key output, mode 0600 (default NAME.key).
    #[arg(long)]
    pub out_key: Option<PathBuf>,
}

#[derive(Args)]
pub struct CertIssue {
    /// Node name (letters, digits, . _ -).
    #[arg(long)]
    pub name: String,
    /// Overlay address with prefix, e.g. 100.64.0.1/10 or fd00::1/64 (repeatable).
    #[arg(long = "ip", required = true)]
    pub ips: Vec<String>,
    /// Segment the node belongs to (repeatable).
    #[arg(long = "segment")]
    pub segments: Vec<String>,
    /// Validity, e.g. 365d, 12h.
    #[arg(long, default_value = "365d")]
    pub ttl: String,
    #[command(flatten)]
    pub ca: CaFiles,
    /// Certify this existing public key (from `meshctl key generate`) instead of generating a key pair.
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// Where to write the certificate [default: NAME.crt].
    #[arg(long)]
    pub out_crt: Option<PathBuf>,
    /// Where to write the generated private key (mode 0600) [default: NAME.key].
    #[arg(long)]
    pub out_key: Option<PathBuf>,
    /// Issue even if a valid certificate of another key already carries
    /// this name or an address (see the inventory beside the CA key).
    #[arg(long)]
    pub force: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CertRenew {
    /// The certificate to renew (signed by this CA; it may have expired).
    pub path: PathBuf,
    /// Validity from now, e.g. 365d, 12h.
    #[arg(long, default_value = "365d")]
    pub ttl: String,
    #[command(flatten)]
    pub ca: CaFiles,
    /// Where to write the renewed certificate [default: NAME.renewed.crt].
    #[arg(long)]
    pub out_crt: Option<PathBuf>,
    /// Renew even though a certificate of this key was revoked (to undo a
    /// mistaken revocation; never for a stolen key).
    #[arg(long)]
    pub force: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CertShow {
    /// Certificate file.
    pub path: PathBuf,
    /// Verify against this CA certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// And against this revocation list (a bundle file, from `meshctl
    /// revoke --out`; needs --ca): "revoked" if it names the certificate.
    #[arg(long, requires = "ca")]
    pub revocations: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum KeyCommand {
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
