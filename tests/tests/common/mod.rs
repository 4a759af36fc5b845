//! Shared by the namespace tests that use `harness::netns` topologies: the
//! topology brought up from `configs/topologies/`, its admin sockets, and a
//! guard that removes it on drop (also on failure).
#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use harness::netns::{self, state_dir};
use harness::topology::Topology;
use meshd_tests::{binary, require_root};
use types::admin::{AdminRequest, AdminResponse, PeerView};

/// A TCP transfer between two hosts of a topology (`Topo::tcp_transfer`).
pub struct Transfer {
    sink: Child,
    source: Child,
    bytes: u64,
}

impl Transfer {
    /// Waits for both ends; panics with `what` unless every byte arrived
    /// and the content (BLAKE2s) matches.
    pub fn check(self, what: &str) {
        let sent = String::from_utf8_lossy(&self.source.wait_with_output().unwrap().stdout)
            .trim()
            .to_string();
        let got = String::from_utf8_lossy(&self.sink.wait_with_output().unwrap().stdout)
            .trim()
            .to_string();
        assert!(
            sent.starts_with(&format!("bytes={} ", self.bytes)) && sent == got,
            "{what}: sent '{sent}', received '{got}'"
        );
    }
}

/// Removes the topology on drop.
pub struct Down(pub String);

impl Drop for Down {
    fn drop(&mut self) {
        netns::down(&self.0);
    }
}

/// A running topology.
pub struct Topo {
    pub name: String,
    pub harness: PathBuf,
}

/// Brings up `configs/topologies/FILE.toml` under a name unique to this
/// process (`PREFIX` + pid).
pub fn up(file: &str, prefix: &str) -> (Topo, Down) {
    require_root();
    let name = format!("{prefix}{}", std::process::id() % 100_000);
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../configs/topologies/{file}.toml")),
    )
    .unwrap()
    .replace(&format!("name = \"{file}\""), &format!("name = \"{name}\""));
    let topo = Topology::parse(&text).unwrap();
    let guard = Down(name.clone());
    netns::up(&topo, &binary("meshd"), &mut |_| {}).unwrap();
    (
        Topo {
            name,
            harness: binary("mesh-harness"),
        },
        guard,
    )
}

impl Topo {
    pub fn ask(&self, host: &str, req: &AdminRequest) -> AdminResponse {
        let sock = state_dir(&self.name).join(format!("{host}.sock"));
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut line = serde_json::to_string(req).unwrap();
        line.push('\n');
        s.write_all(line.as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap()
    }

    pub fn try_peer(&self, host: &str, peer: &str) -> Option<PeerView> {
        let AdminResponse::Peers { peers } = self.ask(host, &AdminRequest::Peers) else {
            panic!("not a peer list");
        };
        peers.into_iter().find(|p| p.name == peer)
    }

    pub fn peer(&self, host: &str, peer: &str) -> PeerView {
        self.try_peer(host, peer)
            .unwrap_or_else(|| panic!("{host} has no peer named {peer}"))
    }

    pub fn metric(&self, host: &str, name: &str) -> f64 {
        let AdminResponse::Metrics { text } = self.ask(host, &AdminRequest::Metrics) else {
            panic!("not metrics");
        };
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from metrics"))
    }

    pub fn wait_for(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
        let t = Instant::now();
        while t.elapsed() < limit {
            if f() {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Say what the agents saw: the logs are removed with the topology.
        let dir = state_dir(&self.name);
        let mut logs = String::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                logs.push_str(&format!("\n--- {} (last 40 lines)\n", p.display()));
                for l in tail.iter().rev() {
                    logs.push_str(l);
                    logs.push('\n');
                }
            }
        }
        panic!("{what}: not within {limit:?}{logs}");
    }

    /// Starts a TCP transfer of `bytes` from host `from` to `listen` (an
    /// overlay address and port of host `to`), each end giving up after 20 s
    /// without progress; `source_args` add to tcp-source's (a rate limit).
    pub fn tcp_transfer(
        &self,
        from: &str,
        to: &str,
        listen: &str,
        bytes: u64,
        source_args: &[&str],
    ) -> Transfer {
        let sink = self.spawn(
            to,
            &["tcp-sink", "--listen", listen, "--timeout-secs", "20"],
        );
        std::thread::sleep(Duration::from_millis(200));
        let bytes_arg = bytes.to_string();
        let mut args = vec![
            "tcp-source",
            "--connect",
            listen,
            "--bytes",
            &bytes_arg,
            "--timeout-secs",
            "20",
        ];
        args.extend_from_slice(source_args);
        let source = self.spawn(from, &args);
        Transfer {
            sink,
            source,
            bytes,
        }
    }

    /// Waits for sessions from each `(host, peers)` and for `routes_at` to
    /// hold `routes` routes (probes measured, adverts exchanged).
    pub fn wait_mesh(&self, sessions: &[(&str, &[&str])], routes_at: &str, routes: usize) {
        for (x, ys) in sessions {
            for y in *ys {
                self.wait_for(
                    &format!("session {x}–{y}"),
                    Duration::from_secs(10),
                    || self.try_peer(x, y).is_some_and(|p| p.session),
                );
            }
        }
        self.wait_for(
            &format!("{routes} routes at {routes_at}"),
            Duration::from_secs(5),
            || {
                matches!(self.ask(routes_at, &AdminRequest::Routes),
                    AdminResponse::Routes { routes: r } if r.len() == routes)
            },
        );
    }

    /// Drops everything on `host`'s a–b interface (l0), in the directions given.
    pub fn cut(&self, host: &str, output: bool, input: bool) {
        netns::cut(&self.name, host, "l0", output, input).unwrap();
    }

    pub fn heal(&self, host: &str) {
        netns::heal(&self.name, host).unwrap();
    }

    pub fn spawn(&self, host: &str, args: &[&str]) -> Child {
        let mut full = vec![self.harness.to_str().unwrap()];
        full.extend_from_slice(args);
        netns::spawn(&self.name, host, &full, Stdio::piped()).unwrap()
    }

    /// A paced UDP stream `from` → `to` (overlay) for `secs`; returns the
    /// receiver, whose output ends with `max_gap_ms=`.
    pub fn udp_stream(&self, from: &str, to: &str, to_ip: &str, port: u16, secs: u32) -> Child {
        let listen = format!("{to_ip}:{port}");
        let rx = self.spawn(
            to,
            &["udp-gaps", "--listen", &listen, "--secs", &secs.to_string()],
        );
        std::thread::sleep(Duration::from_millis(200));
        let tx = self.spawn(
            from,
            &[
                "udp-pace",
                "--to",
                &listen,
                "--interval-us",
                "1000",
                "--secs",
                &(secs + 1).to_string(),
            ],
        );
        // The sender ends on its own; reap it in the background.
        std::thread::spawn(move || {
            let _ = tx.wait_with_output();
        });
        rx
    }
}
