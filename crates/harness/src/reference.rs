//! A reference WireGuard beside meshd in `mesh-harness check`: boringtun
//! (a userspace WireGuard, `cargo install boringtun-cli`; the setup
//! installs it), one thread per host like meshd's one worker per pinned
//! CPU, keyed with wg(8) through its UAPI socket, on the same hosts and
//! underlay as meshd, overlay 100.65.0.0/24, so that throughput is held
//! against another encrypting tunnel measured in the same run, not only
//! against a veth.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::netns::{self, state_dir};

/// The reference tunnel's overlay address on host `n` (1: a, 2: b).
pub fn overlay(n: u8) -> String {
    format!("100.65.0.{n}")
}

/// Where boringtun-cli is: on PATH or in ~/.cargo/bin.
pub fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("boringtun-cli"))
            .find(|f| f.is_file())
    });
    on_path.or_else(|| {
        let f = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/boringtun-cli");
        f.is_file().then_some(f)
    })
}

/// boringtun running on hosts a and b of a topology; stopped on drop.
pub struct Reference {
    children: Vec<Child>,
    sockets: Vec<PathBuf>,
}

impl Drop for Reference {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
    }
}

fn run(topo: &str, host: &str, args: &[&str]) -> Result<String, String> {
    let out = netns::output(topo, host, args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{args:?} on {host}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Starts boringtun on a (198.18.0.1) and b (198.18.0.2) of `topo`, peered
/// over UDP 51821, and waits until a pings b through it.
pub fn start(topo: &str, boringtun: &Path) -> Result<Reference, String> {
    let dir = state_dir(topo);
    let mut r = Reference {
        children: Vec::new(),
        sockets: Vec::new(),
    };
    // Interface names are global to the UAPI socket directory, not to the
    // namespace: this process's id keeps two runs apart.
    let ifname = |h: &str| format!("bt{}{h}", std::process::id() % 100_000);
    let mut public = Vec::new();
    for h in ["a", "b"] {
        let key = dir.join(format!("{h}.wgkey"));
        let secret = run(topo, h, &["wg", "genkey"])?;
        std::fs::write(&key, format!("{secret}\n"))
            .map_err(|e| format!("{}: {e}", key.display()))?;
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("wg pubkey < '{}'", key.display()))
            .output()
            .map_err(|e| format!("wg pubkey: {e}"))?;
        public.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    for (n, h) in [(1u8, "a"), (2u8, "b")] {
        let name = ifname(h);
        let log = dir.join(format!("{h}.boringtun.log"));
        let child = netns::spawn(
            topo,
            h,
            &[
                "env",
                "WG_SUDO=true",
                boringtun.to_str().unwrap_or_default(),
                "--foreground",
                "--threads",
                "1",
                "--log",
                log.to_str().unwrap_or_default(),
                &name,
            ],
            Stdio::null(),
        )?;
        r.children.push(child);
        let sock = PathBuf::from(format!("/var/run/wireguard/{name}.sock"));
        r.sockets.push(sock.clone());
        let t = Instant::now();
        while !sock.exists() {
            if t.elapsed() > Duration::from_secs(5) {
                return Err(format!(
                    "boringtun on {h}: no UAPI socket {}",
                    sock.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let other = 3 - n;
        let key = dir.join(format!("{h}.wgkey"));
        run(
            topo,
            h,
            &[
                "wg",
                "set",
                &name,
                "private-key",
                key.to_str().unwrap_or_default(),
                "listen-port",
                "51821",
                "peer",
                &public[usize::from(other - 1)],
                "endpoint",
                &format!("198.18.0.{other}:51821"),
                "allowed-ips",
                &format!("{}/32", overlay(other)),
            ],
        )?;
        run(
            topo,
            h,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", overlay(n)),
                "dev",
                &name,
            ],
        )?;
        run(topo, h, &["ip", "link", "set", &name, "mtu", "1420", "up"])?;
    }
    let t = Instant::now();
    while !netns::output(topo, "a", &["ping", "-c", "1", "-W", "1", &overlay(2)])
        .status
        .success()
    {
        if t.elapsed() > Duration::from_secs(10) {
            return Err("boringtun: a cannot ping b through it".into());
        }
    }
    Ok(r)
}
