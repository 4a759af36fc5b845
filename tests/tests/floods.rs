//! Floods at a node by anyone who can send it UDP (root; CI runs as root):
//! an established TCP flow through the node keeps at least 90 % of its
//! throughput under each flood of the attack campaign and under its
//! initiations spoofed from 65,536 addresses, and none of its packets is
//! dropped as a replay, measured against the same
//! flood aimed at a closed port of the same host in the same run (so the
//! CPU the flooder and the kernel spend is not counted against meshd).
//!
//! h0 sends to h1 through the overlay as fast as TCP goes; h2, a host on
//! the same switch that runs no meshd, floods h1 (from its own address,
//! from h0's, or from 65,536 addresses in 198.19.0.0/16 that h1 routes back
//! through h2). h0 has CPU 0; h1 and the flooder share CPU 1, so what the
//! flood costs the target host (the flooder, the kernel's receive path)
//! lands on the target's CPU for the flood and for its control alike, and
//! only meshd's own work differs. Each flood alternates with its control
//! every second for 16 s (paced at 50,000 datagrams/s, bounded); the flow's
//! throughput in each flood second is compared with the control seconds
//! either side of it (so the host's drift cancels), and the median of those
//! ratios is the flood's figure. meshd and the flooder are the release
//! builds (`scripts/test.sh` builds them): a debug build's own per-datagram
//! work is tens of times what users run, and would be measured instead.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;

use meshd_tests::{binary, netns_available, release_binary, Mesh, MeshOptions};
use serde_json::Value;

/// Flood rate, datagrams per second (the campaign's was ~60,000 fragments/s).
const RATE: &str = "50000";
/// Seconds each flood runs, alternating with its control every second.
const SECS: u64 = 16;
/// The flow must keep this share of its throughput under each flood of
/// the attack campaign, and under the same initiations spoofed from 65,536
/// addresses (a harder variant the campaign did not run: no per-source
/// limit applies, so the total budget of MAC checks and cookie replies is
/// spent on it).
const KEPT: f64 = 0.90;
/// A flood whose flow kept less is measured once more before the test
/// fails: on two shared vCPUs one 16 s run in twenty or so reads a few
/// points low for no cause in meshd (87 % once in CI, 93–105 % otherwise);
/// a real cost misses both times.
const ATTEMPTS: usize = 2;
/// The start of each phase is left out (the switch settles).
const SETTLE_MS: u64 = 200;

/// Pins every thread of `pid` to `cpu`.
fn pin(pid: u32, cpu: u32) {
    let st = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
}

