//! Human output: every text view `meshctl` prints, as pure functions of the
//! `types` structs that `--json` prints as they are. One certificate
//! printer serves `ca init`, `cert issue` and `cert show`.

use std::fmt::Write as _;

use crypto::RealCrypto;
use proto::cert::{hex, CertKind, Certificate, TrustedCa};
use types::admin::{PeerView, PingView, RouteView, StatusView, TraceView};
use types::{CertificateView, ExpectationView, PolicyView};

/// A certificate's view, verified against `ca` when one is given.
pub fn view_of(cert: &Certificate, ca: Option<&TrustedCa>, now: u64) -> CertificateView {
    let b = cert.body();
    let verification = ca.map(|ca| match cert.kind() {
        CertKind::Node => match ca.verify_node(&RealCrypto, cert, now) {
            Ok(()) => "valid".to_string(),
            Err(e) => e.to_string(),
        },
        CertKind::PolicySigner => match ca.verify_policy_signer(&RealCrypto, cert, now) {
            Ok(()) => "valid policy signer".to_string(),
            Err(e) => e.to_string(),
        },
        CertKind::Ca if cert == ca.certificate() => "valid (this is the CA)".to_string(),
        CertKind::Ca => "a different CA".to_string(),
    });
    CertificateView {
        kind: match cert.kind() {
            CertKind::Ca => "ca",
            CertKind::Node => "node",
            CertKind::PolicySigner => "policy-signer",
        }
        .into(),
        name: b.name.clone(),
        addresses: b.addresses.iter().map(|a| a.to_string()).collect(),
        segments: b.segments.clone(),
        public_key: hex(&b.public_key),
        not_before: b.not_before,
        not_after: b.not_after,
        not_before_utc: rfc3339(b.not_before),
        not_after_utc: rfc3339(b.not_after),
        issuer: if cert.kind() == CertKind::Ca {
            String::new()
        } else {
            hex(&b.issuer)
        },
        fingerprint: hex(&cert.fingerprint(&RealCrypto)),
        verification,
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// A certificate's details, one field a line, indented under a heading:
/// what each kind holds, its fingerprint and validity, and the
/// verification result when there is one.
pub fn certificate(v: &CertificateView) -> String {
    let mut o = String::new();
    match v.kind.as_str() {
        "node" => {
            let _ = writeln!(o, "  addresses    {}", v.addresses.join(", "));
            let _ = writeln!(o, "  segments     {}", list(&v.segments));
            let _ = writeln!(o, "  static key   {} (X25519)", v.public_key);
            let _ = writeln!(o, "  issuer       {}", v.issuer);
        }
        "ca" => {
            let _ = writeln!(o, "  signing key  {} (Ed25519)", v.public_key);
        }
        _ => {
            let _ = writeln!(o, "  signing key  {} (Ed25519)", v.public_key);
            let _ = writeln!(o, "  issuer       {}", v.issuer);
        }
    }
    let _ = writeln!(o, "  fingerprint  {}", v.fingerprint);
    let _ = writeln!(o, "  not before   {}", v.not_before_utc);
    let _ = writeln!(o, "  not after    {}", v.not_after_utc);
    if let Some(r) = &v.verification {
        let _ = writeln!(o, "  verification {r}");
    }
    o
}

/// `meshctl status`.
pub fn status(s: &StatusView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "node '{}'  meshd {}", s.name, s.version);
    let _ = writeln!(o, "  overlay      {}", s.addresses.join(", "));
    let _ = writeln!(o, "  segments     {}", list(&s.segments));
    let _ = writeln!(o, "  listen       udp {}   tun {}", s.listen, s.tun);
    let _ = writeln!(o, "  CA           {}", s.ca_fingerprint);
    let _ = writeln!(o, "  uptime       {}", duration(s.uptime_secs));
    if s.certificate_not_after > 0 {
        let _ = writeln!(
            o,
            "  certificate  valid until {}",
            rfc3339(s.certificate_not_after)
        );
    }
    let _ = writeln!(
        o,
        "  peers        {} known, {} with a session",
        s.peers, s.sessions
    );
    let _ = writeln!(o, "  handshakes   {} completed", s.handshakes_completed);
    let r = &s.routing;
    let _ = writeln!(
        o,
        "  routing      {}, {} adverts held, {} nodes reachable{}",
        match r.role.as_str() {
            "stub" => "stub (relays for nobody)",
            "no-transit" => "no transit (behind a NAT; [routing] relay = true relays anyway)",
            _ => "relay",
        },
        r.adverts_held,
        r.nodes_reachable,
        if r.local_stalls > 0 {
            format!(", stalled {} times", r.local_stalls)
        } else {
            String::new()
        }
    );
    if r.members_learned > 0 {
        let _ = writeln!(
            o,
            "  members      {} learned from the mesh",
            r.members_learned
        );
    }
    if !r.candidates.is_empty() {
        let _ = writeln!(
            o,
            "  candidates   {} (NAT: {})",
            r.candidates.join(", "),
            r.nat
        );
    }
    for b in &r.bootstrap {
        let _ = writeln!(
            o,
            "  bootstrap    {} {}",
            b.address,
            b.member
                .as_deref()
                .map_or_else(|| "(no answer yet)".to_string(), |m| format!("→ {m}"))
        );
    }
    for (k, v) in &s.handshake_failures {
        let _ = writeln!(o, "    failed     {v} {k}");
    }
    let p = &s.policy;
    let _ = match p.policy_version {
        Some(v) => writeln!(
            o,
            "  policy       version {v}, {} rule(s), enclaves: {}",
            p.rules,
            list(&p.enclaves)
        ),
        None if p.fail_closed => writeln!(
            o,
            "  policy       none valid: denying all traffic (the saved policy did not load; push one)"
        ),
        None => writeln!(
            o,
            "  policy       none in force: all traffic between members allowed"
        ),
    };
    let _ = match p.revocation_version {
        Some(v) => writeln!(
            o,
            "  revocations  version {v}, {} certificate(s); {} peer(s) refused",
            p.revoked, p.refused_peers
        ),
        None => writeln!(o, "  revocations  none"),
    };
    let _ = writeln!(o, "  flows        {} tracked", p.tracked_flows);
    for (k, v) in &p.denied {
        let _ = writeln!(o, "    denied     {v} {k}");
    }
    for (k, v) in &p.bundle_rejects {
        let _ = writeln!(o, "    refused    {v} bundle(s): {k}");
    }
    if s.drops.is_empty() {
        let _ = writeln!(o, "  drops        none");
    } else {
        for (k, v) in &s.drops {
            let _ = writeln!(o, "  dropped      {v} {k}");
        }
    }
    for u in &s.unusual_drops {
        let _ = writeln!(
            o,
            "  unusual      {} {} in 10 s, {} ago (usually {:.0})",
            u.count,
            u.reason,
            duration(u.age_secs),
            u.usual
        );
    }
    o
}

/// Bytes with a binary unit.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// `meshctl peers`.
pub fn peers(peers: &[PeerView]) -> String {
    let dash = || "-".to_string();
    // Rows first: the text columns are as wide as their widest cell.
    let rows: Vec<[String; 12]> = peers
        .iter()
        .map(|p| {
            let link = match (&p.link, p.link_rtt_ms, p.link_loss) {
                (Some(state), Some(rtt), Some(loss)) => {
                    format!("{state} {rtt:.2}ms {:.0}%", loss * 100.0)
                }
                (Some(state), _, _) => state.clone(),
                _ => dash(),
            };
            [
                p.name.clone(),
                p.addresses.first().cloned().unwrap_or_else(dash),
                p.endpoint.clone().unwrap_or_else(dash),
                p.handshake_age_secs
                    .map(|s| format!("{} ago", duration(s as u64)))
                    .unwrap_or_else(|| "never".into()),
                if p.hybrid_post_quantum { "hybrid" } else { "-" }.into(),
                match p.cipher.as_deref() {
                    Some("aes-256-gcm") => "aes-gcm",
                    Some("chacha20-poly1305") => "chacha",
                    _ => "-",
                }
                .into(),
                human_bytes(p.rx_bytes),
                human_bytes(p.tx_bytes),
                p.last_rtt_ms
                    .map(|r| format!("{r:.2}ms"))
                    .unwrap_or_else(dash),
                match (p.refused, &p.bundle_handover) {
                    // Refused here, and why (revoked, or outside our
                    // enclaves); a handover's state after the slash.
                    (true, h) => {
                        let why = match p.refused_because.as_deref() {
                            Some("revoked") => "revoked",
                            Some("enclave") => "other-enclave",
                            _ => "refused",
                        };
                        match h {
                            Some(h) => format!("{why}/{h}"),
                            None => why.to_string(),
                        }
                    }
                    (false, _) => p.path.clone(),
                },
                link,
                p.path_mtu.map(|m| m.to_string()).unwrap_or_else(dash),
            ]
        })
        .collect();
    let head = [
        "NAME",
        "OVERLAY",
        "ENDPOINT",
        "HANDSHAKE",
        "PQ",
        "CIPHER",
        "RX",
        "TX",
        "RTT",
        "PATH",
        "LINK",
        "MTU",
    ];
    // Numbers right-aligned, text left-aligned.
    let right = [
        false, false, false, true, false, false, true, true, true, false, false, true,
    ];
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            if i > 0 {
                l.push(' ');
            }
            if right[i] {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                if i + 1 < cells.len() {
                    l.push_str(&" ".repeat(pad));
                }
            }
        }
        l
    };
    let mut o = String::new();
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    let _ = writeln!(o, "{}", line(&head));
    for (p, r) in peers.iter().zip(&rows) {
        let _ = writeln!(o, "{}", line(r));
        if let Some(why) = &p.relayed_because {
            let _ = writeln!(o, "{:<w$} relayed: {why}", "", w = width[0]);
        }
    }
    o
}

