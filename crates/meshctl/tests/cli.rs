//! meshctl end to end: the real binary in a temporary directory.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crypto::RealCrypto;
use proto::cert::{create_ca, NodeCertParams, OverlayAddr, TrustedCa};
use types::CertificateView;

fn meshctl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run meshctl")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = meshctl(dir, args);
    assert!(
        o.status.success(),
        "meshctl {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let o = meshctl(dir, args);
    assert!(!o.status.success(), "meshctl {args:?} should fail");
    String::from_utf8(o.stderr).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn setup() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    ok(d.path(), &["ca", "init", "--name", "test-ca"]);
    d
}

#[test]
fn ca_init_writes_certificate_and_private_key_0600() {
    let d = tempfile::tempdir().unwrap();
    let out = ok(
        d.path(),
        &["ca", "init", "--name", "acme-mesh", "--ttl", "30d"],
    );
    assert!(out.contains("created CA 'acme-mesh'"));
    assert_eq!(mode(&d.path().join("ca.key")), 0o600);
    assert_eq!(mode(&d.path().join("ca.crt")), 0o644);
    let key = fs::read_to_string(d.path().join("ca.key")).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(
        !out.contains(&key_body),
        "private key must never be printed"
    );
    // Refuses to overwrite.
    let e = fails(d.path(), &["ca", "init", "--name", "again"]);
    assert!(e.contains("ca.crt") && e.contains("already exists"), "{e}");
}

#[test]
fn cert_issue_and_show_human_and_json() {
    let d = setup();
    let out = ok(
        d.path(),
        &[
            "cert",
            "issue",
            "--name",
            "web-1",
            "--ip",
            "100.64.0.10/10",
            "--ip",
            "fd00::10/64",
            "--segment",
            "web",
            "--segment",
            "prod",
            "--ttl",
            "90d",
        ],
    );
    assert!(out.contains("issued certificate for 'web-1'"), "{out}");
    assert_eq!(mode(&d.path().join("web-1.key")), 0o600);
    let key = fs::read_to_string(d.path().join("web-1.key")).unwrap();
    assert!(key.starts_with("-----BEGIN MESHD NODE PRIVATE KEY-----"));
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!out.contains(&key_body));

    let human = ok(d.path(), &["cert", "show", "web-1.crt", "--ca", "ca.crt"]);
    assert!(human.contains("node certificate 'web-1'"), "{human}");
    assert!(human.contains("100.64.0.10/10, fd00::10/64"));
    assert!(human.contains("web, prod"));
    assert!(human.contains("verification valid"));

    let json = ok(d.path(), &["cert", "show", "web-1.crt", "--json"]);
    let v: CertificateView = serde_json::from_str(&json).unwrap();
    assert_eq!(v.kind, "node");
    assert_eq!(v.name, "web-1");
    assert_eq!(v.addresses, vec!["100.64.0.10/10", "fd00::10/64"]);
    assert_eq!(v.segments, vec!["web", "prod"]);
    assert_eq!(v.not_after - v.not_before, 90 * 86_400 + 60);
    assert!(v.verification.is_none());
    let ca: CertificateView =
        serde_json::from_str(&ok(d.path(), &["cert", "show", "ca.crt", "--json"])).unwrap();
    assert_eq!(v.issuer, ca.fingerprint);
}

