//! Topology files (`configs/topologies/*.toml`): hosts, the links between
//! them (each its own underlay network, with MTU and an optional TBF rate
//! limit), and each host's segments.
//!
//! ```toml
//! name = "pair"
//! [[host]]
//! name = "a"
//! segments = ["web"]
//! [[host]]
//! name = "b"
//! relay = false       # default true; false: a stub (never a hop)
//! [[link]]
//! between = ["a", "b"]
//! mtu = 1500          # default 1500
//! rate-mbit = 1000    # optional: TBF rate limit on both ends
//! receive-mtu = 1400  # optional: the second end's MTU only (a black hole)
//! ```
//!
//! Addressing is derived, so files stay short: link `k` (0-based, in file
//! order) is `198.18.k.0/24` with the first host at `.1` and the second at
//! `.2`; host `i` gets overlay `100.64.0.(i+1)/10`.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::Deserialize;

/// Most hosts in one topology (one /24 of overlay addresses, minus 0 and 255).
pub const MAX_HOSTS: usize = 200;
/// Most links (one 198.18.k.0/24 each; 198.18.0.0/15 gives 512, we use 198.18.x).
pub const MAX_LINKS: usize = 250;

/// A parsed and checked topology.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Topology {
    /// Topology name: namespaces are `mh-NAME-HOST`.
    pub name: String,
    /// Hosts, in order.
    #[serde(rename = "host")]
    pub hosts: Vec<Host>,
    /// Links, in order.
    #[serde(default, rename = "link")]
    pub links: Vec<Link>,
}

/// One host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Host {
    /// Host name (also its certificate name).
    pub name: String,
    /// Segments in its certificate.
    #[serde(default)]
    pub segments: Vec<String>,
    /// Relays for others (`[routing] relay`); false: a stub.
    #[serde(default = "yes")]
    pub relay: bool,
}

fn yes() -> bool {
    true
}

/// A point-to-point underlay link.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Link {
    /// The two hosts it joins.
    pub between: [String; 2],
    /// Link MTU, 1280..=9000.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Rate limit in Mbit/s (TBF on both ends); absent: unlimited.
    #[serde(default)]
    pub rate_mbit: Option<u32>,
    /// MTU of the second host's end only, below `mtu`: datagrams from the
    /// first host larger than this are dropped on arrival with no ICMP
    /// error, a path MTU black hole that neither end is configured for.
    #[serde(default)]
    pub receive_mtu: Option<u32>,
}

fn default_mtu() -> u32 {
    1500
}