/// `meshctl routes`.
pub fn routes(routes: &[RouteView]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<18} {:<18} {:>12} {:>5} {:>9}",
        "DESTINATION", "NEXT HOP", "METRIC", "HOPS", "AGE"
    );
    for r in routes {
        let next = if r.next_hop == r.destination {
            "direct"
        } else {
            &r.next_hop
        };
        let _ = writeln!(
            o,
            "{:<18} {:<18} {:>10}µs {:>5} {:>8.0}s",
            r.destination, next, r.metric_us, r.hops, r.age_secs
        );
    }
    o
}

/// `meshctl trace`; `timeout_ms` is what the end-to-end probe waited.
pub fn trace(t: &TraceView, timeout_ms: u64) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "trace to {}", t.peer);
    for (i, h) in t.hops.iter().enumerate() {
        let _ = writeln!(
            o,
            "{:>3}  {:<18} link {:>8.3} ms   total {:>8.3} ms",
            i + 1,
            h.node,
            h.link_rtt_ms,
            h.cumulative_ms
        );
    }
    let _ = match t.rtt_ms {
        Some(r) => writeln!(o, "end to end: {r:.3} ms (measured ICMP round trip)"),
        None => writeln!(o, "end to end: no reply within {timeout_ms} ms"),
    };
    o
}

