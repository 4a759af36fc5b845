use super::*;

const EXAMPLE: &str = r#"
enclaves = ["pci"]

[[rule]]
action = "allow"
from = "segment:web"
to = "segment:db"
proto = "tcp"
ports = ["5432"]

[[rule]]
action = "deny"
from = "node:web-2"
to = "any"

[[rule]]
action = "allow"
from = "any"
to = "any"
proto = "icmp"
icmp-types = [8, 0]
"#;

fn who<'a>(name: &'a str, segments: &'a [String], ip: [u8; 4]) -> Subject<'a> {
    Subject {
        name,
        segments,
        addr: IpAddr::from(ip),
    }
}

#[test]
fn example_decisions_follow_the_documented_order() {
    let p = Policy::parse(EXAMPLE).unwrap();
    let c = p.compile();
    let (web, db, pci) = (
        vec!["web".to_string()],
        vec!["db".to_string()],
        vec!["pci".to_string(), "db".to_string()],
    );
    let w1 = who("web-1", &web, [100, 64, 0, 1]);
    let w2 = who("web-2", &web, [100, 64, 0, 2]);
    let d1 = who("db-1", &db, [100, 64, 0, 3]);
    let p1 = who("pci-1", &pci, [100, 64, 0, 4]);
    let cases = [
        (w1, d1, TCP, 5432, Verdict::Allow),
        (w1, d1, TCP, 5433, Verdict::Deny(DenyReason::Default)),
        (w1, d1, UDP, 5432, Verdict::Deny(DenyReason::Default)),
        (d1, w1, TCP, 5432, Verdict::Deny(DenyReason::Default)),
        (w2, d1, TCP, 5432, Verdict::Deny(DenyReason::Rule(1))),
        (w1, d1, ICMP, 8, Verdict::Allow),
        (w1, d1, ICMP, 13, Verdict::Deny(DenyReason::Default)),
        (w1, p1, TCP, 5432, Verdict::Deny(DenyReason::Enclave)),
    ];
    for (s, d, proto, port, want) in cases {
        assert_eq!(
            p.decide_naive(&s, &d, proto, port),
            want,
            "{s:?} {d:?} {proto} {port}"
        );
        let got = c.decide(&c.identity(&s), &c.identity(&d), proto, port);
        assert_eq!(got, want, "compiled: {s:?} {d:?} {proto} {port}");
    }
}

#[test]
fn expectations_pass_and_fail_against_an_inventory() {
    let text = format!(
            "{EXAMPLE}\n[[expect]]\nfrom = \"web-1\"\nto = \"db-1\"\nproto = \"tcp\"\nport = 5432\nverdict = \"allow\"\n\
             [[expect]]\nfrom = \"db-1\"\nto = \"web-1\"\nproto = \"tcp\"\nport = 22\nverdict = \"allow\"\n"
        );
    let p = Policy::parse(&text).unwrap();
    let inv = vec![
        (
            "web-1".to_string(),
            vec!["web".to_string()],
            IpAddr::from([100, 64, 0, 1]),
        ),
        (
            "db-1".to_string(),
            vec!["db".to_string()],
            IpAddr::from([100, 64, 0, 2]),
        ),
    ];
    let r = p.check_expectations(&inv).unwrap();
    assert!(r[0].pass);
    assert!(!r[1].pass);
    assert_eq!(r[1].got, Verdict::Deny(DenyReason::Default));
    let e = p.check_expectations(&inv[..1]).unwrap_err();
    assert!(e.contains("db-1"), "{e}");
}

#[test]
fn icmp_types_by_name_match_both_families_and_expectations_must_name_one() {
    let text = "[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"icmp\"\nicmp-types = [\"echo-request\"]\n\
                    [[expect]]\nfrom = \"a\"\nto = \"b\"\nproto = \"icmp\"\nicmp-type = \"echo-request\"\nverdict = \"allow\"\n\
                    [[expect]]\nfrom = \"a\"\nto = \"b\"\nproto = \"icmp\"\nicmp-type = \"echo-reply\"\nverdict = \"deny\"\n";
    let p = Policy::parse(text).unwrap();
    assert_eq!(p.rules[0].ranges, vec![(8, 8), (128, 128)]);
    let seg = ["x".to_string()];
    let (a, b) = (
        who("a", &seg, [100, 64, 0, 1]),
        who("b", &seg, [100, 64, 0, 2]),
    );
    assert_eq!(p.decide_naive(&a, &b, ICMP, 8), Verdict::Allow);
    assert_eq!(p.decide_naive(&a, &b, ICMPV6, 128), Verdict::Allow);
    assert!(matches!(p.decide_naive(&a, &b, ICMP, 0), Verdict::Deny(_)));
    let inv = vec![
        ("a".to_string(), seg.to_vec(), IpAddr::from([100, 64, 0, 1])),
        ("b".to_string(), seg.to_vec(), IpAddr::from([100, 64, 0, 2])),
    ];
    let r = p.check_expectations(&inv).unwrap();
    assert!(r.iter().all(|r| r.pass), "{r:?}");
    // An icmp expectation without a type no longer means echo-reply.
    let e = Policy::parse(
        "\n[[expect]]\nfrom = \"a\"\nto = \"b\"\nproto = \"icmp\"\nverdict = \"allow\"\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("icmp-type = \"echo-request\""), "{e}");
    let e = Policy::parse("[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"icmp\"\nicmp-types = [\"ping\"]\n")
            .unwrap_err();
    assert!(
        e.message.contains("'ping'") && e.message.contains("echo-request"),
        "{e}"
    );
}

#[test]
fn bad_policies_name_the_line_and_the_fix() {
    let e =
        Policy::parse("[[rule]]\naction = \"allow\"\nfrom = \"web\"\nto = \"any\"\n").unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.message.contains("segment:NAME"), "{e}");
    let e = Policy::parse(
        "\n[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nports = [\"80\"]\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("tcp"), "{e}");
    let e = Policy::parse(
            "[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\nproto = \"tcp\"\nports = [\"90-80\"]\n",
        )
        .unwrap_err();
    assert!(e.message.contains("80-90"), "{e}");
    let e = Policy::parse("[[rule]]\naction = \"permit\"\n").unwrap_err();
    assert!(e.line >= 1 && e.message.contains("allow"), "{e}");
    // Detection thresholds: known scenarios, sane numbers, a response.
    let ok = "[detection.scan]\ncapacity = 40\nleak-per-sec = 0.5\nresponse = \"alert\"\n";
    let p = Policy::parse(ok).unwrap();
    assert_eq!(p.detection.len(), 1);
    assert_eq!(p.detection[0].response, crate::ids::Response::Alert);
    for (text, needle) in [
        (
            "\n[detection.ports]\ncapacity = 1\nleak-per-sec = 1\nresponse = \"alert\"\n",
            "spoofing",
        ),
        (
            "\n[detection.scan]\ncapacity = 0\nleak-per-sec = 1\nresponse = \"alert\"\n",
            "capacity",
        ),
        (
            "\n[detection.scan]\ncapacity = 5\nleak-per-sec = 0\nresponse = \"alert\"\n",
            "leak-per-sec",
        ),
        (
            "\n[detection.scan]\ncapacity = 5\nleak-per-sec = 1\nresponse = \"ban\"\n",
            "rate-limit",
        ),
    ] {
        let e = Policy::parse(text).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains(needle), "{e}");
    }
}
