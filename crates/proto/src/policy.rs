//! Segment policy: the TOML language, its compiled form, and per-packet
//! decisions without a linear scan of the rules.
//!
//! ```toml
//! enclaves = ["pci"]            # segments whose members talk only to members
//!
//! [[rule]]
//! action = "allow"              # or "deny"
//! from = "segment:web"          # any | segment:NAME | node:NAME | cidr:ADDR/LEN
//! to = "segment:db"
//! proto = "tcp"                 # any | tcp | udp | icmp
//! ports = ["5432", "8000-8100"] # tcp/udp destination ports (default: all)
//! # icmp-types = [8]            # icmp only (default: all)
//!
//! [[expect]]                    # checked by `Policy::check_expectations`
//! from = "web-1"                # a node name from the test inventory
//! to = "db-1"
//! proto = "tcp"
//! port = 5432
//! verdict = "allow"
//! ```
//!
//! Evaluation order, in full: (1) if the two ends are not members of the
//! same enclaves, deny (`enclave`); (2) if any deny rule matches, deny
//! (`deny-rule`); (3) if any allow rule matches, allow; (4) otherwise deny
//! (`default`). So deny always wins, and nothing passes that no rule allows.
//!
//! Compiled form: every rule is a bit. An end's *identity* (its name,
//! segments and the packet's address on that side) is turned once into two
//! bitsets, the rules whose `from` and whose `to` it matches; callers cache
//! it per peer address. A (protocol, port) pair selects a precomputed bitset
//! by binary search over the port boundaries. A decision is then three
//! bitset ANDs and two mask tests: its cost grows with rules / 64 words, not
//! with rules.

use core::fmt;
use std::net::IpAddr;

use serde::Deserialize;

/// IP protocol numbers the policy distinguishes.
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// A rule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Let matching packets through (unless a deny also matches).
    Allow,
    /// Drop matching packets, whatever else matches.
    Deny,
}

/// Why a packet was refused (each has a counter in the data plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The ends are not members of the same enclaves.
    Enclave,
    /// A deny rule matched (its index in the policy).
    Rule(usize),
    /// No allow rule matched.
    Default,
}

/// A decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass.
    Allow,
    /// Drop, and why.
    Deny(DenyReason),
}

/// Who or what a rule side names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Everything.
    Any,
    /// Nodes whose certificate lists this segment.
    Segment(String),
    /// The node with this certificate name.
    Node(String),
    /// Packets whose address on that side is in this prefix.
    Cidr(IpAddr, u8),
}

impl Selector {
    fn parse(s: &str) -> Result<Self, String> {
        if s == "any" {
            return Ok(Self::Any);
        }
        let (kind, value) = s.split_once(':').ok_or_else(|| {
            format!("'{s}' is not a selector; use any, segment:NAME, node:NAME or cidr:ADDR/LEN")
        })?;
        match kind {
            "segment" if !value.is_empty() => Ok(Self::Segment(value.into())),
            "node" if !value.is_empty() => Ok(Self::Node(value.into())),
            "cidr" => {
                let (a, l) = value.split_once('/').ok_or_else(|| {
                    format!("'{value}' needs a prefix length, e.g. 100.64.0.0/16")
                })?;
                let addr: IpAddr = a
                    .parse()
                    .map_err(|_| format!("'{a}' is not an IP address"))?;
                let len: u8 = l
                    .parse()
                    .map_err(|_| format!("'{l}' is not a prefix length"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if len > max {
                    return Err(format!("prefix length {len} is longer than {max}"));
                }
                Ok(Self::Cidr(addr, len))
            }
            _ => Err(format!(
                "'{s}' is not a selector; use any, segment:NAME, node:NAME or cidr:ADDR/LEN"
            )),
        }
    }

    fn matches(&self, who: &Subject<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::Segment(s) => who.segments.iter().any(|x| x == s),
            Self::Node(n) => who.name == n,
            Self::Cidr(net, len) => in_prefix(who.addr, *net, *len),
        }
    }
}

fn in_prefix(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// One end of a packet, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Certificate name.
    pub name: &'a str,
    /// Certificate segments.
    pub segments: &'a [String],
    /// The packet's address on this side.
    pub addr: IpAddr,
}

/// Which protocol a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Every protocol.
    Any,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Allow or deny.
    pub action: Action,
    /// Source side.
    pub from: Selector,
    /// Destination side.
    pub to: Selector,
    /// Protocol.
    pub proto: Proto,
    /// Inclusive destination port ranges (tcp/udp) or ICMP type ranges
    /// (icmp); empty means all.
    pub ranges: Vec<(u16, u16)>,
}