/// One `meshctl ping` probe.
pub fn ping_line(v: &PingView) -> String {
    let path = match (v.path.as_str(), v.endpoint.as_deref()) {
        ("direct", Some(e)) => format!("direct to {e}"),
        (p, _) => p.to_string(),
    };
    match v.rtt_ms {
        Some(rtt) => format!(
            "reply from {} ({}), path {path}: seq={} time={rtt:.3} ms",
            v.peer, v.address, v.seq
        ),
        None => format!(
            "no reply from {} ({}), path {path}: seq={} timeout",
            v.peer, v.address, v.seq
        ),
    }
}

/// The closing lines of `meshctl ping`: loss and round-trip statistics.
pub fn ping_summary(results: &[PingView]) -> String {
    let rtts: Vec<f64> = results.iter().filter_map(|v| v.rtt_ms).collect();
    let loss = 100.0 * (results.len() - rtts.len()) as f64 / results.len().max(1) as f64;
    let mut o = format!(
        "{} sent, {} received, {loss:.0}% loss\n",
        results.len(),
        rtts.len()
    );
    if !rtts.is_empty() {
        let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rtts.iter().copied().fold(0.0, f64::max);
        let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
        let _ = writeln!(o, "rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms");
    }
    o
}

/// `meshctl policy show`.
pub fn policy(p: &PolicyView) -> String {
    match (p.version, &p.text) {
        (Some(v), Some(t)) => {
            let mut o = format!(
                "# policy version {v}, signed {} by {}\n{t}",
                p.issued.map(rfc3339).unwrap_or_else(|| "-".into()),
                p.signer.as_deref().unwrap_or("-")
            );
            if !t.ends_with('\n') {
                o.push('\n');
            }
            o
        }
        _ => "no policy in force: all traffic between mesh members is allowed\n".into(),
    }
}

