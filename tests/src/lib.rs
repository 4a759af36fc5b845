//! Helpers for cross-crate tests: real meshd agents in network namespaces.
//!
//! [`Mesh::new`] builds `n` hosts, each a network namespace with a veth link
//! to a bridge in a switch namespace (underlay 198.18.0.0/24), issues a CA and
//! a certificate per host (overlay 100.64.0.0/10), writes each host's
//! configuration, and [`Mesh::start`] runs `meshd` inside a host. Everything
//! is named `mshtest-<pid>-<n>-…` and removed on drop, also when a test
//! panics; namespaces left by a killed run (whose pid is gone) are removed by
//! the next run. Needs root: tests start with `if !netns_available() { return; }`,
//! which skips them, with a one-line reason, when they cannot run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the failure report

use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Path of a workspace binary built next to the running test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        p.exists(),
        "{} not found: build the workspace binaries first (cargo build --workspace --bins; `cargo test --workspace` does it)",
        p.display()
    );
    p
}

/// Path of a workspace binary in its release build, for tests that measure
/// what meshd costs (floods): those measure the program users run, not a
/// debug build tens of times slower. The test command builds it.
pub fn release_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/release/<name>
    let p = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .join("release")
        .join(name);
    assert!(
        p.exists(),
        "{} not found: build the release binaries first (cargo build --release --workspace --bins; scripts/test.sh does it)",
        p.display()
    );
    p
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// The variable `scripts/test.sh` sets so that a namespace test that cannot
/// run fails instead of skipping (CI runs as root and must run them all).
pub const REQUIRE_NETNS: &str = "MESHD_TEST_REQUIRE_NETNS";

/// Why this process cannot build network namespaces, if it cannot.
fn netns_unavailable() -> Option<String> {
    // The effective uid, from /proc (no libc call needed).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?");
    if euid != "0" {
        return Some(format!(
            "needs root to build network namespaces (euid {euid})"
        ));
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 ('ip') is missing: run scripts/deps.sh".into());
    }
    None
}