/// An expectation written beside the rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Expectation {
    /// Source node (name in the inventory given to the check).
    pub from: String,
    /// Destination node.
    pub to: String,
    /// Protocol: tcp, udp or icmp.
    pub proto: String,
    /// Destination port (tcp/udp), or an ICMP type number.
    #[serde(default)]
    pub port: Option<u16>,
    /// ICMP type by name (`echo-request`, `echo-reply`): an icmp
    /// expectation names one, or a type number as `port`.
    #[serde(default)]
    pub icmp_type: Option<String>,
    /// allow or deny.
    pub verdict: Action,
}

/// ICMP types by name, as (ICMPv4, ICMPv6) numbers: a rule naming one
/// matches both families.
const ICMP_NAMES: [(&str, u8, u8); 2] = [("echo-request", 8, 128), ("echo-reply", 0, 129)];

fn icmp_name(name: &str) -> Result<(u8, u8), String> {
    (ICMP_NAMES.iter())
        .find(|(n, _, _)| *n == name)
        .map(|(_, v4, v6)| (*v4, *v6))
        .ok_or_else(|| format!("ICMP type '{name}': use echo-request, echo-reply or a type number"))
}

impl Expectation {
    /// The destination port, or the ICMP type for a destination of this
    /// family; an icmp expectation that names no type is an error (port 0
    /// would silently mean echo-reply).
    pub fn port_for(&self, dst_v6: bool) -> Result<u16, String> {
        match (&self.icmp_type, self.port) {
            (Some(n), _) => {
                let (v4, v6) = icmp_name(n)?;
                Ok(u16::from(if dst_v6 { v6 } else { v4 }))
            }
            (None, Some(p)) => Ok(p),
            (None, None) if self.proto == "icmp" => Err(
                "icmp needs the type it expects: icmp-type = \"echo-request\" (or port = TYPE)"
                    .into(),
            ),
            (None, None) => Ok(0),
        }
    }
}

/// An ICMP type in a rule: a number, or a name matching both families.
#[derive(Deserialize)]
#[serde(untagged)]
enum IcmpTypeSpec {
    Number(u8),
    Name(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RuleSpec {
    action: Action,
    from: String,
    to: String,
    #[serde(default = "any")]
    proto: String,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    icmp_types: Vec<IcmpTypeSpec>,
}

fn any() -> String {
    "any".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct PolicySpec {
    #[serde(default)]
    enclaves: Vec<String>,
    #[serde(default)]
    rule: Vec<RuleSpec>,
    #[serde(default)]
    expect: Vec<Expectation>,
    #[serde(default)]
    detection: std::collections::BTreeMap<String, DetectionSpec>,
}

/// `[detection.NAME]`: one intrusion-detection scenario's thresholds.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct DetectionSpec {
    capacity: u32,
    leak_per_sec: f64,
    response: String,
}

/// Why a policy text was refused: where, what, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for PolicyError {}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Enclave segments (at most 64).
    pub enclaves: Vec<String>,
    /// Rules, in file order.
    pub rules: Vec<Rule>,
    /// Expectations.
    pub expectations: Vec<Expectation>,
    /// Intrusion-detection thresholds (`[detection.NAME]`), by scenario.
    pub detection: Vec<crate::ids::Tuning>,
}

/// The line of the n-th (0-based) `header` line, 0 when absent.
fn nth_line(text: &str, header: &str, n: usize) -> usize {
    (text.lines().enumerate())
        .filter(|(_, l)| l.trim() == header)
        .nth(n)
        .map_or(0, |(i, _)| i + 1)
}

fn line_of(text: &str, needle_index: usize) -> usize {
    // The n-th [[rule]] header's line.
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[rule]]")
        .nth(needle_index)
        .map_or(0, |(i, _)| i + 1)
}