#[test]
fn a_second_certificate_for_a_name_or_address_needs_force_until_the_first_is_revoked() {
    let d = setup();
    let p = d.path();
    ok(
        p,
        &["cert", "issue", "--name", "db-1", "--ip", "100.64.0.20/10"],
    );
    let inventory = fs::read_to_string(p.join("ca.issued.jsonl")).unwrap();
    assert!(
        inventory.contains("\"name\":\"db-1\"") && inventory.contains("100.64.0.20"),
        "{inventory}"
    );
    // Another node with the same address, or the same name, is refused.
    let e = fails(
        p,
        &["cert", "issue", "--name", "db-2", "--ip", "100.64.0.20/10"],
    );
    assert!(
        e.contains("--ip 100.64.0.20")
            && e.contains("'db-1'")
            && e.contains("--force")
            && e.contains("ca.issued.jsonl"),
        "{e}"
    );
    let e = fails(
        p,
        &[
            "cert",
            "issue",
            "--name",
            "db-1",
            "--ip",
            "100.64.0.21/10",
            "--out-crt",
            "x.crt",
            "--out-key",
            "x.key",
        ],
    );
    assert!(e.contains("--name db-1"), "{e}");
    // --force issues it anyway.
    ok(
        p,
        &[
            "cert",
            "issue",
            "--name",
            "db-2",
            "--ip",
            "100.64.0.20/10",
            "--force",
        ],
    );
    // Revoking db-1 (offline) frees its name and address.
    ok(
        p,
        &[
            "revoke",
            "--cert",
            "db-1.crt",
            "--offline",
            "--out",
            "rev.bundle",
            "--version",
            "1",
        ],
    );
    let inventory = fs::read_to_string(p.join("ca.issued.jsonl")).unwrap();
    assert!(inventory.contains("\"revoked\":true"), "{inventory}");
    ok(
        p,
        &[
            "cert",
            "issue",
            "--name",
            "db-1",
            "--ip",
            "100.64.0.30/10",
            "--out-crt",
            "db-1b.crt",
            "--out-key",
            "db-1b.key",
        ],
    );
}

#[test]
fn absurd_ttls_and_bundle_versions_are_refused_not_wrapped() {
    let d = setup();
    let p = d.path();
    // A TTL past the end of time is clamped to the CA's validity.
    let out = ok(
        p,
        &[
            "cert",
            "issue",
            "--name",
            "long",
            "--ip",
            "100.64.0.40/10",
            "--ttl",
            "18446744073709551615s",
        ],
    );
    assert!(
        out.contains("shortened to the CA's end of validity"),
        "{out}"
    );
    let show = ok(p, &["cert", "show", "long.crt", "--ca", "ca.crt"]);
    assert!(show.contains("verification valid"), "{show}");
    fs::write(
        p.join("p.toml"),
        "[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n",
    )
    .unwrap();
    let e = fails(
        p,
        &[
            "policy",
            "sign",
            "p.toml",
            "--version",
            "0",
            "--out",
            "p.bundle",
        ],
    );
    assert!(
        e.contains("--version 0") && e.contains("use 1 or more"),
        "{e}"
    );
}

#[test]
fn cert_issue_for_an_existing_public_key() {
    let d = setup();
    ok(
        d.path(),
        &[
            "key",
            "generate",
            "--out",
            "db.key",
            "--public-out",
            "db.pub",
        ],
    );
    assert_eq!(mode(&d.path().join("db.key")), 0o600);
    // Into directories that do not exist yet: made, 0700 for the key's.
    ok(
        d.path(),
        &[
            "key",
            "generate",
            "--out",
            "etc/meshd/node.key",
            "--public-out",
            "out/db2.pub",
        ],
    );
    // (The umask may take bits away, never add them.)
    assert_eq!(mode(&d.path().join("etc/meshd")) & 0o077, 0);
    assert_eq!(mode(&d.path().join("etc/meshd/node.key")), 0o600);
    assert!(d.path().join("out/db2.pub").exists());
    let out = ok(
        d.path(),
        &[
            "cert",
            "issue",
            "--name",
            "db",
            "--ip",
            "100.64.0.20/10",
            "--public-key",
            "db.pub",
            "--json",
        ],
    );
    assert!(out.contains("\"certificate\": \"db.crt\""));
    assert!(!out.contains("private-key"));
    ok(d.path(), &["cert", "show", "db.crt", "--ca", "ca.crt"]);
}

#[test]
fn bad_arguments_name_the_flag_and_fix() {
    let d = setup();
    let e = fails(
        d.path(),
        &["cert", "issue", "--name", "x", "--ip", "100.64.0.1"],
    );
    assert!(e.contains("--ip") && e.contains("ADDRESS/PREFIX"), "{e}");
    let e = fails(
        d.path(),
        &[
            "cert",
            "issue",
            "--name",
            "bad name",
            "--ip",
            "100.64.0.1/10",
        ],
    );
    assert!(e.contains("name") && e.contains("A-Z"), "{e}");
    let e = fails(
        d.path(),
        &[
            "cert",
            "issue",
            "--name",
            "x",
            "--ip",
            "100.64.0.1/10",
            "--ttl",
            "3y",
        ],
    );
    assert!(e.contains("--ttl") && e.contains("unknown unit"), "{e}");
    let e = fails(
        d.path(),
        &[
            "cert",
            "issue",
            "--name",
            "x",
            "--ip",
            "100.64.0.1/10",
            "--ca-crt",
            "missing.crt",
        ],
    );
    assert!(e.contains("missing.crt"), "{e}");
}

