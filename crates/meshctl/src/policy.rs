//! Policy and revocation: checking and testing a policy file offline,
//! signing bundles (with the CA key or a policy key the CA named), pushing
//! them to a running meshd, and revoking certificates.

use std::path::{Path, PathBuf};

use crypto::files;
use crypto::RealCrypto;
use proto::bundle::{Bundle, BundleKind};
use proto::cert::hex;
use types::admin::{AdminRequest, AdminResponse};
use types::{ExpectationView, PolicyView};

use crate::cli::{AdminArgs, PolicyCommand, RevokeArgs, SignArgs};
use crate::client::ask;
use crate::inventory::Inventory;
use crate::render;
use crate::{now, Result};

/// `meshctl policy …`.
pub fn run(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Check { file } => policy_check(&file, true).map(|_| ()),
        PolicyCommand::Test {
            file,
            certs,
            socket,
            json,
        } => {
            let members = members(&certs, Some(&socket))?;
            let policy = policy_check(&file, !json)?;
            policy_test(&file, &policy, &members, json)?;
            for h in hazards(&policy, &members) {
                eprintln!("meshctl: warning: {}: {h}", file.display());
            }
            Ok(())
        }
        PolicyCommand::Show(a) => policy_show(&a),
        PolicyCommand::Sign {
            file,
            sign,
            certs,
            force,
        } => {
            let out = sign
                .out
                .clone()
                .ok_or("policy sign needs --out FILE for the bundle")?;
            let policy = policy_check(&file, true)?;
            let members = members(&certs, None)?;
            if !policy.expectations.is_empty() && members.is_empty() {
                return Err(format!(
                    "{}: its [[expect]] entries need the members they name: pass --cert FILE for each (or push from a node, which knows its peers)",
                    file.display()
                )
                .into());
            }
            guard(&file, &policy, &members, force)?;
            let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let b = sign_bundle(&sign, BundleKind::Policy, text)?;
            write_bundle(&out, &b)
        }
        PolicyCommand::Push {
            file,
            bundle,
            sign,
            certs,
            force,
            socket,
        } => {
            let b = if bundle {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                Bundle::from_armor(&text).map_err(|e| format!("{}: {e}", file.display()))?
            } else {
                let policy = policy_check(&file, true)?;
                let members = members(&certs, Some(&socket))?;
                guard(&file, &policy, &members, force)?;
                let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                sign_bundle(&sign, BundleKind::Policy, text)?
            };
            if let Some(o) = &sign.out {
                write_bundle(o, &b)?;
            }
            push_bundle(&socket, &b)
        }
    }
}

fn policy_show(a: &AdminArgs) -> Result<()> {
    let AdminResponse::Policy {
        version,
        issued,
        signer,
        text,
    } = ask(&a.socket, &AdminRequest::PolicyShow)?
    else {
        return Err("meshd answered something other than its policy".into());
    };
    let v = PolicyView {
        version,
        issued,
        signer,
        text,
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        out!("{}", render::policy(&v));
    }
    Ok(())
}

pub fn sign_bundle(a: &SignArgs, kind: BundleKind, content: Vec<u8>) -> Result<Bundle> {
    let version = a.version.unwrap_or_else(now);
    if version == 0 {
        return Err("--version 0: nodes take only a version above the one in force, and none is below 0; use 1 or more (default: the Unix time)".into());
    }
    if let (Some(crt), Some(key)) = (&a.signer_crt, &a.signer_key) {
        let cert = files::read_certificate(crt)?;
        let seed = files::read_private_key(key, proto::armor::LABEL_POLICY_SIGNER_KEY)?;
        return Bundle::sign_as(&RealCrypto, &cert, &seed, kind, version, now(), content)
            .map_err(|e| format!("{}: {e}", key.display()).into());
    }
    let (ca, seed) = a.ca.load()?;
    Bundle::sign(&RealCrypto, &ca, &seed, kind, version, now(), content)
        .map_err(|e| format!("{}: {e}", a.ca.ca_key.display()).into())
}

fn write_bundle(out: &Path, b: &Bundle) -> Result<()> {
    std::fs::write(out, b.to_armor()).map_err(|e| format!("{}: {e}", out.display()))?;
    outln!(
        "wrote {} bundle version {} to {}",
        b.kind(),
        b.version(),
        out.display()
    );
    Ok(())
}

fn push_bundle(socket: &Path, b: &Bundle) -> Result<()> {
    let req = AdminRequest::PushBundle {
        bundle: b.to_armor(),
    };
    match ask(socket, &req)? {
        AdminResponse::Pushed {
            kind,
            version,
            handing_over,
        } => {
            outln!("{kind} bundle version {version} in force on this node; spreading by gossip");
            if handing_over.is_empty() {
                return Ok(());
            }
            outln!(
                "outside this node's enclaves under it, handed the bundle over their closing sessions: {}",
                handing_over.join(", ")
            );
            handovers(socket, &handing_over)
        }
        _ => Err("meshd answered something other than 'pushed'".into()),
    }
}