fn parse_range(s: &str, what: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let p = |x: &str| {
        x.trim()
            .parse::<u16>()
            .map_err(|_| format!("{what} '{s}' is not N or A-B with numbers 0-65535"))
    };
    let (a, b) = (p(a)?, p(b)?);
    if a > b {
        return Err(format!("{what} range '{s}' runs backwards; write {b}-{a}"));
    }
    Ok((a, b))
}

impl Policy {
    /// Parses policy TOML; errors name the line and the fix.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let spec: PolicySpec = toml::from_str(text).map_err(|e| PolicyError {
            line: e.span().map_or(0, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            }),
            message: e.message().trim().to_string(),
        })?;
        if spec.enclaves.len() > 64 {
            return Err(PolicyError {
                line: 0,
                message: "more than 64 enclaves; merge some".into(),
            });
        }
        let mut rules = Vec::with_capacity(spec.rule.len());
        for (i, r) in spec.rule.into_iter().enumerate() {
            let err = |message: String| PolicyError {
                line: line_of(text, i),
                message: format!("rule {}: {message}", i + 1),
            };
            let from = Selector::parse(&r.from).map_err(|m| err(format!("from: {m}")))?;
            let to = Selector::parse(&r.to).map_err(|m| err(format!("to: {m}")))?;
            let proto = match r.proto.as_str() {
                "any" => Proto::Any,
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                "icmp" => Proto::Icmp,
                p => return Err(err(format!("proto '{p}': use any, tcp, udp or icmp"))),
            };
            if !r.ports.is_empty() && !matches!(proto, Proto::Tcp | Proto::Udp) {
                return Err(err("ports need proto = \"tcp\" or \"udp\"".into()));
            }
            if !r.icmp_types.is_empty() && proto != Proto::Icmp {
                return Err(err("icmp-types need proto = \"icmp\"".into()));
            }
            let ranges = if proto == Proto::Icmp {
                let mut v = Vec::new();
                for t in &r.icmp_types {
                    match t {
                        IcmpTypeSpec::Number(n) => v.push((u16::from(*n), u16::from(*n))),
                        IcmpTypeSpec::Name(n) => {
                            let (v4, v6) = icmp_name(n).map_err(err)?;
                            v.push((u16::from(v4), u16::from(v4)));
                            v.push((u16::from(v6), u16::from(v6)));
                        }
                    }
                }
                v
            } else {
                r.ports
                    .iter()
                    .map(|p| parse_range(p, "port"))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?
            };
            rules.push(Rule {
                action: r.action,
                from,
                to,
                proto,
                ranges,
            });
        }
        for (i, e) in spec.expect.iter().enumerate() {
            e.port_for(false).map_err(|m| PolicyError {
                line: nth_line(text, "[[expect]]", i),
                message: format!("expect {}: {m}", i + 1),
            })?;
        }
        let mut detection = Vec::new();
        for (name, d) in spec.detection {
            let header = format!("[detection.{name}]");
            let err = |message: String| PolicyError {
                line: nth_line(text, &header, 0),
                message: format!("detection.{name}: {message}"),
            };
            if !crate::ids::SCENARIOS.contains(&name.as_str()) {
                return Err(err(format!(
                    "no such scenario; use one of {}",
                    crate::ids::SCENARIOS.join(", ")
                )));
            }
            if !(1..=1_000_000).contains(&d.capacity) {
                return Err(err("capacity: use 1 to 1000000 pieces of evidence".into()));
            }
            if !(d.leak_per_sec.is_finite() && (0.001..=1_000_000.0).contains(&d.leak_per_sec)) {
                return Err(err(
                    "leak-per-sec: use 0.001 to 1000000 (pieces forgotten a second)".into(),
                ));
            }
            let response = crate::ids::Response::parse(&d.response).ok_or_else(|| {
                err(format!(
                    "response '{}': use alert, rate-limit or quarantine",
                    d.response
                ))
            })?;
            detection.push(crate::ids::Tuning {
                scenario: name,
                capacity: d.capacity,
                leak_milli_per_sec: (d.leak_per_sec * 1000.0).round() as u32,
                response,
            });
        }
        Ok(Self {
            enclaves: spec.enclaves,
            rules,
            expectations: spec.expect,
            detection,
        })
    }

    /// The reference evaluator: every rule in turn, as the module docs say.
    /// Slow and obviously right; the compiled form is tested against it.
    pub fn decide_naive(
        &self,
        src: &Subject<'_>,
        dst: &Subject<'_>,
        proto: u8,
        port: u16,
    ) -> Verdict {
        for e in &self.enclaves {
            let a = src.segments.contains(e);
            let b = dst.segments.contains(e);
            if a != b {
                return Verdict::Deny(DenyReason::Enclave);
            }
        }
        let hits = |r: &Rule| {
            let proto_ok = match r.proto {
                Proto::Any => true,
                Proto::Tcp => proto == TCP,
                Proto::Udp => proto == UDP,
                Proto::Icmp => proto == ICMP || proto == ICMPV6,
            };
            proto_ok
                && (r.ranges.is_empty() || r.ranges.iter().any(|(a, b)| (*a..=*b).contains(&port)))
                && r.from.matches(src)
                && r.to.matches(dst)
        };
        if let Some(i) = self
            .rules
            .iter()
            .position(|r| r.action == Action::Deny && hits(r))
        {
            return Verdict::Deny(DenyReason::Rule(i));
        }
        if self
            .rules
            .iter()
            .any(|r| r.action == Action::Allow && hits(r))
        {
            Verdict::Allow
        } else {
            Verdict::Deny(DenyReason::Default)
        }
    }

    /// Evaluates every `[[expect]]` against an inventory of nodes (name,
    /// segments, overlay address), with the compiled engine. An expectation
    /// naming a node the inventory lacks, or an unknown protocol, is an error.
    pub fn check_expectations(
        &self,
        inventory: &[(String, Vec<String>, IpAddr)],
    ) -> Result<Vec<ExpectationResult>, String> {
        let compiled = self.compile();
        let find = |name: &str| {
            inventory.iter().find(|(n, _, _)| n == name).ok_or_else(|| {
                format!("expectation names node '{name}', which no certificate given has")
            })
        };
        self.expectations
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (sn, ss, sa) = find(&e.from)?;
                let (dn, ds, da) = find(&e.to)?;
                let proto = match e.proto.as_str() {
                    "tcp" => TCP,
                    "udp" => UDP,
                    "icmp" => ICMP,
                    p => {
                        return Err(format!(
                            "expectation {}: proto '{p}': use tcp, udp or icmp",
                            i + 1
                        ))
                    }
                };
                let src = Subject {
                    name: sn,
                    segments: ss,
                    addr: *sa,
                };
                let dst = Subject {
                    name: dn,
                    segments: ds,
                    addr: *da,
                };
                let port = e
                    .port_for(da.is_ipv6())
                    .map_err(|m| format!("expectation {}: {m}", i + 1))?;
                let got = compiled.decide(
                    &compiled.identity(&src),
                    &compiled.identity(&dst),
                    proto,
                    port,
                );
                let pass = matches!(
                    (e.verdict, got),
                    (Action::Allow, Verdict::Allow) | (Action::Deny, Verdict::Deny(_))
                );
                Ok(ExpectationResult {
                    index: i,
                    expectation: e.clone(),
                    got,
                    pass,
                })
            })
            .collect()
    }

    /// Compiles the policy for per-packet decisions.
    pub fn compile(&self) -> Compiled {
        let words = self.rules.len().div_ceil(64).max(1);
        let mut deny = vec![0u64; words];
        let mut allow = vec![0u64; words];
        for (i, r) in self.rules.iter().enumerate() {
            let m = if r.action == Action::Deny {
                &mut deny
            } else {
                &mut allow
            };
            m[i / 64] |= 1 << (i % 64);
        }
        let tables = [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Any].map(|bucket| {
            // Rules that apply to this protocol bucket, each with its ranges.
            let applicable: Vec<(usize, Vec<(u16, u16)>)> = self
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.proto == Proto::Any || (r.proto == bucket && bucket != Proto::Any)
                })
                .map(|(i, r)| {
                    let ranges = if r.ranges.is_empty() {
                        vec![(0, u16::MAX)]
                    } else {
                        r.ranges.clone()
                    };
                    (i, ranges)
                })
                .collect();
            let mut starts: Vec<u16> = vec![0];
            for (_, rs) in &applicable {
                for (a, b) in rs {
                    starts.push(*a);
                    if *b < u16::MAX {
                        starts.push(b + 1);
                    }
                }
            }
            starts.sort_unstable();
            starts.dedup();
            let sets = starts
                .iter()
                .map(|&p| {
                    let mut set = vec![0u64; words];
                    for (i, rs) in &applicable {
                        if rs.iter().any(|(a, b)| (*a..=*b).contains(&p)) {
                            set[i / 64] |= 1 << (i % 64);
                        }
                    }
                    set
                })
                .collect();
            PortTable { starts, sets }
        });
        Compiled {
            rules: self.rules.clone(),
            enclaves: self.enclaves.clone(),
            detection: self.detection.clone(),
            words,
            deny,
            allow,
            tables,
        }
    }
}