/// `meshctl policy test`.
pub fn expectations(rows: &[ExpectationView]) -> String {
    let mut o = String::new();
    for r in rows {
        let _ = writeln!(
            o,
            "{} {} -> {} {}/{}: expected {}, policy says {}",
            if r.pass { "pass" } else { "FAIL" },
            r.from,
            r.to,
            r.proto,
            r.port,
            r.expected,
            r.got
        );
    }
    let passed = rows.iter().filter(|r| r.pass).count();
    let _ = writeln!(o, "{passed} of {} expectations hold", rows.len());
    o
}

pub use types::rfc3339;

/// A duration for people: `45s`, `12m 5s`, `3h 2m`, `4d 7h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `meshctl alerts`.
pub fn alerts(r: &types::admin::AdminResponse) -> String {
    let mut o = String::new();
    let types::admin::AdminResponse::Alerts {
        mode,
        alerts,
        counts,
        accusations,
        quorum,
    } = r
    else {
        return o;
    };
    if mode == "off" {
        o.push_str("intrusion detection is off ([ids] mode = \"off\")\n");
        return o;
    }
    if alerts.is_empty() {
        let _ = writeln!(o, "no alerts (intrusion detection: {mode})");
    } else {
        let _ = writeln!(o, "intrusion detection: {mode}; {} alert(s)", alerts.len());
    }
    for a in alerts {
        let held = a
            .for_secs
            .map(|s| format!(" for {}", duration(s)))
            .unwrap_or_default();
        let by = if a.accusers.is_empty() {
            String::new()
        } else {
            format!(" (accused by {})", a.accusers.join(", "))
        };
        let _ = writeln!(
            o,
            "  {:>9} ago  {:<20} {:<12} offence {:<3} {}{held}{by}",
            duration(a.age_secs as u64),
            a.peer,
            a.scenario,
            a.offence,
            a.response
        );
    }
    if !counts.is_empty() {
        let total: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(o, "since start: {}", total.join(", "));
    }
    if !accusations.is_empty() {
        let _ = writeln!(
            o,
            "accusations held ({quorum} distinct accusers quarantine a member here):"
        );
    }
    for a in accusations {
        let counts = if a.counts { "" } else { " (not counted)" };
        let _ = writeln!(
            o,
            "  {:<20} accuses {:<20} {:<12} holds {}{counts}",
            a.accuser,
            a.accused,
            a.scenario,
            duration(a.holds_secs)
        );
    }
    o
}

