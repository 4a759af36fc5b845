//! `meshctl doctor`: this node checked from what it reports (status,
//! peers, intrusion detection), each finding with what to do about it.

use std::fmt::Write as _;

use serde::Serialize;
use types::admin::{AccusationView, AdminRequest, AdminResponse, PeerView, StatusView};

use crate::cli::AdminArgs;
use crate::client::ask;
use crate::render::duration;
use crate::Result;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth knowing; nothing is wrong.
    Info,
    /// Something will go wrong, or goes wrong for some peers.
    Warning,
    /// Something is wrong now.
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What was checked (`certificate`, `peers`, `policy`, …).
    pub check: &'static str,
    /// What was found.
    pub found: String,
    /// What to do.
    pub fix: String,
}

/// Certificates expiring within this long are flagged.
const EXPIRY_WARNING_SECS: u64 = 14 * 86_400;
/// A direct link whose path carries less than this (outer headers
/// included) cannot carry a 1280-byte inner packet sealed.
const MIN_PATH_MTU: usize = 1280 + 60 + 28;
/// A direct link that went down this many times in ten minutes is
/// flapping.
const FLAPPING_FAILURES: usize = 3;
/// A newer bundle offered this long and not in force is stale here (a
/// transfer takes a few round trips; offers repeat every 10 s).
const STALE_BUNDLE_SECS: u64 = 60;
/// Clocks further apart than this are flagged: certificates' validity,
/// revocation lists and policy versions (Unix time by default) are judged
/// by each node's wall clock, and NTP keeps clocks within milliseconds.
const SKEW_WARNING_MS: i64 = 10_000;
/// ...and from this far apart, certificates just issued or renewed can
/// look not yet valid, and a pushed policy older than the one in force.
const SKEW_ERROR_MS: i64 = 300_000;

/// "12.3 s ahead" / "4m 2s behind" for an offset in ms.
fn offset_words(ms: i64) -> String {
    let secs = ms.unsigned_abs() / 1000;
    let size = if secs >= 60 {
        duration(secs)
    } else {
        format!("{:.1} s", ms.unsigned_abs() as f64 / 1e3)
    };
    format!("{size} {}", if ms > 0 { "ahead" } else { "behind" })
}

/// Clock skew against the peers whose handshake timestamps say it: one
/// finding, blaming this node when most peers agree it is off.
fn clock_findings(peers: &[PeerView], v: &mut Vec<Finding>) {
    let mut sampled: Vec<(&str, i64)> = (peers.iter())
        .filter_map(|p| Some((p.name.as_str(), p.clock_offset_ms?)))
        .collect();
    let skewed: Vec<(&str, i64)> = (sampled.iter().copied())
        .filter(|(_, ms)| ms.abs() > SKEW_WARNING_MS)
        .collect();
    if skewed.is_empty() {
        return;
    }
    let worst = skewed.iter().map(|(_, ms)| ms.abs()).max().unwrap_or(0);
    let severity = if worst > SKEW_ERROR_MS {
        Severity::Error
    } else {
        Severity::Warning
    };
    sampled.sort_by_key(|(_, ms)| *ms);
    let median = sampled[sampled.len() / 2].1;
    let agree = (skewed.iter())
        .filter(|(_, ms)| ms.signum() == median.signum())
        .count();
    if sampled.len() >= 2 && median.abs() > SKEW_WARNING_MS && 2 * agree > sampled.len() {
        // Most peers' clocks are off the same way: this node is the odd one.
        v.push(finding(
            severity,
            "clock",
            format!(
                "this node's clock looks wrong: {agree} of {} peers' clocks are off the same way (median: {} of it)",
                sampled.len(),
                offset_words(median)
            ),
            "run NTP here (chrony or systemd-timesyncd; timedatectl shows whether the clock is synchronised)",
        ));
        return;
    }
    let list: Vec<String> = (skewed.iter())
        .map(|(name, ms)| format!("{name} ({})", offset_words(*ms)))
        .collect();
    v.push(finding(
        severity,
        "clock",
        format!(
            "peers whose clocks disagree with this node's (from their handshake timestamps): {}",
            list.join(", ")
        ),
        "run NTP on those hosts (chrony or systemd-timesyncd); certificates and policy versions are judged by each node's clock",
    ));
}

fn finding(severity: Severity, check: &'static str, found: String, fix: &str) -> Finding {
    Finding {
        severity,
        check,
        found,
        fix: fix.to_string(),
    }
}