/// Whether a namespace test can run here. If not, the test should return at
/// once: this prints one line saying which test skipped and why (straight
/// to stderr, so it shows although the harness captures test output). With
/// [`REQUIRE_NETNS`] set (as `scripts/test.sh` does) a test that cannot run
/// fails instead.
#[must_use]
pub fn netns_available() -> bool {
    let Some(why) = netns_unavailable() else {
        return true;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("a namespace test")
        .to_string();
    assert!(
        std::env::var_os(REQUIRE_NETNS).is_none(),
        "{test}: {why}; {REQUIRE_NETNS} is set, so this test may not be skipped"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
    false
}

/// Panics unless the test can build namespaces (for helpers deep inside a
/// test that already checked [`netns_available`]).
pub fn require_root() {
    if let Some(why) = netns_unavailable() {
        panic!("{why}; start the test with `if !netns_available() {{ return; }}`");
    }
}

/// Removes namespaces of earlier runs whose process is gone.
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("mshtest-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// One host of a [`Mesh`].
pub struct Host {
    /// Certificate name, e.g. `h0`.
    pub name: String,
    /// Network namespace.
    pub ns: String,
    /// Underlay address (a private one, 198.19.N.2, behind a NAT).
    pub underlay: Ipv4Addr,
    /// The address others see its packets come from: the underlay
    /// address, or its NAT's public one.
    pub public: Ipv4Addr,
    /// The namespace of its NAT, if it is behind one.
    pub nat_ns: Option<String>,
    /// Overlay address.
    pub overlay: Ipv4Addr,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its admin socket.
    pub socket: PathBuf,
    /// Its underlay interface inside the namespace.
    pub dev: String,
    child: Option<Child>,
}

/// Options for [`Mesh::new`].
#[derive(Clone, Debug)]
pub struct MeshOptions {
    /// Underlay link MTU.
    pub underlay_mtu: u32,
    /// TUN MTU.
    pub tun_mtu: u32,
    /// Segments of host i (comma-separated); hosts beyond the list, or
    /// with an empty entry, are in segment `test`.
    pub segments: Vec<&'static str>,
    /// Run meshd's release build ([`release_binary`]).
    pub release: bool,
    /// Hosts whose underlay addresses every host is given as its
    /// `[discovery] bootstrap` list, with no `[[peer]]` at all (empty: every
    /// host lists every other as a `[[peer]]`).
    pub bootstrap: Vec<usize>,
    /// The NAT in front of host i, if any (hosts beyond the list have
    /// none).
    pub nat: Vec<Option<Nat>>,
    /// Hosts configured as stubs (`[routing] relay = false`).
    pub stubs: Vec<usize>,
    /// Every host also gets the IPv6 overlay address fd00::N+1/64.
    pub ipv6: bool,
}

/// A NAT in front of a host: a router namespace between the host (private
/// side 198.19.N.0/24) and the switch, masquerading with nftables and
/// letting in only what answers a mapping (conntrack), as a home router.
/// Like one, it also drops what arrives unsolicited for itself: a dropped
/// packet leaves no conntrack entry, where one answered with an ICMP error
/// would hold the tuple and make the NAT move the host's next mapping
/// towards that sender to another port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// `masquerade`: Linux keeps the source port, one mapping for every
    /// destination (endpoint-independent mapping): punchable.
    EndpointIndependent,
    /// `masquerade random`: a new random port per destination (symmetric).
    PerDestination,
}

impl Default for MeshOptions {
    fn default() -> Self {
        Self {
            underlay_mtu: 1500,
            tun_mtu: 1420,
            segments: Vec::new(),
            release: false,
            bootstrap: Vec::new(),
            stubs: Vec::new(),
            ipv6: false,
            nat: Vec::new(),
        }
    }
}

/// Hosts in namespaces with meshd configured (see the module docs).
pub struct Mesh {
    /// The hosts.
    pub hosts: Vec<Host>,
    /// Working directory (certificates, configs, logs).
    pub dir: PathBuf,
    prefix: String,
    switch: String,
    meshctl: PathBuf,
    meshd: PathBuf,
}

impl Mesh {
    /// Builds `n` hosts (at most 200).
    pub fn new(n: usize, opts: MeshOptions) -> Self {
        require_root();
        remove_leftovers();
        let k = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let prefix = format!("mshtest-{pid}-{k}");
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let switch = format!("{prefix}-sw");
        let mut mesh = Self {
            hosts: Vec::new(),
            dir,
            prefix,
            switch,
            meshctl: binary("meshctl"),
            meshd: if opts.release {
                release_binary("meshd")
            } else {
                binary("meshd")
            },
        };
        ip(&["netns", "add", &mesh.switch]);
        ip(&["-n", &mesh.switch, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &mesh.switch,
            "link",
            "set",
            "br0",
            "mtu",
            &opts.underlay_mtu.to_string(),
            "up",
        ]);
        mesh.meshctl(&["ca", "init", "--name", "test-mesh"]);
        // Short unique veth names in the root namespace (max 15 bytes).
        let tag = format!("{:x}", (pid as u64 * 64 + u64::from(k)) % 0xfffff);
        for i in 0..n {
            let name = format!("h{i}");
            let ns = format!("{}-{name}", mesh.prefix);
            let public = Ipv4Addr::new(198, 18, 0, 1 + i as u8);
            let overlay = Ipv4Addr::new(100, 64, 0, 1 + i as u8);
            let nat = opts.nat.get(i).copied().flatten();
            ip(&["netns", "add", &ns]);
            let nat_ns = nat.map(|_| format!("{}-nat{i}", mesh.prefix));
            // The switch-side link's far end: the host, or its NAT.
            let outside = nat_ns.as_deref().unwrap_or(&ns).to_string();
            if let Some(r) = &nat_ns {
                ip(&["netns", "add", r]);
            }
            let (a, b) = (format!("m{tag}h{i}"), format!("m{tag}s{i}"));
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &outside]);
            ip(&["link", "set", &b, "netns", &mesh.switch]);
            ip(&[
                "-n",
                &mesh.switch,
                "link",
                "set",
                &b,
                "master",
                "br0",
                "mtu",
                &opts.underlay_mtu.to_string(),
                "up",
            ]);
            let mtu = opts.underlay_mtu.to_string();
            ip(&["-n", &outside, "link", "set", &a, "name", "eth0"]);
            ip(&["-n", &outside, "link", "set", "eth0", "mtu", &mtu, "up"]);
            let public_net = format!("{public}/24");
            ip(&["-n", &outside, "addr", "add", &public_net, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let underlay = match (nat, &nat_ns) {
                (Some(kind), Some(r)) => mesh.nat(r, &ns, i, kind, &tag, &mtu),
                _ => public,
            };
            let segments = opts
                .segments
                .get(i)
                .filter(|s| !s.is_empty())
                .copied()
                .unwrap_or("test");
            let mut args = vec![
                "cert".to_string(),
                "issue".into(),
                "--name".into(),
                name.clone(),
                "--ip".into(),
                format!("{overlay}/10"),
            ];
            if opts.ipv6 {
                args.push("--ip".into());
                args.push(format!("fd00::{:x}/64", i + 1));
            }
            for seg in segments.split(',') {
                args.push("--segment".into());
                args.push(seg.to_string());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            mesh.meshctl(&args);
            let config = mesh.dir.join(format!("{name}.toml"));
            let socket = mesh.dir.join(format!("{name}.sock"));
            mesh.hosts.push(Host {
                name,
                ns,
                underlay,
                public,
                nat_ns,
                overlay,
                config,
                socket,
                dev: "eth0".into(),
                child: None,
            });
        }
        for i in 0..n {
            mesh.write_config(i, &opts);
        }
        mesh
    }

    /// Puts NAT namespace `r` between host namespace `ns` (private side
    /// 198.19.(i+1).0/24, the host at .2) and its `eth0` on the switch;
    /// the host's private address.
    fn nat(&self, r: &str, ns: &str, i: usize, kind: Nat, tag: &str, mtu: &str) -> Ipv4Addr {
        let net = 1 + i as u8;
        let (gw, host) = (
            Ipv4Addr::new(198, 19, net, 1),
            Ipv4Addr::new(198, 19, net, 2),
        );
        let (c, d) = (format!("m{tag}p{i}"), format!("m{tag}q{i}"));
        ip(&["link", "add", &c, "type", "veth", "peer", "name", &d]);
        ip(&["link", "set", &c, "netns", ns]);
        ip(&["link", "set", &d, "netns", r]);
        ip(&["-n", ns, "link", "set", &c, "name", "eth0"]);
        ip(&["-n", ns, "link", "set", "eth0", "mtu", mtu, "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{host}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", ns, "route", "add", "default", "via", &gw.to_string()]);
        ip(&["-n", r, "link", "set", &d, "name", "in0"]);
        ip(&["-n", r, "link", "set", "in0", "mtu", mtu, "up"]);
        ip(&["-n", r, "addr", "add", &format!("{gw}/24"), "dev", "in0"]);
        ip(&["-n", r, "link", "set", "lo", "up"]);
        run(Command::new("ip").args([
            "netns",
            "exec",
            r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]));
        let random = match kind {
            Nat::EndpointIndependent => "",
            Nat::PerDestination => " random",
        };
        let rules = format!(
            "table ip nat {{\n\
             \tchain post {{ type nat hook postrouting priority srcnat; oifname \"eth0\" masquerade{random}; }}\n\
             }}\n\
             table ip filter {{\n\
             \tchain forward_filter {{ type filter hook forward priority filter; policy drop;\n\
             \t\tiifname \"in0\" accept; ct state established,related accept; }}\n\
             \tchain input_filter {{ type filter hook input priority filter; policy drop;\n\
             \t\tiifname {{ \"in0\", \"lo\" }} accept; ct state established,related accept; }}\n\
             }}\n"
        );
        let file = self.dir.join(format!("nat{i}.nft"));
        std::fs::write(&file, rules).unwrap();
        run(Command::new("ip")
            .args(["netns", "exec", r, "nft", "-f"])
            .arg(&file));
        host
    }

    /// Gives the NAT in front of host `i` the public address 198.18.0.`last`
    /// in place of its first one: masquerade forgets every mapping of the
    /// old address, as a home router given a new address by its ISP.
    pub fn renumber_nat(&self, i: usize, last: u8) {
        let h = &self.hosts[i];
        let r = h.nat_ns.as_deref().expect("host behind a NAT");
        let new = format!("{}/24", Ipv4Addr::new(198, 18, 0, last));
        // Old first: deleting a primary address deletes the secondaries
        // of its subnet with it.
        let old = format!("{}/24", h.public);
        ip(&["-n", r, "addr", "del", &old, "dev", "eth0"]);
        ip(&["-n", r, "addr", "add", &new, "dev", "eth0"]);
    }

    /// Sends `bytes` of a seeded stream over TCP from host `from` to a
    /// sink on host `to`'s overlay address (`port`), and checks that what
    /// arrived is what was sent (length and BLAKE2s); `rate_mbit` paces it.
    pub fn tcp_transfer(
        &self,
        from: usize,
        to: usize,
        port: u16,
        bytes: u64,
        rate_mbit: Option<u64>,
    ) {
        let harness = binary("mesh-harness");
        let h = harness.to_str().unwrap();
        let at = format!("{}:{port}", self.hosts[to].overlay);
        let sink = self.spawn(
            to,
            &[h, "tcp-sink", "--listen", &at, "--timeout-secs", "60"],
        );
        std::thread::sleep(Duration::from_millis(300));
        let (n, rate) = (bytes.to_string(), rate_mbit.map(|r| r.to_string()));
        let mut args = vec![
            h,
            "tcp-source",
            "--connect",
            &at,
            "--bytes",
            &n,
            "--seed",
            "7",
        ];
        if let Some(r) = &rate {
            args.extend(["--rate-mbit", r]);
        }
        let src = self.exec(from, &args);
        let sink = sink.wait_with_output().unwrap();
        assert!(
            src.status.success() && sink.status.success(),
            "tcp h{from} -> h{to}: source: {}; sink: {}",
            String::from_utf8_lossy(&src.stderr),
            String::from_utf8_lossy(&sink.stderr)
        );
        let (sent, got) = (
            String::from_utf8_lossy(&src.stdout),
            String::from_utf8_lossy(&sink.stdout),
        );
        assert!(sent.starts_with(&format!("bytes={bytes} ")), "{sent}");
        assert_eq!(sent.trim(), got.trim(), "h{from} -> h{to}: content differs");
    }

    fn write_config(&self, i: usize, opts: &MeshOptions) {
        let h = &self.hosts[i];
        let mut text = format!(
            "[node]\ncertificate = \"{0}.crt\"\nprivate-key = \"{0}.key\"\nca-certificate = \"ca.crt\"\n\n\
             [listen]\naddress = \"{1}:51820\"\n\n[tun]\nname = \"meshd0\"\nmtu = {2}\n\n\
             [admin]\nsocket = \"{3}\"\n\n[metrics]\naddress = \"127.0.0.1:9720\"\n\n[log]\nlevel = \"debug\"\n\n\
             [policy]\nstate-dir = \"state-{0}\"\nbundles = []\n",
            h.name,
            h.underlay,
            opts.tun_mtu,
            h.socket.display()
        );
        if !opts.bootstrap.is_empty() {
            let list: Vec<String> = (opts.bootstrap.iter())
                .map(|&b| format!("\"{}:51820\"", self.hosts[b].public))
                .collect();
            text.push_str(&format!(
                "\n[discovery]\nbootstrap = [{}]\n",
                list.join(", ")
            ));
        }
        if opts.stubs.contains(&i) {
            text.push_str("\n[routing]\nrelay = false\n");
        }
        for (j, p) in self.hosts.iter().enumerate() {
            if j != i && opts.bootstrap.is_empty() {
                text.push_str(&format!(
                    "\n[[peer]]\ncertificate = \"{}.crt\"\nendpoint = \"{}:51820\"\n",
                    p.name, p.public
                ));
            }
        }
        std::fs::write(&h.config, text).unwrap();
    }

    /// Names bundle files (relative to the mesh directory) for every host
    /// to load at start. Every host saves the bundles in force in a state
    /// directory of its own (`state-hN`).
    pub fn configure_policy(&self, bundles: &[&str]) {
        for h in &self.hosts {
            let list: Vec<String> = bundles.iter().map(|b| format!("\"{b}\"")).collect();
            let text = std::fs::read_to_string(&h.config).unwrap();
            assert!(text.contains("bundles = []\n"), "{text}");
            let text = text.replacen(
                "bundles = []\n",
                &format!("bundles = [{}]\n", list.join(", ")),
                1,
            );
            std::fs::write(&h.config, text).unwrap();
        }
    }

    /// Runs meshctl in the mesh's directory.
    pub fn meshctl(&self, args: &[&str]) -> Output {
        run(Command::new(&self.meshctl)
            .current_dir(&self.dir)
            .args(args))
    }

    /// Starts meshd on host `i` and waits until its admin socket answers.
    pub fn start(&mut self, i: usize) {
        let h = &mut self.hosts[i];
        let log = std::fs::File::create(self.dir.join(format!("{}.log", h.name))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns])
            .arg(&self.meshd)
            .arg("--config")
            .arg(&h.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        h.child = Some(child);
        let socket = h.socket.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            let exited = self.hosts[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("meshd on h{i} exited with {status}:\n{}", self.log(i));
            }
            assert!(
                Instant::now() < deadline,
                "meshd on h{i} did not start:\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts every host.
    pub fn start_all(&mut self) {
        for i in 0..self.hosts.len() {
            self.start(i);
        }
    }

    /// Kills meshd on host `i` with SIGKILL.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.hosts[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM to meshd on host `i` and waits for it to exit.
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let mut c = self.hosts[i].child.take().expect("meshd running");
        // `ip netns exec` execs meshd, so the child's pid is meshd's.
        run(Command::new("kill").args(["-TERM", &c.id().to_string()]));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "meshd did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id of meshd on host `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.hosts[i].child.as_ref().map(Child::id)
    }

    /// Runs a command inside host `i`'s namespace.
    pub fn exec(&self, i: usize, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .args(args)
            .output()
            .unwrap()
    }

    /// Spawns a command inside host `i`'s namespace.
    pub fn spawn(&self, i: usize, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].ns])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A metric of host `i`'s meshd, from its Prometheus text (through
    /// the admin API).
    pub fn metric(&self, i: usize, name: &str) -> f64 {
        use std::io::{BufRead, BufReader, Write};
        let mut s = UnixStream::connect(&self.hosts[i].socket).unwrap();
        s.write_all(b"{\"command\":\"metrics\"}\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["text"]
            .as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    /// A paced UDP stream (one datagram per millisecond for `secs`) from
    /// host `from` to a receiver on host `to` (`port`, any address): the
    /// receiver and the sender, both running. [`Mesh::stream_gap`] reads the
    /// receiver's longest silence.
    pub fn udp_stream(&self, from: usize, to: usize, port: u16, secs: u64) -> (Child, Child) {
        let harness = binary("mesh-harness");
        let h = harness.to_str().unwrap();
        let (listen, secs) = (format!("0.0.0.0:{port}"), secs.to_string());
        let rx = self.spawn(to, &[h, "udp-gaps", "--listen", &listen, "--secs", &secs]);
        std::thread::sleep(Duration::from_millis(200));
        let dst = format!("{}:{port}", self.hosts[to].overlay);
        let tx = self.spawn(from, &[h, "udp-pace", "--to", &dst, "--secs", &secs]);
        (rx, tx)
    }

    /// Waits for a [`Mesh::udp_stream`] to end: its outage in ms, the longer
    /// of the receiver's longest silence between two datagrams and the
    /// datagrams that never arrived (one a millisecond: a stream that
    /// stopped for good shows here, not in the gaps).
    pub fn stream_gap(&self, (rx, tx): (Child, Child)) -> f64 {
        let sent = tx.wait_with_output().unwrap();
        let out = rx.wait_with_output().unwrap();
        let (sent, text) = (
            String::from_utf8_lossy(&sent.stdout).to_string(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        );
        let field = |text: &str, name: &str| {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}="))?.parse::<f64>().ok())
        };
        let received = field(&text, "received").unwrap_or(0.0);
        assert!(received > 1000.0, "the stream barely ran: {text}");
        let sent = field(&sent, "sent").unwrap_or_else(|| panic!("udp-pace: {sent}"));
        let gap = field(&text, "max_gap_ms").unwrap_or_else(|| panic!("udp-gaps: {text}"));
        gap.max(sent - received)
    }

    /// Gives host `i`'s namespace its own `/etc/resolv.conf` (`ip netns
    /// exec` mounts `/etc/netns/NS/resolv.conf` over it); removed on drop.
    pub fn set_resolver(&self, i: usize, text: &str) {
        let dir = Path::new("/etc/netns").join(&self.hosts[i].ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), text).unwrap();
    }

    /// `meshctl WHAT --json` against host `i`'s meshd, parsed.
    pub fn admin_json(&self, i: usize, what: &str) -> serde_json::Value {
        let sock = self.hosts[i].socket.to_str().unwrap();
        let out = self.meshctl(&[what, "--json", "--socket", sock]);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `meshctl ping NAME` from host `from` (meshd sends the echo itself,
    /// resolving the name from certificates): true when answered.
    pub fn ping_name(&self, from: usize, name: &str) -> bool {
        self.meshctl_ping(from, name).status.success()
    }

    fn meshctl_ping(&self, from: usize, name: &str) -> std::process::Output {
        let sock = self.hosts[from].socket.to_str().unwrap();
        Command::new(&self.meshctl)
            .args(["ping", name, "--count", "3", "--interval-ms", "100"])
            .args(["--socket", sock])
            .output()
            .unwrap()
    }

    /// As [`Mesh::ping_name`]; on failure, for the test's message: what
    /// meshctl printed, both ends' entries for each other, and every host's
    /// handshakes, drops, routes to both ends and links.
    pub fn ping_name_report(&self, from: usize, name: &str) -> Result<(), String> {
        let out = self.meshctl_ping(from, name);
        if out.status.success() {
            return Ok(());
        }
        let named = |what: &str, key: &str| {
            (self.admin_json(from, what).as_array())
                .and_then(|r| r.iter().find(|r| r[key] == name).cloned())
                .map_or("none".to_string(), |r| r.to_string())
        };
        let (route, peer) = (named("routes", "destination"), named("peers", "name"));
        let to = self.hosts.iter().position(|h| h.name == name);
        let from_name = &self.hosts[from].name;
        let counts = |host: usize| {
            let s = self.admin_json(host, "status");
            let routes = self.admin_json(host, "routes");
            let hop = |dst: &str| {
                (routes.as_array())
                    .and_then(|r| r.iter().find(|r| r["destination"] == dst))
                    .map_or("-".to_string(), |r| {
                        format!(
                            "{}({} us, {} s)",
                            r["next-hop"], r["metric-us"], r["age-secs"]
                        )
                    })
            };
            let peers = self.admin_json(host, "peers");
            let links: Vec<String> = (peers.as_array().into_iter().flatten())
                .filter(|p| !p["link"].is_null())
                .map(|p| format!("{}:{}", p["name"], p["link"]))
                .collect();
            format!(
                "{} handshakes, failed {}, drops {}, to {name} {}, to {from_name} {}, links {}",
                s["handshakes-completed"],
                s["handshake-failures"],
                s["drops"],
                hop(name),
                hop(from_name),
                links.join(" ")
            )
        };
        let everyone: String = (0..self.hosts.len())
            .map(|h| format!("\n  {}: {}", self.hosts[h].name, counts(h)))
            .collect();
        let back = to.map_or(String::new(), |t| {
            (self.admin_json(t, "peers").as_array())
                .and_then(|r| r.iter().find(|r| r["name"] == from_name.as_str()).cloned())
                .map_or("none".to_string(), |r| r.to_string())
        });
        Err(format!(
            "{}{} route: {route}\n peer: {peer}\n {name}'s peer {from_name}: {back}\n hosts:{everyone}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        ))
    }

    /// Pings `to`'s overlay address from host `from`; true if any reply came.
    pub fn ping(&self, from: usize, to: usize, count: u32) -> bool {
        let o = self.exec(
            from,
            &[
                "ping",
                "-c",
                &count.to_string(),
                "-W",
                "2",
                "-i",
                "0.2",
                &self.hosts[to].overlay.to_string(),
            ],
        );
        o.status.success()
    }

    /// meshd's log on host `i`.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.hosts[i].name)))
            .unwrap_or_default()
    }

    /// Namespace name prefix (for leftover checks).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.kill9(i);
        }
        for h in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&h.ns));
            if let Some(r) = &h.nat_ns {
                let _ = Command::new("ip").args(["netns", "del", r]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch])
            .status();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