/// Waits (at most 7 s: a handover lasts 5) for the handovers to `names`
/// to end and says how each went; an error if one did not take the bundle.
fn handovers(socket: &Path, names: &[String]) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(7);
    loop {
        let AdminResponse::Peers { peers } = ask(socket, &AdminRequest::Peers)? else {
            return Err("meshd answered something other than 'peers'".into());
        };
        let outcome = |n: &String| {
            (peers.iter())
                .find(|p| &p.name == n)
                .and_then(|p| p.bundle_handover.clone())
                .unwrap_or_else(|| "undelivered".into())
        };
        let open = names.iter().any(|n| outcome(n) == "open");
        if open && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(200));
            continue;
        }
        let missed: Vec<&str> = (names.iter())
            .filter(|n| outcome(n) != "delivered")
            .map(String::as_str)
            .collect();
        for n in names.iter().filter(|n| outcome(n) == "delivered") {
            outln!("  {n}: took it");
        }
        if missed.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "the bundle is in force here, but {} did not take it before being cut off: they keep their old policy until a node they still reach hands it over; push it to them directly (meshctl policy push --socket on each)",
            missed.join(", ")
        )
        .into());
    }
}

pub fn revoke(a: RevokeArgs) -> Result<()> {
    use proto::bundle::{Content, RevocationList};
    let mut list = match (&a.base, a.offline) {
        (Some(base), _) => {
            let text =
                std::fs::read_to_string(base).map_err(|e| format!("{}: {e}", base.display()))?;
            let b = Bundle::from_armor(&text).map_err(|e| format!("{}: {e}", base.display()))?;
            match b.content() {
                Ok(Content::Revocation(l)) => l,
                _ => return Err(format!("{}: not a revocation list", base.display()).into()),
            }
        }
        (None, true) => RevocationList::default(),
        (None, false) => match ask(&a.socket, &AdminRequest::Revocations)? {
            AdminResponse::Revocations { entries, .. } => RevocationList {
                entries: entries
                    .into_iter()
                    .filter_map(|e| {
                        let mut fp = [0u8; 32];
                        (e.fingerprint.len() == 64).then_some(())?;
                        for (i, b) in fp.iter_mut().enumerate() {
                            *b = u8::from_str_radix(&e.fingerprint[2 * i..2 * i + 2], 16).ok()?;
                        }
                        Some(proto::bundle::RevokedCert {
                            fingerprint: fp,
                            name: e.name,
                        })
                    })
                    .collect(),
            },
            _ => return Err("meshd answered something other than its revocation list".into()),
        },
    };
    let mut revoked = Vec::new();
    for c in &a.certs {
        let cert = files::read_certificate(c)?;
        list.revoke(&RealCrypto, &cert);
        let fingerprint = hex(&cert.fingerprint(&RealCrypto));
        outln!("revoking '{}' ({fingerprint})", cert.name());
        revoked.push(fingerprint);
    }
    let content = list.encode();
    let b = sign_bundle(&a.sign, BundleKind::Revocation, content)?;
    if let Some(o) = &a.sign.out {
        write_bundle(o, &b)?;
    }
    if a.offline && a.sign.out.is_none() {
        return Err("--offline needs --out FILE".into());
    }
    if !a.offline {
        push_bundle(&a.socket, &b)?;
    }
    // The names and addresses of revoked certificates may be issued again.
    let mut inventory = Inventory::open(&a.sign.ca.ca_key)?;
    for fingerprint in &revoked {
        if inventory.mark_revoked(fingerprint)? {
            outln!("marked revoked in {}", inventory.path().display());
        }
    }
    Ok(())
}

/// A member as expectations see it: name, segments, first overlay address.
type Member = (String, Vec<String>, std::net::IpAddr);

/// The members a policy is checked against: the certificates given, else
/// (with a socket) the running meshd's peers and itself.
fn members(certs: &[PathBuf], socket: Option<&Path>) -> Result<Vec<Member>> {
    let mut v = Vec::new();
    for c in certs {
        let cert = files::read_certificate(c)?;
        let body = cert.body();
        let addr = body
            .addresses
            .first()
            .map(|a| a.addr())
            .ok_or_else(|| format!("{}: certificate has no overlay address", c.display()))?;
        v.push((body.name.clone(), body.segments.clone(), addr));
    }
    let Some(socket) = socket.filter(|_| certs.is_empty()) else {
        return Ok(v);
    };
    let known = |e: Box<dyn std::error::Error>| {
        format!("{e} (or name the members with --cert FILE, one per node)")
    };
    let AdminResponse::Status(me) = ask(socket, &AdminRequest::Status).map_err(known)? else {
        return Err("meshd answered something other than a status".into());
    };
    let AdminResponse::Peers { peers } = ask(socket, &AdminRequest::Peers).map_err(known)? else {
        return Err("meshd answered something other than its peers".into());
    };
    let first = |a: &[String]| {
        a.first()
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok())
    };
    if let Some(addr) = first(&me.addresses) {
        v.push((me.name.clone(), me.segments.clone(), addr));
    }
    for p in peers.iter().filter(|p| !p.name.is_empty()) {
        if let Some(addr) = first(&p.addresses) {
            v.push((p.name.clone(), p.segments.clone(), addr));
        }
    }
    Ok(v)
}