/// `meshctl quarantine`.
pub fn quarantine(r: &types::admin::AdminResponse) -> String {
    let mut o = String::new();
    let types::admin::AdminResponse::Quarantine {
        released,
        sanctioned,
    } = r
    else {
        return o;
    };
    if let Some(p) = released {
        let _ = writeln!(
            o,
            "released {p}: its sanction is lifted and its evidence forgotten"
        );
    }
    if sanctioned.is_empty() {
        o.push_str("no peer is rate-limited or quarantined\n");
    }
    for s in sanctioned {
        let _ = writeln!(
            o,
            "  {:<20} {:<11} {} left, {} quarantine(s) so far{}",
            s.peer,
            s.response,
            duration(s.remaining_secs),
            s.quarantines,
            if s.by == "quorum" {
                " (by quorum: meshctl alerts lists the accusers)"
            } else {
                ""
            }
        );
    }
    o
}

/// `meshctl revoked`.
pub fn revoked(r: &types::admin::AdminResponse) -> String {
    let mut o = String::new();
    let types::admin::AdminResponse::Revocations { version, entries } = r else {
        return o;
    };
    match version {
        None => o.push_str("no revocation list in force: nothing is revoked\n"),
        Some(v) => {
            let _ = writeln!(
                o,
                "revocation list version {v}: {} certificate(s) revoked",
                entries.len()
            );
            for e in entries {
                let _ = writeln!(o, "  {:<24} {}", e.name, e.fingerprint);
            }
        }
    }
    o
}

/// `meshctl rekey`.
pub fn rekeying(r: &types::admin::AdminResponse) -> String {
    let types::admin::AdminResponse::Rekeying { peer, had_session } = r else {
        return String::new();
    };
    if *had_session {
        format!("rekeying with '{peer}': a new handshake is under way; the current session carries traffic until it completes (meshctl peers shows the handshake's age)\n")
    } else {
        format!("'{peer}' had no session: a handshake is under way (meshctl peers shows when it completes)\n")
    }
}

