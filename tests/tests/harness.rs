//! mesh-harness up / exec / down with real namespaces (root), and cleanup
//! after a run that was interrupted.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;

use meshd_tests::{binary, netns_available};

fn netns_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect()
}

#[test]
fn up_exec_down_and_cleanup_after_an_interrupted_run() {
    if !netns_available() {
        return;
    }
    let name = format!("t{}", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(format!("mh-test-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let topo = dir.join("topo.toml");
    std::fs::write(
        &topo,
        format!(
            "name = \"{name}\"\n[[host]]\nname = \"x\"\n[[host]]\nname = \"y\"\n[[host]]\nname = \"z\"\n\
             [[link]]\nbetween = [\"x\", \"y\"]\nrate-mbit = 200\n[[link]]\nbetween = [\"y\", \"z\"]\nmtu = 1280\n"
        ),
    )
    .unwrap();
    let h = binary("mesh-harness");
    let harness = |args: &[&str]| Command::new(&h).args(args).output().unwrap();
    let prefix = format!("mh-{name}-");
    let _guard = Cleanup(name.clone(), h.clone());

    // An "interrupted" run: up, then pretend the harness died (no down).
    let o = harness(&["up", topo.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(netns_with(&prefix).len(), 3);
    // The next run refuses to tear someone's topology down: it says how.
    let o = harness(&["up", topo.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("already up") && err.contains(&format!("mesh-harness down {name}")),
        "{err}"
    );
    // A second copy under another name, whose name extends the first's:
    // `down` of one never touches the other.
    let other = format!("{name}-2");
    let _other_guard = Cleanup(other.clone(), h.clone());
    let o = harness(&["up", topo.to_str().unwrap(), "--name", &other]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(netns_with(&format!("mh-{other}-")).len(), 3);
    // With two up, a bare `down` names them and removes nothing.
    let o = harness(&["down"]);
    assert_eq!(
        netns_with(&prefix).len(),
        6,
        "mh-{name}- also prefixes mh-{other}-"
    );
    if !o.status.success() {
        assert!(String::from_utf8_lossy(&o.stderr).contains(&other));
    }
    let o = harness(&["down", &other]);
    assert!(o.status.success());
    assert!(netns_with(&format!("mh-{other}-")).is_empty());
    assert_eq!(
        netns_with(&prefix).len(),
        3,
        "down {other} removed {name}'s"
    );
    // Leftovers of the interrupted run: down, then up again.
    assert!(harness(&["down", &name]).status.success());
    let o = harness(&["up", topo.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("200 Mbit/s") && text.contains("MTU 1280"),
        "{text}"
    );
    assert_eq!(netns_with(&prefix).len(), 3);

    // Direct links work; the rate limit is installed.
    let o = harness(&[
        "exec",
        "--topology",
        &name,
        "x",
        "--",
        "ping",
        "-c",
        "2",
        "-W",
        "2",
        "100.64.0.2",
    ]);
    assert!(
        o.status.success(),
        "ping x -> y: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = harness(&[
        "exec",
        "--topology",
        &name,
        "x",
        "--",
        "tc",
        "qdisc",
        "show",
        "dev",
        "l0",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("tbf"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // exec passes the command's exit code through.
    let o = harness(&["exec", "--topology", &name, "y", "--", "false"]);
    assert_eq!(o.status.code(), Some(1));

    let o = harness(&["down", &name]);
    assert!(o.status.success());
    assert!(
        netns_with(&prefix).is_empty(),
        "namespaces left: {:?}",
        netns_with(&prefix)
    );
    assert!(!std::path::Path::new(&format!("/tmp/mesh-harness/{name}")).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_topology_is_refused_naming_line_and_fix() {
    let dir = std::env::temp_dir().join(format!("mh-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let topo = dir.join("bad.toml");
    std::fs::write(
        &topo,
        "name = \"bad\"\n[[host]]\nname = \"a\"\n[[link]]\nbetween = [\"a\", \"nope\"]\n",
    )
    .unwrap();
    let o = Command::new(binary("mesh-harness"))
        .args(["up", topo.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 5") && err.contains("unknown host 'nope'"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Tears the topology down even when an assertion fails.
struct Cleanup(String, std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(&self.1).args(["down", &self.0]).output();
    }
}

#[test]
fn demo_runs_end_to_end_and_leaves_nothing_behind() {
    if !netns_available() {
        return;
    }
    let name = format!("demo{}", std::process::id() % 10_000);
    let o = Command::new(binary("mesh-harness"))
        .args(["demo", "--bytes", "20000000", "--name", &name])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "demo failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for expected in [
        "session a ↔ b up",
        "session b ↔ d up",
        "cutting link a–b",
        "now via ",
        "TCP through the relay",
        "link repaired: back on the direct path",
        "summary (a → b)",
        "failover outage (a–b cut)",
        "5/5",
        "teardown: removed 4 namespace(s)",
    ] {
        assert!(out.contains(expected), "missing '{expected}' in:\n{out}");
    }
    // The outage the demo measured through the failover stays under 1 s.
    let outage: f64 = out
        .split("longest silence in a 1000 packet/s stream: ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no outage in:\n{out}"));
    assert!(outage < 1000.0, "failover outage {outage} ms:\n{out}");
    assert!(netns_with(&format!("mh-{name}-")).is_empty());
}

#[test]
fn check_measures_every_metric_and_reports_pass_and_fail() {
    if !netns_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mh-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Loose bounds the debug build meets, plus one that cannot be met.
    let loose = dir.join("loose.toml");
    std::fs::write(
        &loose,
        "[[target]]\nname = \"latency\"\nmetric = \"udp-rtt-p99-us\"\nmax = 10000000\n\
         [[target]]\nname = \"loaded\"\nmetric = \"udp-rtt-loaded-p99-us\"\nmax = 100000000\n\
         [[target]]\nname = \"throughput\"\nmetric = \"tcp-ratio\"\nmin = 0.0001\n\
         [[target]]\nname = \"efficiency\"\nmetric = \"wire-efficiency\"\nmin = 0.9\n\
         [[target]]\nname = \"reliability\"\nmetric = \"udp-delivered-ratio\"\nmin = 0.1\n\
         [[target]]\nname = \"first packet\"\nmetric = \"first-packet-ms\"\nmax = 10000\n\
         [[target]]\nname = \"failover\"\nmetric = \"failover-ms\"\nmax = 5000\n\
         [[target]]\nname = \"latency p99.9\"\nmetric = \"udp-rtt-p999-us\"\nmax = 10000000\n\
         [[target]]\nname = \"loaded p99.9\"\nmetric = \"udp-rtt-loaded-p999-us\"\nmax = 100000000\n\
         [[target]]\nname = \"long run\"\nmetric = \"longrun-delivered-ratio\"\nmin = 0.1\n\
         [[target]]\nname = \"median\"\nmetric = \"udp-rtt-p50-us\"\nmax = 10000000\n\
         [[target]]\nname = \"udp\"\nmetric = \"udp-ratio\"\nmin = 0.0001\n\
         [[target]]\nname = \"handshakes\"\nmetric = \"handshakes-per-sec\"\nmin = 1\n\
         [[target]]\nname = \"tcp\"\nmetric = \"tcp-gbps\"\nmin = 0.0001\n\
         [[target]]\nname = \"udp gbps\"\nmetric = \"udp-gbps\"\nmin = 0.0001\n\
         [[target]]\nname = \"added p50\"\nmetric = \"udp-rtt-added-p50-us\"\nmax = 10000000\n\
         [[target]]\nname = \"added p99\"\nmetric = \"udp-rtt-added-p99-us\"\nmax = 10000000\n\
         [[target]]\nname = \"loaded p50\"\nmetric = \"udp-rtt-loaded-p50-us\"\nmax = 100000000\n\
         [[target]]\nname = \"loaded added p50\"\nmetric = \"udp-rtt-loaded-added-p50-us\"\nmax = 100000000\n\
         [[target]]\nname = \"loaded ratio\"\nmetric = \"udp-rtt-loaded-p99-ratio\"\nmax = 1000000\n\
         [[target]]\nname = \"restart\"\nmetric = \"restart-outage-ms\"\nmax = 5000\n\
         [[target]]\nname = \"reload\"\nmetric = \"reload-outage-ms\"\nmax = 1000\n\
         [[target]]\nname = \"push\"\nmetric = \"policy-push-outage-ms\"\nmax = 1000\n\
         [[target]]\nname = \"rekey\"\nmetric = \"rekey-outage-ms\"\nmax = 1000\n\
         [[target]]\nname = \"renewal\"\nmetric = \"renewal-outage-ms\"\nmax = 1000\n\
         [[target]]\nname = \"yearly\"\nmetric = \"yearly-outage-s\"\nmax = 1000000000\n\
         [[target]]\nname = \"no false alerts\"\nmetric = \"ids-alerts\"\nmax = 0\n",
    )
    .unwrap();
    let json = dir.join("out.json");
    let h = binary("mesh-harness");
    let check_name = format!("ck{}", std::process::id() % 100_000);
    let o = Command::new(&h)
        .args([
            "check",
            "--name",
            &check_name,
            "--quick",
            "--targets",
            loose.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--svg",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 27);
    // The latency CDF (from HDR histograms), raw and through meshd.
    let svg = std::fs::read_to_string(dir.join("check-latency-cdf.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
    assert!(svg.contains("through meshd") && svg.contains("raw underlay"));
    // Throughput over time across the failover, with the cut marked; the
    // stream ran before and after the cut.
    let svg = std::fs::read_to_string(dir.join("check-failover-throughput.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
    assert!(svg.contains("a–b cut; UDP outage"), "{svg}");
    let points = svg
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .split_whitespace()
        .count();
    assert!(points > 20, "only {points} throughput samples");
    for r in rows {
        assert_eq!(r["pass"], true, "{r}");
        assert!(r["measured"].as_f64().is_some(), "{r}");
    }
    assert!(netns_with(&format!("mh-{check_name}-")).is_empty());
    assert!(netns_with(&format!("mh-{check_name}f-")).is_empty());
    // An unknown metric is refused before anything is built.
    std::fs::write(
        &loose,
        "[[target]]\nname = \"x\"\nmetric = \"speed\"\nmin = 1\n",
    )
    .unwrap();
    let o = Command::new(&h)
        .args(["check", "--targets", loose.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown metric 'speed'"));
    std::fs::remove_dir_all(&dir).unwrap();
}
