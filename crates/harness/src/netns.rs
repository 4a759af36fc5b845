//! Bringing a [`Topology`] up in network namespaces with real meshd agents,
//! and tearing it down.
//!
//! Names: namespaces `mh-TOPO-HOST`; veth ends `mhTAGlKa`/`mhTAGlKb` in the
//! root namespace until moved (TAG: 4 hex digits of the topology name's
//! hash), `lK` inside hosts. State (CA, certificates, configs, logs, pids,
//! and `hosts`, the host names, written before anything is made) lives in
//! `/tmp/mesh-harness/TOPO/`. `down TOPO` removes exactly what these names
//! say, so it also cleans up after a run that was killed midway, and never
//! another topology's (`sq` is not `sq-2`); `up` refuses a topology that is
//! already up rather than tearing someone's down.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crypto::files;
use crypto::RealCrypto;
use proto::armor::{LABEL_CA_KEY, LABEL_NODE_KEY};
use proto::cert::{create_ca, NodeCertParams, OverlayAddr, TrustedCa};
use proto::provider::Crypto;
use rand_core::RngCore;

use crate::topology::Topology;

/// Where a topology's state lives.
pub fn state_dir(topo: &str) -> PathBuf {
    PathBuf::from("/tmp/mesh-harness").join(topo)
}

/// Lines of the logs of `hosts` in topology `topo` that intrusion
/// detection wrote (alerts, sanctions, accusations): a false positive each
/// where nothing misbehaves.
pub fn ids_log_lines(topo: &str, hosts: &[&str]) -> usize {
    (hosts.iter())
        .filter_map(|h| std::fs::read_to_string(state_dir(topo).join(format!("{h}.log"))).ok())
        .map(|log| {
            log.lines()
                .filter(|l| l.contains("intrusion detection"))
                .count()
        })
        .sum()
}

/// The namespace of `host` in topology `topo`.
pub fn namespace(topo: &str, host: &str) -> String {
    format!("mh-{topo}-{host}")
}

fn tag(topo: &str) -> String {
    let mut h = DefaultHasher::new();
    topo.hash(&mut h);
    format!("{:04x}", h.finish() & 0xffff)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args))
}

/// The host names `up` recorded for `topo`, if its state is there.
fn recorded_hosts(topo: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(state_dir(topo).join("hosts")).ok()?;
    Some(text.lines().map(str::to_string).collect())
}

/// Every network namespace on the host.
fn namespaces() -> Vec<String> {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&list)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The namespaces of `topo`: its recorded hosts' where its state is there;
/// otherwise (state gone) every `mh-TOPO-*` that no other topology's
/// recorded hosts name.
fn namespaces_of(topo: &str) -> Vec<String> {
    let all = namespaces();
    if let Some(hosts) = recorded_hosts(topo) {
        let mine: Vec<String> = hosts.iter().map(|h| namespace(topo, h)).collect();
        return all.into_iter().filter(|ns| mine.contains(ns)).collect();
    }
    let others: Vec<String> = std::fs::read_dir("/tmp/mesh-harness")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|t| t != topo)
                .flat_map(|t| {
                    let hosts = recorded_hosts(&t).unwrap_or_default();
                    hosts.into_iter().map(move |h| namespace(&t, &h))
                })
                .collect()
        })
        .unwrap_or_default();
    let prefix = format!("mh-{topo}-");
    all.into_iter()
        .filter(|ns| ns.starts_with(&prefix) && !others.contains(ns))
        .collect()
}

/// Whether `topo` is up (its state or any of its namespaces is there).
pub fn is_up(topo: &str) -> bool {
    recorded_hosts(topo).is_some() || !namespaces_of(topo).is_empty()
}

