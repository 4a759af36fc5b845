use super::*;

const MIN: &str = r#"
[node]
certificate = "a.crt"
private-key = "a.key"
ca-certificate = "ca.crt"
"#;

#[test]
fn defaults_fill_in() {
    let c = NodeConfig::parse(MIN).unwrap();
    assert_eq!(c.tun.name, "meshd0");
    assert_eq!(c.listen.address.port(), 51820);
    assert!(c.peers.is_empty());
    assert_eq!(c.policy.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
}

#[test]
fn errors_name_line_field_and_fix() {
    let e = NodeConfig::parse(&format!("{MIN}\n[tun]\nnmae = \"x\"\n")).unwrap_err();
    assert!(
        e.contains("line 8") && e.contains("nmae") && e.contains("spelling"),
        "{e}"
    );
    let e = NodeConfig::parse(&format!("{MIN}\n[tun]\nmtu = 100\n")).unwrap_err();
    assert!(e.contains("tun.mtu") && e.contains("1280"), "{e}");
    let e = NodeConfig::parse(&format!("{MIN}\n[tun]\nqueues = 99\n")).unwrap_err();
    assert!(e.contains("tun.queues") && e.contains("16"), "{e}");
    let e = NodeConfig::parse(&format!("{MIN}\n[tun]\nbusy-poll-us = 5000\n")).unwrap_err();
    assert!(e.contains("tun.busy-poll-us") && e.contains("2000"), "{e}");
    let c = NodeConfig::parse(&format!("{MIN}\n[tun]\nbusy-poll-us = 300\n")).unwrap();
    assert_eq!(c.tun.busy_poll_us, 300);
    let e = NodeConfig::parse("[node]\ncertificate = \"a\"\n").unwrap_err();
    assert!(
        e.contains("missing field") && e.contains("private-key"),
        "{e}"
    );
    let e = NodeConfig::parse(&format!(
        "{MIN}\n[metrics]\naddress = \"198.18.0.1:9720\"\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("metrics.address") && e.contains("metrics.allow"),
        "{e}"
    );
    let e = NodeConfig::parse(&format!(
        "{MIN}\n[metrics]\naddress = \"100.64.0.1:9720\"\nallow = [\"100.64.0.10\"]\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("metrics.allow[0]") && e.contains("/PREFIX"),
        "{e}"
    );
    let c = NodeConfig::parse(&format!(
            "{MIN}\n[metrics]\naddress = \"100.64.0.1:9720\"\nallow = [\"100.64.0.8/30\", \"fd00::/8\"]\n"
        ))
        .unwrap();
    let ok = |a: &str| c.metrics.allows(a.parse().unwrap());
    assert!(ok("100.64.0.10") && ok("fd00::5") && ok("127.0.0.1") && ok("::ffff:100.64.0.9"));
    assert!(!ok("100.64.0.12") && !ok("198.18.0.1") && !ok("fe80::1"));
    let e =
        NodeConfig::parse(&format!("{MIN}\n[discovery]\ndns-domain = \"my mesh\"\n")).unwrap_err();
    assert!(
        e.contains("discovery.dns-domain") && e.contains("labels"),
        "{e}"
    );
    for ok in ["mesh", "corp.mesh.", ""] {
        let text = format!("{MIN}\n[discovery]\ndns-domain = \"{ok}\"\n");
        assert!(NodeConfig::parse(&text).is_ok(), "{ok}");
    }
    let e =
        NodeConfig::parse(&format!("{MIN}\n[routing]\ndirect-margin-us = 5000000\n")).unwrap_err();
    assert!(e.contains("routing.direct-margin-us"), "{e}");
    for bad in [
        "quarantine-secs = 0",
        "rate-limit-pps = 0",
        "quorum = 1",
        "quorum = 65",
        "mode = \"block\"",
    ] {
        let e = NodeConfig::parse(&format!("{MIN}\n[ids]\n{bad}\n")).unwrap_err();
        assert!(e.contains("ids") || e.contains("mode"), "{bad}: {e}");
    }
    let ids = NodeConfig::parse(&format!("{MIN}\n[ids]\nmode = \"detect\"\n")).unwrap();
    assert_eq!(ids.ids.mode, IdsMode::Detect);
    let relay = |v: &str| NodeConfig::parse(&format!("{MIN}\n[routing]\nrelay = {v}\n"));
    assert_eq!(
        NodeConfig::parse(MIN).unwrap().routing.relay,
        RelayMode::Auto
    );
    assert_eq!(relay("\"auto\"").unwrap().routing.relay, RelayMode::Auto);
    assert_eq!(relay("true").unwrap().routing.relay, RelayMode::On);
    assert_eq!(relay("false").unwrap().routing.relay, RelayMode::Off);
    let e = relay("\"sometimes\"").unwrap_err();
    assert!(e.contains("relay") && e.contains("\"auto\""), "{e}");
    let e = NodeConfig::parse(&format!("{MIN}\n[listen]\naddress = \"nope\"\n")).unwrap_err();
    assert!(
        e.contains("line 8") && e.contains("listen") || e.contains("line 8"),
        "{e}"
    );
}

#[test]
fn health_settings_are_checked_against_each_other() {
    let parse = |body: &str| NodeConfig::parse(&format!("{MIN}\n[health]\n{body}\n"));
    let c = parse("idle-probe-interval-ms = 200\ndown-after-misses = 3").unwrap();
    assert_eq!(c.health.idle_probe_interval_ms, 200);
    assert_eq!(
        c.health.active_probe_interval_ms, 50,
        "the rest keep defaults"
    );
    for (body, field, fix) in [
        (
            "active-probe-interval-ms = 5",
            "health.active-probe-interval-ms",
            "10 to 1000",
        ),
        (
            "idle-probe-interval-ms = 20",
            "health.idle-probe-interval-ms",
            "50 (active-probe-interval-ms)",
        ),
        (
            "down-after-misses = 1",
            "health.down-after-misses",
            "2 to 16",
        ),
        (
            "hold-down-ms = 3600000",
            "health.hold-down-ms",
            "0 to 600000",
        ),
        ("probe-every = 1", "probe-every", "spelling"),
    ] {
        let e = parse(body).unwrap_err();
        assert!(e.contains(field) && e.contains(fix), "{body}: {e}");
    }
}

#[test]
fn admission_accepts_any_member_by_default_and_checks_segment_names() {
    let c = NodeConfig::parse(MIN).unwrap();
    assert!(c.admission.accept_unknown_peers);
    assert!(c.admission.accept_segments.is_empty());
    let c = NodeConfig::parse(&format!(
        "{MIN}\n[admission]\naccept-unknown-peers = false\naccept-segments = [\"ops\", \"db-1\"]\n"
    ))
    .unwrap();
    assert!(!c.admission.accept_unknown_peers);
    assert_eq!(c.admission.accept_segments, ["ops", "db-1"]);
    let e = NodeConfig::parse(&format!(
        "{MIN}\n[admission]\naccept-segments = [\"ops\", \"no spaces\"]\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("admission.accept-segments[1]") && e.contains("segment name"),
        "{e}"
    );
}
