//! Verified certificates and link-state adverts shared by the endpoints of
//! one process.
//!
//! Every node of a mesh holds every origin's certificate and (relays) advert:
//! O(N) per node, fine for one node, but a process simulating N nodes holds
//! N² of them, identical byte for byte. Endpoints given the same
//! [`SharedStore`] keep one copy of each and verify each once: a
//! certificate or advert identical to one another endpoint already verified
//! is taken without checking its signature again.
//!
//! Sound only between endpoints that trust the same CA (checked: an
//! endpoint ignores a store made for another CA) and run on one clock. An
//! agent hosts one endpoint and has no store; the simulator shares one.
//! The store only grows (every advert version seen): it is for bounded runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::cert::Certificate;
use crate::control::Advert;
use crate::wire::NodeId;

/// See the module docs.
pub struct SharedStore {
    ca: [u8; 32],
    certs: Mutex<HashMap<NodeId, Arc<Certificate>>>,
    adverts: Mutex<HashMap<(NodeId, u64), Arc<Advert>>>,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let certs = self.certs.lock().map_or(0, |c| c.len());
        let adverts = self.adverts.lock().map_or(0, |a| a.len());
        f.debug_struct("SharedStore")
            .field("certs", &certs)
            .field("adverts", &adverts)
            .finish_non_exhaustive()
    }
}

impl SharedStore {
    /// An empty store for endpoints trusting the CA with this fingerprint.
    pub fn new(ca_fingerprint: [u8; 32]) -> Self {
        Self {
            ca: ca_fingerprint,
            certs: Mutex::default(),
            adverts: Mutex::default(),
        }
    }

    /// The CA the store is for.
    pub fn ca(&self) -> &[u8; 32] {
        &self.ca
    }

    /// The verified certificate of `node` if it is exactly `bytes`.
    pub(crate) fn cert(&self, node: NodeId, bytes: &[u8]) -> Option<Arc<Certificate>> {
        let certs = self.certs.lock().unwrap_or_else(PoisonError::into_inner);
        certs.get(&node).filter(|c| c.as_bytes() == bytes).cloned()
    }

    /// Keeps a verified certificate; returns the shared copy.
    pub(crate) fn put_cert(&self, node: NodeId, cert: Certificate) -> Arc<Certificate> {
        let mut certs = self.certs.lock().unwrap_or_else(PoisonError::into_inner);
        match certs.get(&node) {
            Some(c) if c.as_bytes() == cert.as_bytes() => c.clone(),
            _ => {
                let c = Arc::new(cert);
                certs.insert(node, c.clone());
                c
            }
        }
    }

    /// The verified advert identical to `advert`, if one was kept.
    pub(crate) fn advert(&self, advert: &Advert) -> Option<Arc<Advert>> {
        let adverts = self.adverts.lock().unwrap_or_else(PoisonError::into_inner);
        adverts
            .get(&(advert.origin, advert.seq))
            .filter(|a| ***a == *advert)
            .cloned()
    }

    /// Keeps a verified advert; returns the shared copy.
    pub(crate) fn put_advert(&self, advert: Advert) -> Arc<Advert> {
        let mut adverts = self.adverts.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (advert.origin, advert.seq);
        match adverts.get(&key) {
            Some(a) if **a == advert => a.clone(),
            _ => {
                let a = Arc::new(advert);
                adverts.insert(key, a.clone());
                a
            }
        }
    }
}