/// One expectation's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectationResult {
    /// Its position in the file (0-based).
    pub index: usize,
    /// What was written.
    pub expectation: Expectation,
    /// What the policy decides.
    pub got: Verdict,
    /// Whether they agree.
    pub pass: bool,
}

#[derive(Debug, Clone)]
struct PortTable {
    /// Interval starts, ascending, first 0.
    starts: Vec<u16>,
    /// Rule bitset per interval.
    sets: Vec<Vec<u64>>,
}

impl PortTable {
    fn lookup(&self, port: u16) -> &[u64] {
        let i = self.starts.partition_point(|s| *s <= port) - 1;
        &self.sets[i]
    }
}

/// One end's identity against a compiled policy (cache it per peer address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    from: Vec<u64>,
    to: Vec<u64>,
    enclaves: u64,
}

/// A policy ready for per-packet decisions.
#[derive(Debug, Clone)]
pub struct Compiled {
    rules: Vec<Rule>,
    enclaves: Vec<String>,
    detection: Vec<crate::ids::Tuning>,
    words: usize,
    deny: Vec<u64>,
    allow: Vec<u64>,
    /// tcp, udp, icmp, other.
    tables: [PortTable; 4],
}

impl Compiled {
    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Intrusion-detection thresholds the policy sets.
    pub fn detection(&self) -> &[crate::ids::Tuning] {
        &self.detection
    }

