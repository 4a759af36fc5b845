//! Certificate lifecycle without namespaces: what `meshd --check` (and so
//! meshd's start) makes of peer certificates that expired, went missing or
//! belong to another mesh.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::{Command, Output};

use meshd_tests::binary;

fn run(dir: &Path, exe: &str, args: &[&str]) -> Output {
    Command::new(binary(exe))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) {
    let o = run(dir, "meshctl", args);
    assert!(
        o.status.success(),
        "meshctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// One decommissioned host must not keep the others from starting: an
/// expired, a missing and a foreign peer certificate are each a warning
/// naming the entry, the file and the fix, the peer is skipped, and the
/// valid peer stays.
#[test]
fn bad_peer_certificates_are_skipped_with_a_warning_never_a_refusal_to_start() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(dir, &["ca", "init", "--name", "lifecycle"]);
    ok(
        dir,
        &["cert", "issue", "--name", "a", "--ip", "100.64.0.1/10"],
    );
    ok(
        dir,
        &[
            "cert",
            "issue",
            "--name",
            "b",
            "--ip",
            "100.64.0.2/10",
            "--ttl",
            "1s",
        ],
    );
    ok(
        dir,
        &["cert", "issue", "--name", "c", "--ip", "100.64.0.3/10"],
    );
    std::fs::create_dir(dir.join("other")).unwrap();
    ok(&dir.join("other"), &["ca", "init", "--name", "other"]);
    ok(
        &dir.join("other"),
        &["cert", "issue", "--name", "e", "--ip", "100.64.0.5/10"],
    );
    std::thread::sleep(std::time::Duration::from_millis(2100)); // b expires
    let cfg =
        "[node]\ncertificate = \"a.crt\"\nprivate-key = \"a.key\"\nca-certificate = \"ca.crt\"\n\
               [listen]\naddress = \"198.18.0.1:51820\"\n[policy]\nstate-dir = \"state\"\n\
               [[peer]]\ncertificate = \"b.crt\"\nendpoint = \"198.18.0.2:51820\"\n\
               [[peer]]\ncertificate = \"c.crt\"\nendpoint = \"198.18.0.3:51820\"\n\
               [[peer]]\ncertificate = \"gone.crt\"\n\
               [[peer]]\ncertificate = \"other/e.crt\"\n";
    std::fs::write(dir.join("a.toml"), cfg).unwrap();
    let o = run(dir, "meshd", &["--check", "--config", "a.toml"]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    assert!(out.contains("1 static peer(s)"), "{out}");
    let warning = |entry: &str, what: &str| {
        err.lines().any(|l| {
            l.contains("warning") && l.contains(entry) && l.contains(what) && l.contains("skipped")
        })
    };
    assert!(warning("peer[0].certificate", "b.crt"), "{err}");
    assert!(err.contains("expired"), "{err}");
    assert!(warning("peer[2].certificate", "gone.crt"), "{err}");
    assert!(warning("peer[3].certificate", "e.crt"), "{err}");
    assert!(!err.contains("peer[1]"), "{err}");
}

/// `meshd --version` names the commit it was built from.
#[test]
fn version_names_the_commit() {
    let o = Command::new(binary("meshd"))
        .arg("--version")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&o.stdout);
    let commit = v
        .split_once('(')
        .and_then(|(_, c)| c.split_once(')'))
        .map(|(c, _)| c.to_string())
        .unwrap_or_default();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{v}"
    );
}