/// `meshctl reload`.
pub fn reload(v: &types::admin::ReloadView) -> String {
    let mut o = String::new();
    if v.applied.is_empty() && v.restart_needed.is_empty() {
        o.push_str("reloaded: nothing changed\n");
    }
    for a in &v.applied {
        let _ = writeln!(o, "applied        {a}");
    }
    for r in &v.restart_needed {
        let _ = writeln!(o, "needs restart  {r}");
    }
    for w in &v.warnings {
        let _ = writeln!(o, "warning        {w}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use types::admin::HopView;

    #[test]
    fn the_peers_table_fits_long_names_and_keeps_its_columns() {
        let long = "a-member-name-much-longer-than-sixteen";
        let rows = [
            PeerView {
                name: long.into(),
                addresses: vec!["100.64.0.2/10".into()],
                path: "direct".into(),
                handshake_age_secs: Some(3725.0),
                ..PeerView::default()
            },
            PeerView {
                name: "b".into(),
                addresses: vec!["100.64.0.3/10".into()],
                path: format!("via {long}"),
                ..PeerView::default()
            },
        ];
        let t = peers(&rows);
        let lines: Vec<&str> = t.lines().collect();
        let col = |l: &str, what: &str| l.find(what).unwrap();
        // OVERLAY starts where each row's overlay address starts.
        assert_eq!(col(lines[0], "OVERLAY"), col(lines[1], "100.64.0.2"), "{t}");
        assert_eq!(col(lines[0], "OVERLAY"), col(lines[2], "100.64.0.3"), "{t}");
        assert_eq!(
            col(lines[0], "LINK"),
            col(lines[1], "direct") + long.len() + 5,
            "{t}"
        );
        assert!(lines[1].contains("1h 2m ago"), "{t}");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(725), "12m 5s");
        assert_eq!(duration(3 * 3600 + 125), "3h 2m");
        assert_eq!(duration(4 * 86_400 + 7 * 3600 + 59), "4d 7h");
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn bytes_get_a_binary_unit() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }

    fn view(kind: &str, verification: Option<&str>) -> CertificateView {
        CertificateView {
            kind: kind.into(),
            name: "web-1".into(),
            addresses: vec!["100.64.0.10/10".into(), "fd00::10/64".into()],
            segments: vec![],
            public_key: "ab".into(),
            not_before: 0,
            not_after: 1,
            not_before_utc: "1970-01-01T00:00:00Z".into(),
            not_after_utc: "1970-01-01T00:00:01Z".into(),
            issuer: "cd".into(),
            fingerprint: "ef".into(),
            verification: verification.map(String::from),
        }
    }

    #[test]
    fn one_certificate_printer_for_every_kind() {
        let node = certificate(&view("node", Some("valid")));
        assert!(node.contains("addresses    100.64.0.10/10, fd00::10/64"));
        assert!(node.contains("segments     -"));
        assert!(node.contains("static key   ab (X25519)"));
        assert!(node.contains("issuer       cd"));
        assert!(node.contains("verification valid"));
        let ca = certificate(&view("ca", None));
        assert!(ca.contains("signing key  ab (Ed25519)"));
        assert!(!ca.contains("issuer") && !ca.contains("verification"));
        for text in [&node, &ca] {
            assert!(
                text.contains("fingerprint  ef")
                    && text.contains("not after    1970-01-01T00:00:01Z")
            );
        }
    }

    #[test]
    fn trace_and_ping_lines_say_what_happened() {
        let t = TraceView {
            peer: "d".into(),
            hops: vec![
                HopView {
                    node: "b".into(),
                    link_rtt_ms: 0.5,
                    cumulative_ms: 0.5,
                },
                HopView {
                    node: "d".into(),
                    link_rtt_ms: 0.25,
                    cumulative_ms: 0.75,
                },
            ],
            rtt_ms: None,
        };
        let text = trace(&t, 900);
        assert!(text.contains("  2  d"), "{text}");
        assert!(text.contains("no reply within 900 ms"));
        let mut p = PingView {
            peer: "b".into(),
            address: "100.64.0.2".into(),
            seq: 3,
            path: "direct".into(),
            endpoint: Some("198.18.0.2:51820".into()),
            rtt_ms: Some(0.4),
        };
        assert_eq!(
            ping_line(&p),
            "reply from b (100.64.0.2), path direct to 198.18.0.2:51820: seq=3 time=0.400 ms"
        );
        let lost = PingView {
            rtt_ms: None,
            path: "via c".into(),
            ..p.clone()
        };
        assert!(ping_line(&lost).starts_with("no reply from b (100.64.0.2), path via c"));
        p.rtt_ms = Some(0.2);
        let s = ping_summary(&[p, lost]);
        assert!(s.starts_with("2 sent, 1 received, 50% loss"), "{s}");
        assert!(s.contains("rtt min/avg/max = 0.200/0.200/0.200 ms"));
    }

    #[test]
    fn no_policy_and_expectations() {
        let none = PolicyView {
            version: None,
            issued: None,
            signer: None,
            text: None,
        };
        assert!(policy(&none).starts_with("no policy in force"));
        let some = PolicyView {
            version: Some(2),
            issued: Some(0),
            signer: Some("ca".into()),
            text: Some("[[rule]]".into()),
        };
        assert_eq!(
            policy(&some),
            "# policy version 2, signed 1970-01-01T00:00:00Z by ca\n[[rule]]\n"
        );
        let row = ExpectationView {
            from: "web-1".into(),
            to: "db-1".into(),
            proto: "tcp".into(),
            port: 5432,
            expected: "allow".into(),
            got: "deny (no rule allows it)".into(),
            pass: false,
        };
        let text = expectations(&[row]);
        assert!(text.contains("FAIL web-1 -> db-1 tcp/5432: expected allow"));
        assert!(text.ends_with("0 of 1 expectations hold\n"));
    }
}