    /// The enclave segments.
    pub fn enclaves(&self) -> &[String] {
        &self.enclaves
    }

    /// Which enclaves (bit i = `enclaves()[i]`) a node with these segments
    /// belongs to. Two nodes may talk only if their masks are equal.
    pub fn enclave_mask(&self, segments: &[String]) -> u64 {
        self.enclaves
            .iter()
            .enumerate()
            .filter(|(_, e)| segments.contains(e))
            .fold(0u64, |m, (i, _)| m | 1 << i)
    }

    /// The rule bitsets an end matches as source and as destination.
    pub fn identity(&self, who: &Subject<'_>) -> Identity {
        let mut from = vec![0u64; self.words];
        let mut to = vec![0u64; self.words];
        for (i, r) in self.rules.iter().enumerate() {
            if r.from.matches(who) {
                from[i / 64] |= 1 << (i % 64);
            }
            if r.to.matches(who) {
                to[i / 64] |= 1 << (i % 64);
            }
        }
        let enclaves = self.enclave_mask(who.segments);
        Identity { from, to, enclaves }
    }

    /// The verdict for a packet from `src` to `dst` with IP protocol `proto`
    /// and destination port (tcp/udp) or ICMP type (icmp; 0 otherwise).
    pub fn decide(&self, src: &Identity, dst: &Identity, proto: u8, port: u16) -> Verdict {
        if src.enclaves != dst.enclaves {
            return Verdict::Deny(DenyReason::Enclave);
        }
        let table = match proto {
            TCP => &self.tables[0],
            UDP => &self.tables[1],
            ICMP | ICMPV6 => &self.tables[2],
            _ => &self.tables[3],
        };
        let ports = table.lookup(port);
        let mut allowed = false;
        let words = ports
            .iter()
            .zip(&src.from)
            .zip(&dst.to)
            .zip(self.deny.iter().zip(&self.allow));
        for (w, (((p, f), t), (deny, allow))) in words.enumerate() {
            let hit = p & f & t;
            let denied = hit & deny;
            if denied != 0 {
                return Verdict::Deny(DenyReason::Rule(w * 64 + denied.trailing_zeros() as usize));
            }
            allowed |= hit & allow != 0;
        }
        if allowed {
            Verdict::Allow
        } else {
            Verdict::Deny(DenyReason::Default)
        }
    }
}

#[cfg(test)]
mod tests;
