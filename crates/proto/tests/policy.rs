//! The compiled policy against the naive reference evaluator, over random
//! policies and packets (proptest).
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use proptest::prelude::*;
use proto::policy::{Action, Policy, Proto, Rule, Selector, Subject};

const SEGMENTS: [&str; 4] = ["web", "db", "ops", "pci"];
const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];
const ADDRS: [[u8; 4]; 4] = [
    [100, 64, 0, 1],
    [100, 64, 1, 2],
    [100, 65, 0, 3],
    [10, 0, 0, 4],
];

fn selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        Just(Selector::Any),
        (0..4usize).prop_map(|i| Selector::Segment(SEGMENTS[i].into())),
        (0..4usize).prop_map(|i| Selector::Node(NODES[i].into())),
        (0..4usize, prop::sample::select(vec![8u8, 10, 16, 24, 32]))
            .prop_map(|(i, l)| Selector::Cidr(IpAddr::from(ADDRS[i]), l)),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        selector(),
        selector(),
        0..4u8,
        prop::collection::vec((0u16..600, 0u16..600), 0..3),
    )
        .prop_map(|(deny, from, to, p, ranges)| {
            let proto = [Proto::Any, Proto::Tcp, Proto::Udp, Proto::Icmp][p as usize];
            let ranges = if proto == Proto::Any {
                vec![]
            } else {
                ranges
                    .into_iter()
                    .map(|(a, b)| (a.min(b), a.max(b)))
                    .collect()
            };
            Rule {
                action: if deny { Action::Deny } else { Action::Allow },
                from,
                to,
                proto,
                ranges,
            }
        })
}

fn subject() -> impl Strategy<Value = (usize, Vec<String>, usize)> {
    (
        0..4usize,
        prop::sample::subsequence(SEGMENTS.to_vec(), 0..3)
            .prop_map(|v| v.into_iter().map(String::from).collect()),
        0..4usize,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn compiled_policy_agrees_with_the_reference(
        rules in prop::collection::vec(rule(), 0..150),
        enclaves in prop::sample::subsequence(SEGMENTS.to_vec(), 0..2),
        packets in prop::collection::vec(
            (subject(), subject(), prop::sample::select(vec![1u8, 6, 17, 58, 47]), prop_oneof![0u16..700, Just(u16::MAX)]),
            1..40,
        ),
    ) {
        let policy = Policy {
            enclaves: enclaves.into_iter().map(String::from).collect(),
            rules,
            expectations: vec![],
            detection: vec![],
        };
        let compiled = policy.compile();
        for ((sn, ss, sa), (dn, ds, da), proto, port) in packets {
            let src = Subject { name: NODES[sn], segments: &ss, addr: IpAddr::from(ADDRS[sa]) };
            let dst = Subject { name: NODES[dn], segments: &ds, addr: IpAddr::from(ADDRS[da]) };
            let want = policy.decide_naive(&src, &dst, proto, port);
            let got = compiled.decide(&compiled.identity(&src), &compiled.identity(&dst), proto, port);
            prop_assert_eq!(got, want, "{:?} -> {:?} proto {} port {}", src, dst, proto, port);
        }
    }
}

/// Every TOML example in docs/policy.md is a policy this parser takes.
#[test]
fn the_policy_examples_in_the_docs_parse() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policy.md"))
        .unwrap();
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(!blocks.is_empty(), "no toml example in docs/policy.md");
    for b in blocks {
        if let Err(e) = proto::policy::Policy::parse(b) {
            panic!("docs/policy.md example does not parse: {e}\n{b}");
        }
    }
}