#[test]
fn world_readable_ca_key_is_refused_with_the_fix() {
    let d = setup();
    fs::set_permissions(d.path().join("ca.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let e = fails(
        d.path(),
        &["cert", "issue", "--name", "x", "--ip", "100.64.0.1/10"],
    );
    assert!(e.contains("ca.key") && e.contains("chmod 600"), "{e}");
}

fn issue_web(d: &Path) {
    ok(
        d,
        &["cert", "issue", "--name", "web", "--ip", "100.64.0.1/10"],
    );
}

#[test]
fn truncated_certificate_file() {
    let d = setup();
    issue_web(d.path());
    let text = fs::read_to_string(d.path().join("web.crt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    fs::write(d.path().join("cut.crt"), lines[..2].join("\n")).unwrap();
    let e = fails(d.path(), &["cert", "show", "cut.crt"]);
    assert!(e.contains("cut.crt") && e.contains("truncated"), "{e}");
    // Armour intact, bytes truncated.
    let body: String = lines[1..lines.len() - 1].concat();
    let short = &body[..body.len() - 24];
    fs::write(
        d.path().join("short.crt"),
        format!("-----BEGIN MESHD NODE CERTIFICATE-----\n{short}\n-----END MESHD NODE CERTIFICATE-----\n"),
    )
    .unwrap();
    let e = fails(d.path(), &["cert", "show", "short.crt"]);
    assert!(e.contains("short.crt") && e.contains("truncated"), "{e}");
}

fn rewrite(d: &Path, from: &str, to: &str, f: impl Fn(&mut Vec<u8>)) {
    let text = fs::read_to_string(d.join(from)).unwrap();
    let mut bytes = proto::armor::decode(proto::armor::LABEL_NODE_CERTIFICATE, &text).unwrap();
    f(&mut bytes);
    fs::write(
        d.join(to),
        proto::armor::encode(proto::armor::LABEL_NODE_CERTIFICATE, &bytes),
    )
    .unwrap();
}

#[test]
fn tampered_certificate_file() {
    let d = setup();
    issue_web(d.path());
    rewrite(d.path(), "web.crt", "tampered.crt", |b| {
        let p = b.windows(4).position(|w| w == [100, 64, 0, 1]).unwrap();
        b[p + 3] = 2;
    });
    let e = fails(
        d.path(),
        &["cert", "show", "tampered.crt", "--ca", "ca.crt"],
    );
    assert!(
        e.contains("tampered.crt") && e.contains("signature does not verify"),
        "{e}"
    );
}

#[test]
fn unknown_version_certificate_file() {
    let d = setup();
    issue_web(d.path());
    rewrite(d.path(), "web.crt", "v9.crt", |b| b[0] = 9);
    let e = fails(d.path(), &["cert", "show", "v9.crt"]);
    assert!(
        e.contains("v9.crt") && e.contains("unknown certificate version 9"),
        "{e}"
    );
}

#[test]
fn file_that_is_not_a_certificate() {
    let d = setup();
    fs::write(d.path().join("notes.txt"), "hello\n").unwrap();
    let e = fails(d.path(), &["cert", "show", "notes.txt"]);
    assert!(
        e.contains("notes.txt") && e.contains("not a meshd certificate"),
        "{e}"
    );
    let e = fails(d.path(), &["cert", "show", "ca.key"]);
    assert!(
        e.contains("ca.key") && e.contains("MESHD CA PRIVATE KEY"),
        "{e}"
    );
    fs::write(d.path().join("bin.crt"), [0xffu8, 0xfe, 0x00]).unwrap();
    let e = fails(d.path(), &["cert", "show", "bin.crt"]);
    assert!(
        e.contains("bin.crt") && e.contains("not a text file"),
        "{e}"
    );
}

#[test]
fn certificate_from_another_ca() {
    let d = setup();
    let other = tempfile::tempdir().unwrap();
    ok(other.path(), &["ca", "init", "--name", "other"]);
    ok(
        other.path(),
        &[
            "cert",
            "issue",
            "--name",
            "stranger",
            "--ip",
            "100.64.0.9/10",
        ],
    );
    fs::copy(
        other.path().join("stranger.crt"),
        d.path().join("stranger.crt"),
    )
    .unwrap();
    let e = fails(
        d.path(),
        &["cert", "show", "stranger.crt", "--ca", "ca.crt"],
    );
    assert!(
        e.contains("stranger.crt") && e.contains("issued by CA"),
        "{e}"
    );
}

/// Expired and not-yet-valid certificates cannot be made with the CLI (it
/// issues from now), so the test signs them with the library and the CA key.
#[test]
fn expired_and_not_yet_valid_certificate_files() {
    let d = tempfile::tempdir().unwrap();
    let c = RealCrypto;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let seed = [7u8; 32];
    let ca_cert = create_ca(&c, "ca", &seed, now - 10 * 86_400, now + 10 * 86_400).unwrap();
    fs::write(d.path().join("ca.crt"), ca_cert.to_armor()).unwrap();
    let ca = TrustedCa::new(&c, ca_cert, now).unwrap();
    for (name, nb, na) in [
        ("old", now - 5 * 86_400, now - 86_400),
        ("future", now + 86_400, now + 2 * 86_400),
    ] {
        let cert = ca
            .issue(
                &c,
                &seed,
                NodeCertParams {
                    name: name.into(),
                    addresses: vec![OverlayAddr::V4([100, 64, 0, 3], 10)],
                    segments: vec![],
                    static_public_key: [5; 32],
                    advert_key: [7; 32],
                    not_before: nb,
                    not_after: na,
                },
            )
            .unwrap();
        fs::write(d.path().join(format!("{name}.crt")), cert.to_armor()).unwrap();
    }
    let e = fails(d.path(), &["cert", "show", "old.crt", "--ca", "ca.crt"]);
    assert!(e.contains("old.crt") && e.contains("expired"), "{e}");
    let e = fails(
        d.path(),
        &["cert", "show", "future.crt", "--ca", "ca.crt", "--json"],
    );
    assert!(
        e.contains("future.crt") && e.contains("not valid for another"),
        "{e}"
    );
}

/// docs/policy.md's `policy test` example is what meshctl prints for its
/// example policy and the members it names.
#[test]
fn the_policy_test_output_in_the_docs_is_the_real_output() {
    let d = setup();
    let p = d.path();
    for (name, ip, segment) in [
        ("web-1", "100.64.0.10/10", "web"),
        ("db-1", "100.64.0.20/10", "db"),
        ("guest-1", "100.64.0.30/10", "guest"),
    ] {
        let args = [
            "cert",
            "issue",
            "--name",
            name,
            "--ip",
            ip,
            "--segment",
            segment,
        ];
        ok(p, &args);
    }
    let doc =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policy.md")).unwrap();
    let block = |fence: &str, first: &str| -> String {
        (doc.split(fence).skip(1))
            .map(|b| b.split("```").next().unwrap())
            .find(|b| b.starts_with(first))
            .unwrap_or_else(|| panic!("no {fence} block starting {first:?} in docs/policy.md"))
            .to_string()
    };
    fs::write(p.join("policy.toml"), block("```toml\n", "enclaves")).unwrap();
    let example = block("```text\n", "$ meshctl policy test");
    let (command, expected) = example.split_once('\n').unwrap();
    let args: Vec<&str> = command.split_whitespace().skip(2).collect();
    assert_eq!(ok(p, &args), expected, "docs/policy.md shows other output");
}

#[test]
fn policy_check_and_test_evaluate_expectations_before_a_push() {
    let d = setup();
    let p = d.path();
    ok(
        p,
        &[
            "cert",
            "issue",
            "--name",
            "web-1",
            "--ip",
            "100.64.0.10/10",
            "--segment",
            "web",
        ],
    );
    ok(
        p,
        &[
            "cert",
            "issue",
            "--name",
            "db-1",
            "--ip",
            "100.64.0.20/10",
            "--segment",
            "db",
        ],
    );
    ok(
        p,
        &[
            "cert",
            "issue",
            "--name",
            "guest-1",
            "--ip",
            "100.64.0.30/10",
            "--segment",
            "guest",
        ],
    );
    let rules = "[[rule]]\naction = \"allow\"\nfrom = \"segment:web\"\nto = \"segment:db\"\nproto = \"tcp\"\nports = [\"5432\"]\n";
    let expect = |from: &str, to: &str, verdict: &str| {
        format!("\n[[expect]]\nfrom = \"{from}\"\nto = \"{to}\"\nproto = \"tcp\"\nport = 5432\nverdict = \"{verdict}\"\n")
    };
    fs::write(
        p.join("good.toml"),
        format!(
            "{rules}{}{}",
            expect("web-1", "db-1", "allow"),
            expect("guest-1", "db-1", "deny")
        ),
    )
    .unwrap();
    let out = ok(p, &["policy", "check", "good.toml"]);
    assert!(
        out.contains("valid: 1 rule(s)") && out.contains("2 expectation(s)"),
        "{out}"
    );
    let certs = [
        "--cert",
        "web-1.crt",
        "--cert",
        "db-1.crt",
        "--cert",
        "guest-1.crt",
    ];
    let mut args = vec!["policy", "test", "good.toml"];
    args.extend(certs);
    let out = ok(p, &args);
    assert!(out.contains("2 of 2 expectations hold"), "{out}");
    assert!(
        out.contains(
            "pass guest-1 -> db-1 tcp/5432: expected deny, policy says deny (no rule allows it)"
        ),
        "{out}"
    );
    // An expectation the rules do not meet fails the test, naming the file.
    fs::write(
        p.join("bad.toml"),
        format!("{rules}{}", expect("guest-1", "db-1", "allow")),
    )
    .unwrap();
    let mut args = vec!["policy", "test", "bad.toml"];
    args.extend(certs);
    let o = meshctl(p, &args);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAIL guest-1 -> db-1"), "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.toml: 1 expectation(s) fail"));
    // A malformed policy names the file, the line and the fix.
    fs::write(
        p.join("broken.toml"),
        "\n\n[[rule]]\naction = \"allow\"\nfrom = \"web\"\nto = \"any\"\n",
    )
    .unwrap();
    let err = fails(p, &["policy", "check", "broken.toml"]);
    assert!(
        err.contains("broken.toml: line 3: rule 1: from:") && err.contains("segment:NAME"),
        "{err}"
    );
    // `policy test --json` prints JSON alone.
    let mut args = vec!["policy", "test", "good.toml", "--json"];
    args.extend(certs);
    let rows: serde_json::Value = serde_json::from_str(&ok(p, &args)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    // Signing: the expectations need the members they name...
    let err = fails(p, &["policy", "sign", "good.toml", "--out", "g.bundle"]);
    assert!(err.contains("pass --cert"), "{err}");
    let mut args = vec!["policy", "sign", "good.toml", "--out", "g.bundle"];
    args.extend(certs);
    ok(p, &args);
    // ...a policy that allows nothing needs --force...
    fs::write(p.join("empty.toml"), "").unwrap();
    let err = fails(p, &["policy", "sign", "empty.toml", "--out", "e.bundle"]);
    assert!(
        err.contains("allows nothing") && err.contains("--force"),
        "{err}"
    );
    assert!(!p.join("e.bundle").exists());
    ok(
        p,
        &[
            "policy",
            "sign",
            "empty.toml",
            "--out",
            "e.bundle",
            "--force",
        ],
    );
    // ...and so does one naming a segment no member has (a typo).
    fs::write(
        p.join("typo.toml"),
        rules.replace("segment:db", "segment:dbs"),
    )
    .unwrap();
    let mut args = vec!["policy", "sign", "typo.toml", "--out", "t.bundle"];
    args.extend(certs);
    let err = fails(p, &args);
    assert!(
        err.contains("segment 'dbs'") && err.contains("known: db, guest, web"),
        "{err}"
    );
    args.push("--force");
    ok(p, &args);
}

/// `cert renew`: the same key, name, addresses and segments with a new
/// validity, from a certificate that has expired; a certificate of another
/// CA is refused with the fix.
#[test]
fn cert_renew_keeps_the_key_and_names_and_takes_an_expired_certificate() {
    let d = setup();
    ok(
        d.path(),
        &[
            "cert",
            "issue",
            "--name",
            "web",
            "--ip",
            "100.64.0.7/10",
            "--segment",
            "web",
            "--ttl",
            "1s",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = ok(
        d.path(),
        &["cert", "renew", "web.crt", "--ttl", "30d", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["certificate"], "web.renewed.crt");
    let show = |f: &str| -> CertificateView {
        serde_json::from_str(&ok(
            d.path(),
            &["cert", "show", f, "--ca", "ca.crt", "--json"],
        ))
        .unwrap()
    };
    let (old, new) = (show_any(d.path(), "web.crt"), show("web.renewed.crt"));
    assert_eq!(
        (&old.name, &old.addresses, &old.segments, &old.public_key),
        (&new.name, &new.addresses, &new.segments, &new.public_key)
    );
    assert!(new.not_after >= old.not_after + 29 * 86_400);
    // Not over an existing file, and never another CA's certificate.
    assert!(fails(d.path(), &["cert", "renew", "web.crt"]).contains("already exists"));
    let other = tempfile::tempdir().unwrap();
    ok(other.path(), &["ca", "init", "--name", "other"]);
    ok(
        other.path(),
        &["cert", "issue", "--name", "x", "--ip", "100.64.0.8/10"],
    );
    let foreign = other.path().join("x.crt");
    let e = fails(d.path(), &["cert", "renew", foreign.to_str().unwrap()]);
    assert!(e.contains("renew only certificates of this CA"), "{e}");
}

/// `cert show --json` of a certificate, whatever its validity.
fn show_any(dir: &Path, f: &str) -> CertificateView {
    let o = meshctl(dir, &["cert", "show", f, "--json"]);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Output into a pipe whose reader has gone (`meshctl … | head`) ends
/// meshctl quietly and successfully, never with a panic.
#[test]
fn a_closed_pipe_ends_meshctl_quietly() {
    let d = setup();
    ok(
        d.path(),
        &["cert", "issue", "--name", "web", "--ip", "100.64.0.7/10"],
    );
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .current_dir(d.path())
        .args(["cert", "show", "web.crt", "--ca", "ca.crt"])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `cert show --revocations`: a certificate the list names is "revoked"
/// (exit 1), another one "valid"; a list of another CA is refused.
#[test]
fn cert_show_says_revoked_when_the_list_names_it() {
    let d = setup();
    let p = d.path();
    ok(
        p,
        &["cert", "issue", "--name", "lost", "--ip", "100.64.0.7/10"],
    );
    ok(
        p,
        &["cert", "issue", "--name", "kept", "--ip", "100.64.0.8/10"],
    );
    ok(
        p,
        &[
            "revoke",
            "--cert",
            "lost.crt",
            "--offline",
            "--out",
            "rev.bundle",
            "--version",
            "3",
        ],
    );
    let o = meshctl(
        p,
        &[
            "cert",
            "show",
            "lost.crt",
            "--ca",
            "ca.crt",
            "--revocations",
            "rev.bundle",
        ],
    );
    assert!(!o.status.success());
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        text.contains("revoked (revocation list version 3)"),
        "{text}"
    );
    let out = ok(
        p,
        &[
            "cert",
            "show",
            "kept.crt",
            "--ca",
            "ca.crt",
            "--revocations",
            "rev.bundle",
        ],
    );
    assert!(out.contains("valid") && !out.contains("revoked"), "{out}");
    let other = tempfile::tempdir().unwrap();
    ok(other.path(), &["ca", "init", "--name", "other"]);
    // Renewing the revoked one needs --force (a mistaken revocation).
    let e = fails(p, &["cert", "renew", "lost.crt"]);
    assert!(e.contains("was revoked") && e.contains("--force"), "{e}");
    ok(p, &["cert", "renew", "lost.crt", "--force", "--ttl", "30d"]);
    let o = meshctl(
        p,
        &[
            "cert",
            "show",
            "lost.renewed.crt",
            "--ca",
            "ca.crt",
            "--revocations",
            "rev.bundle",
        ],
    );
    assert!(
        o.status.success(),
        "the renewed certificate is not on the list"
    );
    let e = fails(
        p,
        &[
            "cert",
            "show",
            "kept.crt",
            "--ca",
            other.path().join("ca.crt").to_str().unwrap(),
            "--revocations",
            "rev.bundle",
        ],
    );
    assert!(e.contains("rev.bundle"), "{e}");
}