/// The findings for a node that reports `s`, `peers` and `sanctioned`
/// (peer, response, seconds left) at Unix time `now`.
pub fn diagnose(
    s: &StatusView,
    peers: &[PeerView],
    sanctioned: &[(String, String, u64)],
    ids_mode: &str,
    now: u64,
) -> Vec<Finding> {
    use Severity::{Error, Info, Warning};
    let mut v = Vec::new();
    // Certificates.
    let left = s.certificate_not_after.saturating_sub(now);
    if s.certificate_not_after <= now {
        v.push(finding(Error, "certificate", "this node's certificate has expired: no peer accepts a new session with it".into(),
            "meshctl cert renew --cert NODE.crt --ca-crt ca.crt --ca-key ca.key (on the CA machine), install it, then meshctl reload"));
    } else if left < EXPIRY_WARNING_SECS {
        v.push(finding(Warning, "certificate", format!("this node's certificate expires in {}", duration(left)),
            "meshctl cert renew (same key, name and addresses), install it, then meshctl reload; no peer needs editing"));
    }
    let expiring: Vec<String> = (peers.iter())
        .filter(|p| {
            (p.certificate_not_after).is_some_and(|t| t.saturating_sub(now) < EXPIRY_WARNING_SECS)
        })
        .map(|p| p.name.clone())
        .collect();
    if !expiring.is_empty() {
        v.push(finding(Warning, "certificate", format!("peer certificates expiring within 14 days (or expired): {}", expiring.join(", ")),
            "renew them on the CA machine and reload those nodes (meshctl peers shows each not-after)"));
    }
    // Peers.
    let silent: Vec<String> = (peers.iter())
        .filter(|p| !p.refused && p.handshake_age_secs.is_none())
        .map(|p| p.name.clone())
        .collect();
    if !silent.is_empty() {
        v.push(finding(Warning, "peers", format!("never completed a handshake with: {}", silent.join(", ")),
            "check that meshd runs there and UDP reaches its listen port (meshctl status there; handshake failures here name a wrong CA or an expired certificate)"));
    }
    let down: Vec<String> = (peers.iter())
        .filter(|p| p.link.as_deref() == Some("down"))
        .map(|p| format!("{} ({})", p.name, p.path))
        .collect();
    if !down.is_empty() {
        v.push(finding(Warning, "links", format!("direct links down: {}", down.join(", ")),
            "traffic goes through relays meanwhile; check the underlay between the hosts (firewall, routing, NAT mappings)"));
    }
    let flapping: Vec<String> = (peers.iter())
        .filter(|p| p.link_failures_10m.is_some_and(|n| n >= FLAPPING_FAILURES))
        .map(|p| format!("{} ({} times)", p.name, p.link_failures_10m.unwrap_or(0)))
        .collect();
    if !flapping.is_empty() {
        v.push(finding(Warning, "links", format!("direct links that went down and came back repeatedly in the last 10 minutes: {}", flapping.join(", ")),
            "an unstable underlay path (an interface or route flapping, a NAT or firewall dropping UDP in bursts); each failure moves traffic to a relay for a few seconds: fix the path, or meanwhile raise [health] down-after-misses"));
    }
    let lossy: Vec<String> = (peers.iter())
        .filter(|p| p.link_loss.is_some_and(|l| l > 0.1) && p.link.as_deref() == Some("up"))
        .map(|p| format!("{} ({:.0} %)", p.name, p.link_loss.unwrap_or(0.0) * 100.0))
        .collect();
    if !lossy.is_empty() {
        v.push(finding(
            Warning,
            "links",
            format!("direct links losing probes: {}", lossy.join(", ")),
            "a lossy underlay path; routes avoid it when a relayed path is better",
        ));
    }
    let narrow: Vec<String> = (peers.iter())
        .filter(|p| p.path_mtu.is_some_and(|m| m < MIN_PATH_MTU))
        .map(|p| format!("{} ({} bytes)", p.name, p.path_mtu.unwrap_or(0)))
        .collect();
    if !narrow.is_empty() {
        v.push(finding(Warning, "mtu", format!("paths too narrow for a 1280-byte inner packet: {}", narrow.join(", ")),
            "raise the underlay MTU on that path; large packets to these peers are refused with ICMP too-big"));
    }
    clock_findings(peers, &mut v);
    // Handshakes and drops.
    for (reason, n) in &s.handshake_failures {
        let fix = match reason.as_str() {
            "certificate" => "a peer presents a certificate of another CA, or an expired one: meshd's log names it",
            "revoked" => "a revoked node keeps dialling in: expected after a revocation; stop that host",
            "outside_enclave" => "a node outside this node's enclaves keeps dialling in: expected under an enclave policy",
            _ => "meshd's log names the peer and the reason",
        };
        v.push(finding(
            Info,
            "handshakes",
            format!("{n} handshake failure(s): {reason}"),
            fix,
        ));
    }
    let notable = [
        ("spoofed_source", "a peer sent from an address its certificate does not hold (a misconfigured route or a compromised host)"),
        ("decrypt", "packets failed authentication: corruption on the path, or forgery"),
        ("quarantined", "intrusion detection dropped a sanctioned peer's data (meshctl alerts)"),
        ("peer_rate_limited", "intrusion detection rate-limited a peer (meshctl alerts)"),
        ("too_big", "packets larger than the path carries were refused: lower the TUN MTU or raise the underlay's"),
    ];
    for (reason, what) in notable {
        if let Some(n) = s.drops.get(reason).filter(|n| **n > 0) {
            v.push(finding(
                Info,
                "drops",
                format!("{n} dropped as {reason}"),
                what,
            ));
        }
    }
    for u in &s.unusual_drops {
        let what = notable.iter().find(|(r, _)| *r == u.reason).map_or(
            "meshctl status lists every drop reason; meshd's log names the peers involved",
            |(_, w)| *w,
        );
        v.push(finding(
            Warning,
            "drops",
            format!(
                "{} {} drops in 10 s, {} ago, where {:.0} is usual",
                u.count,
                u.reason,
                duration(u.age_secs),
                u.usual
            ),
            what,
        ));
    }
    if s.routing.local_stalls > 0 {
        v.push(finding(Warning, "host", format!("meshd's timers ran 100 ms or more late {} time(s)", s.routing.local_stalls),
            "the host was starved of CPU or suspended; links may have been declared down falsely meanwhile"));
    }
    // Policy and revocation.
    let p = &s.policy;
    if p.fail_closed {
        v.push(finding(
            Error,
            "policy",
            "denying all traffic: the saved policy did not load at start".into(),
            "push a policy (meshctl policy push) or put a valid bundle in [policy] bundles",
        ));
    } else if p.policy_version.is_none() {
        v.push(finding(
            Info,
            "policy",
            "no policy in force: every member may reach every other".into(),
            "write one and push it (docs/policy.md) to enforce segments",
        ));
    }
    for (what, offered) in [
        ("policy", p.newer_policy_offered),
        ("revocation list", p.newer_revocation_offered),
    ] {
        if let Some((version, secs)) = offered.filter(|(_, s)| *s >= STALE_BUNDLE_SECS) {
            v.push(finding(Warning, "policy", format!("a newer {what} (version {version}) has been offered by neighbours for {} and is not in force here", duration(secs)),
                "its transfer or its verification keeps failing: bundle rejects below name why (an old meshd refuses a policy with tables it does not know; a bundle signed by another CA is refused); meshctl policy push it here to see the error"));
        }
    }
    if !p.bundle_rejects.is_empty() {
        let r: Vec<String> = p
            .bundle_rejects
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        v.push(finding(
            Warning,
            "policy",
            format!("bundles refused: {}", r.join(", ")),
            "someone pushed an older, altered or foreign bundle; the one in force stays",
        ));
    }
    // Intrusion detection.
    if ids_mode == "off" {
        v.push(finding(
            Info,
            "ids",
            "intrusion detection is off".into(),
            "[ids] mode = \"prevent\" (or \"detect\")",
        ));
    }
    for (peer, response, left) in sanctioned {
        v.push(finding(Warning, "ids", format!("{peer} is under a {response} for {} more", duration(*left)),
            "meshctl alerts says why; meshctl quarantine --release PEER lifts it if it is a false alarm"));
    }
    v.sort_by_key(|f| std::cmp::Reverse(f.severity));
    v
}

