//! Every file in `configs/` parses: node configurations, topologies, and the
//! systemd unit (which must have what systemd needs).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;

use types::config::NodeConfig;

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

#[test]
fn every_file_in_configs_parses() {
    let mut seen = 0;
    for entry in std::fs::read_dir(configs()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = if path.is_dir() {
            String::new()
        } else {
            std::fs::read_to_string(&path).unwrap()
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") if name == "targets.toml" => {
                let targets =
                    harness::targets::load_targets(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(targets.len() >= 5, "{name}");
                seen += 1;
            }
            Some("toml") => {
                let cfg =
                    NodeConfig::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(
                    !cfg.peers.is_empty(),
                    "{name}: examples list at least one peer"
                );
                seen += 1;
            }
            None if path.is_dir() && name == "topologies" => {
                for t in std::fs::read_dir(&path).unwrap() {
                    let t = t.unwrap().path();
                    assert_eq!(
                        t.extension().and_then(|e| e.to_str()),
                        Some("toml"),
                        "{}",
                        t.display()
                    );
                    let topo =
                        harness::topology::Topology::load(&t).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(
                        Some(topo.name.as_str()),
                        t.file_stem().and_then(|s| s.to_str()),
                        "{}: name should match the file name",
                        t.display()
                    );
                    seen += 1;
                }
            }
            Some("service") => {
                for key in [
                    "ExecStart=",
                    "ExecReload=/bin/kill -HUP $MAINPID",
                    "AmbientCapabilities=CAP_NET_ADMIN",
                    "User=meshd",
                    "SystemCallFilter=@system-service",
                    "[Install]",
                ] {
                    assert!(text.contains(key), "{name} lacks {key}");
                }
                // systemd's own rating of the sandbox (scripts/deps.sh
                // installs systemd-analyze): below 3 is "OK".
                let out = std::process::Command::new("systemd-analyze")
                    .args(["security", "--offline=true"])
                    .arg(&path)
                    .output()
                    .expect("systemd-analyze (Debian package systemd; bash scripts/deps.sh)");
                let text = String::from_utf8_lossy(&out.stdout);
                let level: f64 = text
                    .lines()
                    .find_map(|l| {
                        l.split_once("Overall exposure level for ")?
                            .1
                            .split_once(": ")?
                            .1
                            .split_whitespace()
                            .next()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or_else(|| panic!("no exposure level in: {text}"));
                assert!(level < 3.0, "{name}: exposure {level}:\n{text}");
                seen += 1;
            }
            _ => panic!(
                "{}: no test parses this kind of file; add one",
                path.display()
            ),
        }
    }
    assert!(seen >= 6, "{seen}");
}

#[test]
fn example_documents_every_default() {
    let text = std::fs::read_to_string(configs().join("node.example.toml")).unwrap();
    let example = NodeConfig::parse(&text).unwrap();
    let minimal = NodeConfig::parse(
        "[node]\ncertificate = \"/etc/meshd/node.crt\"\nprivate-key = \"/etc/meshd/node.key\"\nca-certificate = \"/etc/meshd/ca.crt\"\n[[peer]]\ncertificate = \"/etc/meshd/peers/beta.crt\"\nendpoint = \"198.18.0.2:51820\"\n",
    )
    .unwrap();
    assert_eq!(
        example, minimal,
        "node.example.toml must show the defaults as they are"
    );
}