impl Topology {
    /// Reads and checks a topology file; errors name the file, the line and the fix.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks topology text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t: Self = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
            format!(
                "{at}{}; see configs/topologies/pair.toml for the form",
                e.message().trim()
            )
        })?;
        t.check(text)?;
        Ok(t)
    }

    fn line_of(text: &str, needle: &str) -> String {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| format!("line {}: ", i + 1))
            .unwrap_or_default()
    }

    fn check(&self, text: &str) -> Result<(), String> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 12
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !valid(&self.name) {
            return Err(format!(
                "{}name '{}': use 1 to 12 of a-z 0-9 - (it becomes part of namespace names)",
                Self::line_of(text, "name"),
                self.name
            ));
        }
        if self.hosts.is_empty() || self.hosts.len() > MAX_HOSTS {
            return Err(format!(
                "a topology needs 1 to {MAX_HOSTS} [[host]] tables, this one has {}",
                self.hosts.len()
            ));
        }
        if self.links.len() > MAX_LINKS {
            return Err(format!("at most {MAX_LINKS} [[link]] tables"));
        }
        let mut names = HashSet::new();
        for h in &self.hosts {
            if !valid(&h.name) {
                return Err(format!(
                    "{}host name '{}': use 1 to 12 of a-z 0-9 -",
                    Self::line_of(text, &format!("\"{}\"", h.name)),
                    h.name
                ));
            }
            if !names.insert(h.name.as_str()) {
                return Err(format!(
                    "{}host '{}' is defined twice; host names must be unique",
                    Self::line_of(text, &format!("\"{}\"", h.name)),
                    h.name
                ));
            }
        }
        let mut pairs = HashSet::new();
        for l in &self.links {
            let [a, b] = &l.between;
            let here = Self::line_of(text, &format!("\"{a}\", \"{b}\""));
            for end in [a, b] {
                if !names.contains(end.as_str()) {
                    return Err(format!("{here}link to unknown host '{end}'; add a [[host]] named '{end}' or fix the name"));
                }
            }
            if a == b {
                return Err(format!(
                    "{here}link from '{a}' to itself; a link joins two different hosts"
                ));
            }
            let key = if a < b { (a, b) } else { (b, a) };
            if !pairs.insert(key) {
                return Err(format!(
                    "{here}second link between '{a}' and '{b}'; keep one"
                ));
            }
            if !(1280..=9000).contains(&l.mtu) {
                return Err(format!(
                    "{here}mtu {} out of range; use 1280 to 9000",
                    l.mtu
                ));
            }
            if let Some(r) = l.receive_mtu {
                if r < 1280 || r >= l.mtu {
                    return Err(format!(
                        "{here}receive-mtu {r} must be at least 1280 and below mtu {}",
                        l.mtu
                    ));
                }
            }
            if l.rate_mbit == Some(0) {
                return Err(format!(
                    "{here}rate-mbit 0 would block the link; remove it for no limit"
                ));
            }
        }
        Ok(())
    }

    /// Index of the host called `name`.
    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    /// Overlay address of host `i`.
    pub fn overlay(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, 0, i as u8 + 1)
    }

    /// Underlay address of end `end` (0 or 1) of link `k`.
    pub fn underlay(k: usize, end: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, k as u8, end as u8 + 1)
    }

    /// For host `i` and peer `j`: the peer's address on a direct link, if any.
    pub fn direct_endpoint(&self, i: usize, j: usize) -> Option<Ipv4Addr> {
        let (a, b) = (&self.hosts[i].name, &self.hosts[j].name);
        self.links.iter().enumerate().find_map(|(k, l)| {
            if &l.between[0] == a && &l.between[1] == b {
                Some(Self::underlay(k, 1))
            } else if &l.between[1] == a && &l.between[0] == b {
                Some(Self::underlay(k, 0))
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIR: &str = "name = \"t\"\n[[host]]\nname = \"a\"\n[[host]]\nname = \"b\"\n[[link]]\nbetween = [\"a\", \"b\"]\n";

    #[test]
    fn derives_addresses_and_endpoints() {
        let t = Topology::parse(PAIR).unwrap();
        assert_eq!(t.links[0].mtu, 1500);
        assert_eq!(t.direct_endpoint(0, 1), Some(Ipv4Addr::new(198, 18, 0, 2)));
        assert_eq!(t.direct_endpoint(1, 0), Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(Topology::overlay(1), Ipv4Addr::new(100, 64, 0, 2));
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let e = Topology::parse(&PAIR.replace("[\"a\", \"b\"]", "[\"a\", \"c\"]")).unwrap_err();
        assert!(
            e.starts_with("line 7: ") && e.contains("unknown host 'c'"),
            "{e}"
        );
        let e = Topology::parse(&format!("{PAIR}mtu = 100\n")).unwrap_err();
        assert!(e.contains("line 7") && e.contains("1280 to 9000"), "{e}");
        let e = Topology::parse(&format!("{PAIR}receive-mtu = 1500\n")).unwrap_err();
        assert!(e.contains("line 7") && e.contains("below mtu 1500"), "{e}");
        let ok = Topology::parse(&format!("{PAIR}receive-mtu = 1400\n")).unwrap();
        assert_eq!(ok.links[0].receive_mtu, Some(1400));
        let e = Topology::parse(&PAIR.replace("name = \"b\"", "name = \"a\"")).unwrap_err();
        assert!(e.contains("defined twice"), "{e}");
        let e = Topology::parse(&format!("{PAIR}colour = 1\n")).unwrap_err();
        assert!(e.contains("line 8") && e.contains("colour"), "{e}");
        let e = Topology::parse(&PAIR.replace("name = \"t\"", "name = \"Bad Name\"")).unwrap_err();
        assert!(e.contains("line 1") && e.contains("a-z"), "{e}");
    }
}
