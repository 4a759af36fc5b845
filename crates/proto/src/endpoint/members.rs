//! The members this node knows from the mesh rather than from its config:
//! the verified certificates of advert origins (fetched with their
//! adverts, see `gossip/`), indexed by overlay address and by name, so
//! that traffic for any member, and `meshctl ping NAME`, finds it without
//! a `[[peer]]` entry. The endpoint turns a hit into a learned peer.
//!
//! Two certificates claiming one address or name (the CA issued both):
//! the one issued first answers for it, ties to the lower node id, so
//! every node of the mesh resolves it alike. A session with the other is
//! still refused by the admission claims whoever holds it first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::cert::Certificate;
use crate::wire::NodeId;

/// Certificates by node id, with the address and name indexes.
#[derive(Default)]
pub(crate) struct Members {
    certs: BTreeMap<NodeId, Arc<Certificate>>,
    by_addr: HashMap<IpAddr, NodeId>,
    by_name: HashMap<String, NodeId>,
    /// Addresses and names more than one certificate claimed.
    contested_addrs: HashSet<IpAddr>,
    contested_names: HashSet<String>,
}

impl Members {
    pub fn get(&self, node: &NodeId) -> Option<&Arc<Certificate>> {
        self.certs.get(node)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Arc<Certificate>)> {
        self.certs.iter()
    }

    /// The member answering for overlay address `addr`.
    pub fn by_address(&self, addr: IpAddr) -> Option<NodeId> {
        self.by_addr.get(&addr).copied()
    }

    /// The member answering for name `name`.
    pub fn by_name(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }

    /// Whether `a` answers before `b` for something both claim.
    fn precedes(&self, a: (NodeId, &Certificate), b: NodeId) -> bool {
        let Some(held) = self.certs.get(&b) else {
            return true;
        };
        (a.1.body().not_before, a.0) < (held.body().not_before, b)
    }

    pub fn insert(&mut self, node: NodeId, cert: Arc<Certificate>) {
        if let Some(old) = self.certs.remove(&node) {
            self.unindex(node, &old);
        }
        for a in &cert.body().addresses {
            let holder = self.by_addr.get(&a.addr()).copied();
            if holder.is_some() {
                self.contested_addrs.insert(a.addr());
            }
            if holder.is_none_or(|h| self.precedes((node, &cert), h)) {
                self.by_addr.insert(a.addr(), node);
            }
        }
        let holder = self.by_name.get(cert.name()).copied();
        if holder.is_some() {
            self.contested_names.insert(cert.name().to_string());
        }
        if holder.is_none_or(|h| self.precedes((node, &cert), h)) {
            self.by_name.insert(cert.name().to_string(), node);
        }
        self.certs.insert(node, cert);
    }

    pub fn remove(&mut self, node: NodeId) {
        if let Some(cert) = self.certs.remove(&node) {
            self.unindex(node, &cert);
        }
    }

    /// Keeps only the members `keep` says.
    pub fn retain(&mut self, mut keep: impl FnMut(&NodeId, &Certificate) -> bool) {
        let gone: Vec<NodeId> = (self.certs.iter())
            .filter(|(id, c)| !keep(id, c))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.remove(id);
        }
    }

    /// Drops `node`'s index entries; another member claiming the same
    /// address or name takes them over (found by a scan, only for what more
    /// than one certificate ever claimed).
    fn unindex(&mut self, node: NodeId, cert: &Certificate) {
        let mut freed_addrs = Vec::new();
        for a in &cert.body().addresses {
            if self.by_addr.get(&a.addr()) == Some(&node) {
                self.by_addr.remove(&a.addr());
                if self.contested_addrs.remove(&a.addr()) {
                    freed_addrs.push(a.addr());
                }
            }
        }
        let mut freed_name = None;
        if self.by_name.get(cert.name()) == Some(&node) {
            self.by_name.remove(cert.name());
            if self.contested_names.remove(cert.name()) {
                freed_name = Some(cert.name().to_string());
            }
        }
        if freed_addrs.is_empty() && freed_name.is_none() {
            return;
        }
        let others: Vec<(NodeId, Arc<Certificate>)> =
            self.certs.iter().map(|(id, c)| (*id, c.clone())).collect();
        for (id, c) in others {
            for a in &c.body().addresses {
                if freed_addrs.contains(&a.addr()) {
                    let h = self.by_addr.get(&a.addr()).copied();
                    if h.is_some() {
                        self.contested_addrs.insert(a.addr());
                    }
                    if h.is_none_or(|h| self.precedes((id, &c), h)) {
                        self.by_addr.insert(a.addr(), id);
                    }
                }
            }
            if freed_name.as_deref() == Some(c.name()) {
                let h = self.by_name.get(c.name()).copied();
                if h.is_some() {
                    self.contested_names.insert(c.name().to_string());
                }
                if h.is_none_or(|h| self.precedes((id, &c), h)) {
                    self.by_name.insert(c.name().to_string(), id);
                }
            }
        }
    }
}