/// Removes everything named after `topo`, and nothing else: processes,
/// namespaces, stray links, state. Returns what it removed, for the log.
pub fn down(topo: &str) -> Vec<String> {
    let mut removed = Vec::new();
    for ns in namespaces_of(topo) {
        let ns = ns.as_str();
        let pids = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        for pid in String::from_utf8_lossy(&pids).split_whitespace() {
            let _ = Command::new("kill").arg(pid).status();
        }
        // Give meshd a moment to remove its TUN device and socket cleanly.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let left = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            if left.iter().all(u8::is_ascii_whitespace) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let pids = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        for pid in String::from_utf8_lossy(&pids).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
        removed.push(format!("namespace {ns}"));
    }
    let t = format!("mh{}l", tag(topo));
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    for line in String::from_utf8_lossy(&links).lines() {
        let name = line.split(':').nth(1).map(str::trim).unwrap_or("");
        let name = name.split('@').next().unwrap_or("");
        if name.starts_with(&t) {
            let _ = Command::new("ip").args(["link", "del", name]).status();
            removed.push(format!("link {name}"));
        }
    }
    let dir = state_dir(topo);
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        removed.push(format!("state {}", dir.display()));
    }
    removed
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Brings `topo` up: namespaces, links (MTU, TBF), a fresh CA and
/// certificates, a meshd per host. `meshd` is the agent binary. Calls
/// `progress` with a line per step.
pub fn up(topo: &Topology, meshd: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), String> {
    if is_up(&topo.name) {
        return Err(format!(
            "topology '{}' is already up (or left over from a run that was killed): remove it with 'mesh-harness down {0}', or give this one another name (--name)",
            topo.name
        ));
    }
    let dir = state_dir(&topo.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Recorded before anything is made: `down` removes exactly these.
    let hosts: String = topo.hosts.iter().map(|h| format!("{}\n", h.name)).collect();
    std::fs::write(dir.join("hosts"), hosts).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = build(topo, meshd, &dir, progress);
    if result.is_err() {
        down(&topo.name);
    }
    result
}

fn build(
    topo: &Topology,
    meshd: &Path,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let c = RealCrypto;
    for h in &topo.hosts {
        let ns = namespace(&topo.name, &h.name);
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    }
    progress(&format!("{} hosts: namespaces created", topo.hosts.len()));
    let t = tag(&topo.name);
    for (k, l) in topo.links.iter().enumerate() {
        let (a, b) = (format!("mh{t}l{k}a"), format!("mh{t}l{k}b"));
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
        for (end, (dev, host)) in [(&a, &l.between[0]), (&b, &l.between[1])]
            .into_iter()
            .enumerate()
        {
            let ns = namespace(&topo.name, host);
            let inner = format!("l{k}");
            ip(&["link", "set", dev, "netns", &ns])?;
            ip(&["-n", &ns, "link", "set", dev, "name", &inner])?;
            let mtu = match (end, l.receive_mtu) {
                (1, Some(r)) => r,
                (0, Some(_)) => {
                    // veth passes GSO batches without the receiver's MTU
                    // check: make the sender segment first, so every
                    // datagram meets the narrow end like on a real link.
                    ip(&["-n", &ns, "link", "set", &inner, "gso_max_segs", "1"])?;
                    l.mtu
                }
                _ => l.mtu,
            };
            ip(&[
                "-n",
                &ns,
                "link",
                "set",
                &inner,
                "mtu",
                &mtu.to_string(),
                "up",
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", Topology::underlay(k, end)),
                "dev",
                &inner,
            ])?;
            if let Some(rate) = l.rate_mbit {
                run(Command::new("ip")
                    .args([
                        "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &inner, "root", "tbf",
                    ])
                    .args([
                        "rate",
                        &format!("{rate}mbit"),
                        "burst",
                        "64kb",
                        "latency",
                        "50ms",
                    ]))?;
            }
        }
        let rate = l
            .rate_mbit
            .map(|r| format!(", {r} Mbit/s"))
            .unwrap_or_default();
        progress(&format!(
            "link {} <-> {}: 198.18.{k}.0/24, MTU {}{rate}",
            l.between[0], l.between[1], l.mtu
        ));
    }

    // CA and certificates.
    let mut rng = crypto::os_rng();
    let mut ca_seed = [0u8; 32];
    rng.fill_bytes(&mut ca_seed);
    let t0 = now();
    let ca_cert = create_ca(
        &c,
        &format!("{}-ca", topo.name),
        &ca_seed,
        t0 - 60,
        t0 + 7 * 86_400,
    )
    .map_err(|e| e.to_string())?;
    files::write_public(&dir.join("ca.crt"), &ca_cert.to_armor()).map_err(|e| e.to_string())?;
    files::write_private_key(&dir.join("ca.key"), LABEL_CA_KEY, &ca_seed)
        .map_err(|e| e.to_string())?;
    let ca = TrustedCa::new(&c, ca_cert, t0).map_err(|e| e.to_string())?;
    for (i, h) in topo.hosts.iter().enumerate() {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let cert = ca
            .issue(
                &c,
                &ca_seed,
                NodeCertParams {
                    name: h.name.clone(),
                    addresses: vec![OverlayAddr::V4(Topology::overlay(i).octets(), 10)],
                    segments: h.segments.clone(),
                    static_public_key: c.x25519_public_key(&secret),
                    advert_key: proto::cert::advert_public_key(&c, &secret),
                    not_before: t0 - 60,
                    not_after: t0 + 7 * 86_400 - 60,
                },
            )
            .map_err(|e| e.to_string())?;
        files::write_public(&dir.join(format!("{}.crt", h.name)), &cert.to_armor())
            .map_err(|e| e.to_string())?;
        files::write_private_key(
            &dir.join(format!("{}.key", h.name)),
            LABEL_NODE_KEY,
            &secret,
        )
        .map_err(|e| e.to_string())?;
    }
    progress("CA and certificates issued (hybrid X25519 + ML-KEM-768 handshakes)");

    // Configurations and agents.
    for (i, h) in topo.hosts.iter().enumerate() {
        // The smallest MTU among the host's links: what its datagrams must fit.
        let underlay_mtu = topo
            .links
            .iter()
            .filter(|l| l.between.contains(&h.name))
            .map(|l| l.mtu)
            .min()
            .unwrap_or(1500);
        let mut cfg = String::new();
        let _ = write!(
            cfg,
            "[node]\ncertificate = \"{0}.crt\"\nprivate-key = \"{0}.key\"\nca-certificate = \"ca.crt\"\n\n\
             [listen]\naddress = \"0.0.0.0:51820\"\nunderlay-mtu = {2}\n\n[admin]\nsocket = \"{1}\"\n\n[log]\nlevel = \"info\"\n\n\
             [policy]\nstate-dir = \"{0}-state\"\n",
            h.name,
            dir.join(format!("{}.sock", h.name)).display(),
            underlay_mtu
        );
        if !h.relay {
            cfg.push_str("\n[routing]\nrelay = false\n");
        }
        for (j, p) in topo.hosts.iter().enumerate() {
            if j == i {
                continue;
            }
            let _ = write!(cfg, "\n[[peer]]\ncertificate = \"{}.crt\"\n", p.name);
            if let Some(ep) = topo.direct_endpoint(i, j) {
                let _ = writeln!(cfg, "endpoint = \"{ep}:51820\"");
            }
        }
        let path = dir.join(format!("{}.toml", h.name));
        std::fs::write(&path, cfg).map_err(|e| format!("{}: {e}", path.display()))?;
        start_agent(&topo.name, &h.name, meshd)?;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for h in &topo.hosts {
        let sock = dir.join(format!("{}.sock", h.name));
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join(format!("{}.log", h.name)))
                    .unwrap_or_default();
                return Err(format!("meshd on {} did not start:\n{log}", h.name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    progress(&format!(
        "meshd running on every host; state in {}",
        dir.display()
    ));
    Ok(())
}

/// Runs `cmd` inside `host`'s namespace, inheriting stdio; returns its exit code.
pub fn exec(topo: &str, host: &str, cmd: &[String]) -> Result<i32, String> {
    let ns = namespace(topo, host);
    let status = in_namespace(topo, host)
        .args(cmd)
        .env("MESHD_SOCKET", state_dir(topo).join(format!("{host}.sock")))
        .status()
        .map_err(|e| format!("ip netns exec {ns}: {e}"))?;
    Ok(status.code().unwrap_or(1))
}

/// CPUs hosts are pinned to: (namespace, CPU). See [`pin`].
static PINS: std::sync::Mutex<Vec<(String, usize)>> = std::sync::Mutex::new(Vec::new());

/// Pins every process this module starts in `host` of `topo` (meshd, and
/// whatever [`spawn`], [`output`] and [`exec`] run there) to `cpu`, with
/// `taskset`: a benchmark's two ends then do not share a CPU, as in
/// `scripts/bench-dataplane.sh`.
pub fn pin(topo: &str, host: &str, cpu: usize) {
    let ns = namespace(topo, host);
    let mut pins = PINS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pins.retain(|(n, _)| *n != ns);
    pins.push((ns, cpu));
}

/// `ip netns exec NS`, under `taskset -c CPU` when the host is pinned.
fn in_namespace(topo: &str, host: &str) -> Command {
    let ns = namespace(topo, host);
    let cpu = PINS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(n, _)| *n == ns)
        .map(|(_, c)| *c);
    let mut cmd = match cpu {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.args(["-c", &c.to_string(), "ip"]);
            t
        }
        None => Command::new("ip"),
    };
    cmd.args(["netns", "exec", &ns]);
    cmd
}

/// Starts meshd on `host` with the configuration `up` wrote; its log is
/// appended to `HOST.log` (one file for every start while the topology is
/// up) and its pid written to `HOST.pid` in the state directory.
pub fn start_agent(topo: &str, host: &str, meshd: &Path) -> Result<(), String> {
    let dir = state_dir(topo);
    let log = (std::fs::OpenOptions::new().create(true).append(true))
        .open(dir.join(format!("{host}.log")))
        .map_err(|e| e.to_string())?;
    let mut child = in_namespace(topo, host)
        .arg(meshd)
        .arg("--config")
        .arg(dir.join(format!("{host}.toml")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", meshd.display()))?;
    std::fs::write(dir.join(format!("{host}.pid")), child.id().to_string())
        .map_err(|e| e.to_string())?;
    // Reaped when it exits (stopped by `down`, or restarted by a check), so
    // no zombie outlives it.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Spawns `args` inside `host`'s namespace with stdout as given and stderr discarded.
pub fn spawn(
    topo: &str,
    host: &str,
    args: &[&str],
    stdout: Stdio,
) -> Result<std::process::Child, String> {
    in_namespace(topo, host)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("ip netns exec {}: {e}", namespace(topo, host)))
}

/// Runs `args` inside `host`'s namespace and collects its output.
pub fn output(topo: &str, host: &str, args: &[&str]) -> std::process::Output {
    in_namespace(topo, host)
        .args(args)
        .output()
        .unwrap_or_else(|e| std::process::Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: format!("ip netns exec: {e}").into_bytes(),
        })
}

/// Cuts `host`'s interface `iface` with nftables (table `inet mh_cut`): drops
/// what it sends (`outbound`) and/or receives (`inbound`). [`heal`] removes it.
pub fn cut(
    topo: &str,
    host: &str,
    iface: &str,
    outbound: bool,
    inbound: bool,
) -> Result<(), String> {
    let mut rules = String::from("table inet mh_cut {\n");
    if outbound {
        rules += &format!(
            "  chain out {{\n    type filter hook output priority 0;\n    oifname \"{iface}\" drop\n  }}\n"
        );
    }
    if inbound {
        rules += &format!(
            "  chain in {{\n    type filter hook input priority 0;\n    iifname \"{iface}\" drop\n  }}\n"
        );
    }
    rules += "}\n";
    let file = state_dir(topo).join(format!("cut-{host}.nft"));
    std::fs::write(&file, rules).map_err(|e| format!("{}: {e}", file.display()))?;
    run(Command::new("ip")
        .args(["netns", "exec", &namespace(topo, host), "nft", "-f"])
        .arg(&file))
}

/// Removes what [`cut`] installed on `host`.
pub fn heal(topo: &str, host: &str) -> Result<(), String> {
    run(Command::new("ip").args([
        "netns",
        "exec",
        &namespace(topo, host),
        "nft",
        "delete",
        "table",
        "inet",
        "mh_cut",
    ]))
}

/// A paced UDP stream (1 datagram per ms, `udp-pace`) from `from` to
/// `listen` on `to` (`udp-gaps`), whose receiver reports the longest silence
/// between arrivals: across a link cut, the outage an application sees.
/// Both processes are killed if it is dropped unfinished.
pub struct OutageStream {
    rx: Option<std::process::Child>,
    tx: Option<std::process::Child>,
}

impl OutageStream {
    /// Starts the receiver for `secs` seconds, then the sender (for one more).
    pub fn start(
        topo: &str,
        harness: &Path,
        from: &str,
        to: &str,
        listen: &str,
        secs: u32,
    ) -> Result<Self, String> {
        let exe = harness.to_string_lossy();
        let rx = spawn(
            topo,
            to,
            &[
                &exe,
                "udp-gaps",
                "--listen",
                listen,
                "--secs",
                &secs.to_string(),
            ],
            Stdio::piped(),
        )?;
        let mut stream = Self {
            rx: Some(rx),
            tx: None,
        };
        std::thread::sleep(Duration::from_millis(200));
        let pace_secs = (secs + 1).to_string();
        let tx = spawn(
            topo,
            from,
            &[&exe, "udp-pace", "--to", listen, "--secs", &pace_secs],
            Stdio::null(),
        )?;
        stream.tx = Some(tx);
        Ok(stream)
    }

    /// Waits for the receiver; the longest silence in milliseconds.
    pub fn finish(self) -> Result<f64, String> {
        self.finish_detail().map(|g| g.max_gap_ms)
    }

    /// Waits for the receiver; what it counted.
    pub fn finish_detail(mut self) -> Result<Gaps, String> {
        let rx = self.rx.take().ok_or("udp-gaps was not started")?;
        let out = rx.wait_with_output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let get = |k| field(&text, k).ok_or_else(|| format!("udp-gaps: {text}"));
        Ok(Gaps {
            received: get("received")? as u64,
            lost: get("lost")? as u64,
            max_gap_ms: get("max_gap_ms")?,
        })
    }
}

/// What an [`OutageStream`]'s receiver counted.
#[derive(Debug, Clone, Copy)]
pub struct Gaps {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams missing by sequence number.
    pub lost: u64,
    /// The longest silence between arrivals, ms.
    pub max_gap_ms: f64,
}

impl Drop for OutageStream {
    fn drop(&mut self) {
        for c in [self.rx.take(), self.tx.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The number after `key=` in tool output like `count=5 p50_us=12.3`.
pub fn field(text: &str, key: &str) -> Option<f64> {
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}="))?.parse().ok())
}