/// Accusations other members hold against this node (`own`): a warning
/// naming the accusers, since their quorum quarantines it mesh-wide.
pub fn accused_findings(own: &str, accusations: &[AccusationView], quorum: usize) -> Vec<Finding> {
    let against: Vec<String> = (accusations.iter())
        .filter(|a| a.accused == own)
        .map(|a| format!("{} ({})", a.accuser, a.scenario))
        .collect();
    if against.is_empty() {
        return Vec::new();
    }
    let found = format!(
        "{} member(s) accuse this node of misbehaving: {}; {quorum} agreeing quarantine it mesh-wide",
        against.len(),
        against.join(", ")
    );
    vec![finding(Severity::Warning, "ids", found,
        "look at what this node sends them (a route or address sending as addresses outside its certificate, a scanner or a misbehaving service on this host); meshctl alerts on an accuser says what it saw")]
}

/// `meshctl doctor`: exits 1 when any finding is an error.
pub fn doctor(a: &AdminArgs) -> Result<bool> {
    let AdminResponse::Status(s) = ask(&a.socket, &AdminRequest::Status)? else {
        return Err("meshd answered something other than a status".into());
    };
    let AdminResponse::Peers { peers } = ask(&a.socket, &AdminRequest::Peers)? else {
        return Err("meshd answered something other than its peers".into());
    };
    let AdminResponse::Alerts {
        mode,
        accusations,
        quorum,
        ..
    } = ask(&a.socket, &AdminRequest::Alerts)?
    else {
        return Err("meshd answered something other than its alerts".into());
    };
    let req = AdminRequest::Quarantine { release: None };
    let AdminResponse::Quarantine { sanctioned, .. } = ask(&a.socket, &req)? else {
        return Err("meshd answered something other than its sanctions".into());
    };
    let held: Vec<(String, String, u64)> = (sanctioned.into_iter())
        .map(|x| (x.peer, x.response, x.remaining_secs))
        .collect();
    let mut findings = diagnose(&s, &peers, &held, &mode, crate::now());
    findings.extend(accused_findings(&s.name, &accusations, quorum));
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let failed = findings.iter().any(|f| f.severity == Severity::Error);
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&findings)?);
        return Ok(!failed);
    }
    let mut o = String::new();
    if findings.iter().all(|f| f.severity == Severity::Info) {
        let _ = writeln!(o, "{}: nothing wrong found", s.name);
    }
    for f in &findings {
        let tag = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "warn ",
            Severity::Info => "info ",
        };
        let _ = writeln!(
            o,
            "{tag} {:<12} {}\n      {:<12} → {}",
            f.check, f.found, "", f.fix
        );
    }
    out!("{o}");
    Ok(!failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> StatusView {
        StatusView {
            name: "h0".into(),
            certificate_not_after: 2_000_000_000,
            ..StatusView::default()
        }
    }

    fn peer(name: &str) -> PeerView {
        PeerView {
            name: name.into(),
            handshake_age_secs: Some(3.0),
            link: Some("up".into()),
            certificate_not_after: Some(2_000_000_000),
            path: "direct".into(),
            ..PeerView::default()
        }
    }

    #[test]
    fn a_healthy_node_has_only_information() {
        let mut s = status();
        s.policy.policy_version = Some(3);
        let f = diagnose(&s, &[peer("h1")], &[], "prevent", 1_900_000_000);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn each_problem_is_named_with_its_fix_worst_first() {
        let now = 1_999_000_000; // 11.6 days before the certificates end
        let mut s = status();
        s.policy.fail_closed = true;
        s.drops.insert("spoofed_source".into(), 4);
        let mut down = peer("h2");
        down.link = Some("down".into());
        down.path = "via h1".into();
        let mut silent = peer("h3");
        silent.handshake_age_secs = None;
        let mut flapping = peer("h5");
        flapping.link_failures_10m = Some(4);
        let held = [("h4".to_string(), "quarantine".to_string(), 50)];
        let f = diagnose(
            &s,
            &[peer("h1"), down, silent, flapping],
            &held,
            "prevent",
            now,
        );
        let checks: Vec<(Severity, &str)> = f.iter().map(|x| (x.severity, x.check)).collect();
        assert_eq!(checks[0], (Severity::Error, "policy"), "{f:?}");
        for want in ["certificate", "peers", "links", "ids", "drops"] {
            assert!(
                checks.iter().any(|c| c.1 == want),
                "no {want} finding: {f:?}"
            );
        }
        let links = f.iter().find(|x| x.check == "links").unwrap();
        assert!(links.found.contains("h2 (via h1)"), "{links:?}");
        assert!(
            f.iter()
                .any(|x| x.check == "links" && x.found.contains("h5 (4 times)")),
            "{f:?}"
        );
        assert!(f.iter().all(|x| !x.fix.is_empty()));
        // Expired: an error.
        let f = diagnose(&status(), &[], &[], "prevent", 2_000_000_001);
        assert_eq!(
            (f[0].severity, f[0].check),
            (Severity::Error, "certificate")
        );
    }

    fn clocked(name: &str, ms: i64) -> PeerView {
        PeerView {
            clock_offset_ms: Some(ms),
            ..peer(name)
        }
    }

    #[test]
    fn drops_out_of_their_normal_range_are_named_with_what_is_usual() {
        let mut s = status();
        s.policy.policy_version = Some(3);
        s.unusual_drops = vec![types::admin::UnusualDropView {
            reason: "decrypt".into(),
            count: 3000,
            usual: 0.2,
            age_secs: 30,
        }];
        let f = diagnose(&s, &[], &[], "prevent", 1_900_000_000);
        assert_eq!((f[0].severity, f[0].check), (Severity::Warning, "drops"));
        assert!(
            f[0].found
                .contains("3000 decrypt drops in 10 s, 30s ago, where 0 is usual"),
            "{f:?}"
        );
        assert!(f[0].fix.contains("forgery"), "{f:?}");
    }

    #[test]
    fn a_newer_bundle_offered_long_and_not_in_force_is_named() {
        let mut s = status();
        s.policy.policy_version = Some(3);
        s.policy.newer_policy_offered = Some((4, 30));
        assert!(diagnose(&s, &[], &[], "prevent", 1_900_000_000).is_empty());
        s.policy.newer_revocation_offered = Some((9, 600));
        let f = diagnose(&s, &[], &[], "prevent", 1_900_000_000);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].severity, f[0].check), (Severity::Warning, "policy"));
        assert!(f[0].found.contains("revocation list (version 9)"), "{f:?}");
        assert!(f[0].found.contains("10m"), "{f:?}");
    }

    #[test]
    fn accusations_against_this_node_are_named_with_their_accusers() {
        let acc = |by: &str, of: &str| AccusationView {
            accused: of.into(),
            accuser: by.into(),
            scenario: "scan".into(),
            holds_secs: 30,
            counts: true,
        };
        assert!(accused_findings("h0", &[acc("h1", "h2")], 3).is_empty());
        let f = accused_findings(
            "h0",
            &[acc("h1", "h0"), acc("h1", "h2"), acc("h3", "h0")],
            3,
        );
        assert_eq!((f[0].severity, f[0].check), (Severity::Warning, "ids"));
        assert!(f[0].found.starts_with("2 member(s)"), "{f:?}");
        assert!(f[0].found.contains("h1 (scan), h3 (scan)"), "{f:?}");
    }

    #[test]
    fn clock_skew_names_the_peer_or_this_node_when_most_peers_agree() {
        let now = 1_900_000_000;
        let mut s = status();
        s.policy.policy_version = Some(3);
        // Within NTP's reach, and a peer that never initiated: nothing.
        let f = diagnose(&s, &[clocked("h1", 40), peer("h2")], &[], "prevent", now);
        assert!(f.is_empty(), "{f:?}");
        // One peer 42 s ahead, two on time: that peer.
        let peers = [clocked("h1", 42_000), clocked("h2", 3), clocked("h3", -5)];
        let f = diagnose(&s, &peers, &[], "prevent", now);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].severity, f[0].check), (Severity::Warning, "clock"));
        assert!(f[0].found.contains("h1 (42.0 s ahead)"), "{f:?}");
        assert!(!f[0].found.contains("h2"), "{f:?}");
        // Every peer 10 minutes ahead: this node's clock is behind.
        let peers = [
            clocked("h1", 600_000),
            clocked("h2", 601_000),
            clocked("h3", 2),
        ];
        let f = diagnose(&s, &peers, &[], "prevent", now);
        assert_eq!((f[0].severity, f[0].check), (Severity::Error, "clock"));
        assert!(
            f[0].found.contains("this node's clock looks wrong"),
            "{f:?}"
        );
        assert!(f[0].found.contains("2 of 3"), "{f:?}");
        assert!(f[0].fix.contains("NTP"), "{f:?}");
        let f = diagnose(&status(), &[], &[], "prevent", 2_000_000_001);
        assert_eq!(
            (f[0].severity, f[0].check),
            (Severity::Error, "certificate")
        );
    }
}