/// What makes a policy dangerous to put in force: it allows nothing, or
/// names a segment or node none of `members` has (a typo denies what it
/// meant to allow).
fn hazards(p: &proto::policy::Policy, members: &[Member]) -> Vec<String> {
    use proto::policy::{Action, Selector};
    let mut v = Vec::new();
    if !p.rules.iter().any(|r| r.action == Action::Allow) {
        v.push("it allows nothing: every packet between members would be denied".to_string());
    }
    if members.is_empty() {
        return v;
    }
    let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
    let mut segments: Vec<&str> = members
        .iter()
        .flat_map(|m| m.1.iter().map(String::as_str))
        .collect();
    segments.sort_unstable();
    segments.dedup();
    for (i, r) in p.rules.iter().enumerate() {
        for sel in [&r.from, &r.to] {
            match sel {
                Selector::Segment(s) if !segments.contains(&s.as_str()) => v.push(format!(
                    "rule {} names segment '{s}', which no known member has (known: {})",
                    i + 1,
                    segments.join(", ")
                )),
                Selector::Node(n) if !names.contains(&n.as_str()) => v.push(format!(
                    "rule {} names node '{n}', which is no known member",
                    i + 1
                )),
                _ => {}
            }
        }
    }
    for e in &p.enclaves {
        if !segments.contains(&e.as_str()) {
            v.push(format!(
                "enclave '{e}' is a segment no known member has (known: {})",
                segments.join(", ")
            ));
        }
    }
    v
}

/// Before a policy is signed or pushed: its expectations hold against
/// `members` (when it has any and members are known), and it has no
/// hazard unless `force`.
fn guard(file: &Path, p: &proto::policy::Policy, members: &[Member], force: bool) -> Result<()> {
    if !p.expectations.is_empty() && !members.is_empty() {
        policy_test(file, p, members, false)?;
    }
    let hazards = hazards(p, members);
    if hazards.is_empty() {
        return Ok(());
    }
    if force {
        for h in &hazards {
            eprintln!("meshctl: warning: {}: {h} (--force)", file.display());
        }
        return Ok(());
    }
    Err(format!(
        "{}: {}; fix the policy, or pass --force if that is what you mean",
        file.display(),
        hazards.join("; ")
    )
    .into())
}

/// Parses a policy file; `say` prints the one-line summary.
fn policy_check(file: &Path, say: bool) -> Result<proto::policy::Policy> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let p = proto::policy::Policy::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    if !say {
        return Ok(p);
    }
    outln!(
        "{}: valid: {} rule(s), {} enclave(s), {} expectation(s)",
        file.display(),
        p.rules.len(),
        p.enclaves.len(),
        p.expectations.len()
    );
    Ok(p)
}

/// Evaluates the expectations of `policy` against `members` and prints
/// them; an error if any fails.
fn policy_test(
    file: &Path,
    policy: &proto::policy::Policy,
    members: &[Member],
    json: bool,
) -> Result<()> {
    use proto::policy::{DenyReason, Verdict};
    let results = policy
        .check_expectations(members)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let failed = results.iter().filter(|r| !r.pass).count();
    let describe = |v: &Verdict| match v {
        Verdict::Allow => "allow".to_string(),
        Verdict::Deny(DenyReason::Enclave) => "deny (enclave boundary)".into(),
        Verdict::Deny(DenyReason::Rule(i)) => format!("deny (rule {})", i + 1),
        Verdict::Deny(DenyReason::Default) => "deny (no rule allows it)".into(),
    };
    let rows: Vec<ExpectationView> = results
        .iter()
        .map(|r| ExpectationView {
            from: r.expectation.from.clone(),
            to: r.expectation.to.clone(),
            proto: r.expectation.proto.clone(),
            port: r.expectation.port_for(false).unwrap_or(0),
            expected: format!("{:?}", r.expectation.verdict).to_lowercase(),
            got: describe(&r.got),
            pass: r.pass,
        })
        .collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        out!("{}", render::expectations(&rows));
    }
    if failed > 0 {
        return Err(format!("{}: {failed} expectation(s) fail", file.display()).into());
    }
    Ok(())
}
