//! The Debian package (root; CI runs as root): built by
//! `scripts/package-deb.sh`, installed with dpkg into a clean root, and the
//! installed meshd checks the installed example configuration.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;

use meshd_tests::{binary, netns_available};

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn the_package_installs_into_a_clean_root_and_its_meshd_checks_the_example() {
    if !netns_available() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The release build beside the debug binaries the tests use.
    let release = binary("meshd")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("release");
    let out = run(Command::new("bash")
        .arg(repo.join("scripts/package-deb.sh"))
        .env("MESHD_PACKAGE_FROM", &release)
        .current_dir(&repo));
    let deb = repo.join(out.lines().last().unwrap().trim());
    let info = run(Command::new("dpkg-deb").arg("-f").arg(&deb));
    assert!(
        info.contains("Package: meshd") && info.contains("Depends: libc6"),
        "{info}"
    );

    // A clean root: an empty dpkg database, nothing else.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("var/lib/dpkg/info")).unwrap();
    std::fs::create_dir_all(r.join("var/lib/dpkg/updates")).unwrap();
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    let root_arg = format!("--root={}", r.display());
    run(Command::new("dpkg")
        .args([
            &root_arg,
            "--force-script-chrootless",
            "--force-depends",
            "-i",
        ])
        .arg(&deb));
    let status = run(Command::new("dpkg").args([&root_arg, "-s", "meshd"]));
    assert!(status.contains("Status: install ok installed"), "{status}");
    for f in [
        "usr/bin/meshd",
        "usr/bin/meshctl",
        "etc/meshd/node.example.toml",
        "usr/share/doc/meshd/operations.md",
        "usr/share/doc/meshd/copyright",
        "usr/share/man/man1/meshd.1.gz",
        "usr/share/man/man1/meshctl.1.gz",
        "usr/share/man/man1/meshctl-reload.1.gz",
        "usr/share/bash-completion/completions/meshctl",
        "usr/share/zsh/vendor-completions/_meshctl",
    ] {
        assert!(r.join(f).exists(), "{f} not installed");
    }
    let unit = std::fs::read_to_string(r.join("lib/systemd/system/meshd.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/meshd --config /etc/meshd/node.toml"),
        "{unit}"
    );
    assert!(
        unit.contains("file:///usr/share/doc/meshd/operations.md"),
        "{unit}"
    );
    // Stripped of debug info, and naming its commit.
    let sections = run(Command::new("readelf")
        .arg("-S")
        .arg(r.join("usr/bin/meshd")));
    assert!(
        !sections.contains(".debug_info"),
        "meshd keeps its debug info"
    );
    let version = run(Command::new(r.join("usr/bin/meshd")).arg("--version"));
    assert!(
        version.contains('(') && !version.contains("unknown"),
        "{version}"
    );

    // The installed meshd checks the installed example, given the files it
    // names (made with the installed meshctl).
    let etc = tempfile::tempdir().unwrap();
    let e = etc.path();
    let meshctl = r.join("usr/bin/meshctl");
    run(Command::new(&meshctl)
        .current_dir(e)
        .args(["ca", "init", "--name", "pkg"]));
    for (name, ip, out) in [
        ("alpha", "100.64.0.1/10", "node"),
        ("beta", "100.64.0.2/10", "peers/beta"),
    ] {
        run(Command::new(&meshctl).current_dir(e).args([
            "cert",
            "issue",
            "--name",
            name,
            "--ip",
            ip,
            "--out-crt",
            &format!("{out}.crt"),
            "--out-key",
            &format!("{out}.key"),
        ]));
    }
    let example = std::fs::read_to_string(r.join("etc/meshd/node.example.toml")).unwrap();
    let d = e.display().to_string();
    let config = example
        .replace("/etc/meshd/", &format!("{d}/"))
        .replace("/var/lib/meshd", &format!("{d}/state"))
        .replace("/run/meshd/meshd.sock", &format!("{d}/meshd.sock"));
    std::fs::write(e.join("node.toml"), config).unwrap();
    let checked = run(Command::new(r.join("usr/bin/meshd"))
        .args(["--check", "--config"])
        .arg(e.join("node.toml")));
    assert!(
        checked.contains("configuration valid: node 'alpha', 1 static peer(s)"),
        "{checked}"
    );
}