/// Runs `flood` (alternating with its control) on h2 while h0 sends to h1
/// through the overlay; the flow's rate in each phase, bytes per second,
/// control phases and flood phases in turn.
fn phase_rates(mesh: &Mesh, flood: &[String], series: &std::path::Path) -> Vec<(bool, f64)> {
    let harness = release_binary("mesh-harness");
    let harness = harness.to_str().unwrap();
    let sink = mesh.spawn(
        1,
        &[
            "taskset",
            "-c",
            "1",
            harness,
            "tcp-sink",
            "--listen",
            "100.64.0.2:5201",
            "--plain",
            "--timeout-secs",
            "10",
            "--series",
            series.to_str().unwrap(),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The flow outlasts the flood (the flooder builds its datagrams first).
    let secs = (SECS + 4).to_string();
    let source = mesh.spawn(
        0,
        &[
            "taskset",
            "-c",
            "0",
            harness,
            "tcp-source",
            "--connect",
            "100.64.0.2:5201",
            "--bytes",
            "1000000000000",
            "--plain",
            "--secs",
            &secs,
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut args = vec!["taskset", "-c", "1", harness, "flood"];
    args.extend(flood.iter().map(String::as_str));
    let secs = SECS.to_string();
    args.extend(["--secs", &secs, "--control-to", "198.18.0.2:9"]);
    let flooder = mesh.exec(2, &args);
    assert!(flooder.status.success(), "flood {flood:?}: {flooder:?}");
    let source = source.wait_with_output().unwrap();
    let sink = sink.wait_with_output().unwrap();
    assert!(
        source.status.success() && sink.status.success(),
        "{source:?} {sink:?}"
    );
    // Phase starts (Unix ms) and what each was; the last ends a phase later.
    let phases: Vec<(u64, bool)> = String::from_utf8_lossy(&flooder.stdout)
        .lines()
        .filter_map(|l| {
            let t = l
                .split("unix_ms=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((t, l.ends_with("target=flood")))
        })
        .collect();
    assert!(phases.len() >= SECS as usize, "{flooder:?}");
    let buckets: Vec<(u64, u64)> = std::fs::read_to_string(series)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (t, b) = l.split_once(' ')?;
            Some((t.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    phases
        .iter()
        .enumerate()
        .map(|(i, &(start, flood))| {
            let end = phases.get(i + 1).map_or(start + 1000, |p| p.0);
            let inside: Vec<u64> = buckets
                .iter()
                .filter(|(t, _)| *t >= start + SETTLE_MS && t + 50 <= end)
                .map(|(_, b)| *b)
                .collect();
            assert!(!inside.is_empty(), "no throughput samples in phase {i}");
            let rate = inside.iter().sum::<u64>() as f64 / (inside.len() as f64 * 0.05);
            (flood, rate)
        })
        .collect()
}

/// h1's drop counters by reason.
fn drops(mesh: &Mesh) -> std::collections::BTreeMap<String, u64> {
    let out = Command::new(binary("meshctl"))
        .args([
            "status",
            "--json",
            "--socket",
            mesh.hosts[1].socket.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(v["drops"].clone()).unwrap()
}

/// h1's UDP datagrams dropped by its kernel at full receive buffers.
fn receive_buffer_errors(mesh: &Mesh) -> u64 {
    let out = mesh.exec(1, &["cat", "/proc/net/snmp"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn an_established_flow_keeps_90_percent_of_its_throughput_under_each_flood() {
    if !netns_available() {
        return;
    }
    // The release build: the campaign's figures are the program users run.
    let mut mesh = Mesh::new(
        3,
        MeshOptions {
            release: true,
            ..MeshOptions::default()
        },
    );
    // One packet worker each (each host has one CPU), logs at info.
    for h in &mesh.hosts {
        let text = std::fs::read_to_string(&h.config).unwrap();
        let text = text
            .replace("level = \"debug\"", "level = \"info\"")
            .replace("[tun]\n", "[tun]\nqueues = 1\n");
        std::fs::write(&h.config, text).unwrap();
    }
    mesh.start(0);
    mesh.start(1);
    pin(mesh.pid(0).unwrap(), 0);
    pin(mesh.pid(1).unwrap(), 1);
    assert!(mesh.ping(0, 1, 3), "no session h0 → h1");
    let dir = mesh.dir.clone();
    let target_cert = dir.join("h1.crt").to_str().unwrap().to_string();
    let peers = Command::new(binary("meshctl"))
        .args([
            "peers",
            "--json",
            "--socket",
            mesh.hosts[1].socket.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let peers: Value = serde_json::from_slice(&peers.stdout).unwrap();
    let index = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "h0")
        .and_then(|p| p["receiver-index"].as_u64())
        .expect("h1's receiver index for h0");
    let h0 = mesh.hosts[0].underlay.to_string();
    // h1 answers the many-address flood (cookie replies) through h2, which
    // drops what is not its own.
    let route = mesh.exec(
        1,
        &["ip", "route", "add", "198.19.0.0/16", "via", "198.18.0.3"],
    );
    assert!(route.status.success(), "{route:?}");
    let kinds: Vec<(&str, Vec<String>)> = vec![
        ("initiations", vec!["--kind".into(), "initiations".into()]),
        (
            "initiations from 65,536 addresses",
            vec![
                "--kind".into(),
                "initiations".into(),
                "--from".into(),
                "198.19.0.0:40000".into(),
                "--spread".into(),
                "65536".into(),
            ],
        ),
        (
            "replayed initiations",
            vec![
                "--kind".into(),
                "replay".into(),
                "--identity".into(),
                dir.join("h2.crt").to_str().unwrap().into(),
                dir.join("h2.key").to_str().unwrap().into(),
            ],
        ),
        (
            "junk with a valid index",
            vec![
                "--kind".into(),
                "junk-index".into(),
                "--index".into(),
                index.to_string(),
            ],
        ),
        (
            "junk spoofed from h0",
            vec![
                "--kind".into(),
                "junk".into(),
                "--from".into(),
                format!("{h0}:51820"),
            ],
        ),
    ];
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for (k, (name, args)) in kinds.iter().enumerate() {
        for attempt in 1..=ATTEMPTS {
            let mut args = args.clone();
            args.extend([
                "--to".into(),
                "198.18.0.2:51820".into(),
                "--cert".into(),
                target_cert.clone(),
                "--rate".into(),
                RATE.into(),
            ]);
            let before = drops(&mesh);
            let kernel_before = receive_buffer_errors(&mesh);
            let phases = phase_rates(&mesh, &args, &dir.join(format!("series-{k}-{attempt}.txt")));
            let after = drops(&mesh);
            let kernel_drops = receive_buffer_errors(&mesh) - kernel_before;
            let dropped: u64 = after
                .iter()
                .map(|(k, v)| v - before.get(k).copied().unwrap_or(0))
                .sum();
            let delta: Vec<String> = after
                .iter()
                .filter_map(|(k, v)| {
                    let d = v - before.get(k).copied().unwrap_or(0);
                    (d > 0).then(|| format!("{k} {d}"))
                })
                .collect();
            // The flood reached meshd: most of its datagrams were dropped and
            // counted (its flood half is SECS / 2 seconds at RATE).
            let sent = SECS / 2 * RATE.parse::<u64>().unwrap();
            assert!(
                dropped >= sent * 9 / 10,
                "{name}: h1 dropped only {dropped} of about {sent}: {delta:?}; \
             its kernel dropped {kernel_drops} at full UDP receive buffers"
            );
            // Each flood phase against the control phases either side of it.
            let ratios: Vec<f64> = (0..phases.len())
                .filter(|&i| phases[i].0)
                .map(|i| {
                    let around: Vec<f64> = [i.checked_sub(1), Some(i + 1)]
                        .into_iter()
                        .flatten()
                        .filter_map(|j| phases.get(j).filter(|p| !p.0).map(|p| p.1))
                        .collect();
                    phases[i].1 / (around.iter().sum::<f64>() / around.len() as f64)
                })
                .collect();
            let ratio = median(ratios.clone());
            let gbit = |flood: bool| {
                phases
                    .iter()
                    .filter(|p| p.0 == flood)
                    .map(|p| format!("{:.2}", p.1 * 8.0 / 1e9))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            report.push(format!(
                "{name}: {:.0} % kept (Gbit/s, control {} / flood {}); h1 dropped {}",
                ratio * 100.0,
                gbit(false),
                gbit(true),
                delta.join(", ")
            ));
            eprintln!("{}", report.last().unwrap());
            let last = attempt == ATTEMPTS;
            if ratio < KEPT && last {
                failed.push(format!(
                    "{name} (needs {:.0} %, missed {ATTEMPTS} times)",
                    KEPT * 100.0
                ));
            }
            // No flood here carries a counter the flow's session used, so every
            // `replay` drop would be one of the flow's own packets.
            let replays = after.get("replay").copied().unwrap_or(0)
                - before.get("replay").copied().unwrap_or(0);
            if replays > 0 {
                failed.push(format!(
                    "{name}: {replays} of the flow's packets dropped as replays"
                ));
            }
            // The flow's session is still there after the flood.
            assert!(mesh.ping(0, 1, 2), "h0 → h1 broken after {name}");
            if ratio >= KEPT || last {
                break;
            }
            eprintln!("{name}: below {:.0} %, measured again", KEPT * 100.0);
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        failed.is_empty(),
        "the flow kept too little under {failed:?}:\n{}",
        report.join("\n")
    );
}
