//! A running endpoint reconfigured (the driver's reload): configured peers
//! let go, link-probing settings, a renewed certificate of this node. What
//! is not here (addresses, roles, ciphers) takes a new endpoint.

use std::time::Instant;

use crate::cert::Certificate;
use crate::health::HealthConfig;

use super::api::PeerId;
use super::{Endpoint, SWEEP_INTERVAL};

impl Endpoint {
    /// A configured peer the configuration no longer lists: from now on a
    /// learned peer, without persistent keepalive. Its session lives while
    /// traffic or probes use it and it is retired once idle, as any learned
    /// peer (a member is cut off by revocation, not by a config edit).
    pub fn unconfigure_peer(&mut self, now: Instant, peer: PeerId) {
        let Some(peer) = self.peers.checked(peer) else {
            return;
        };
        let p = &mut self.peers[peer];
        p.learned = true;
        p.timers.set_persistent_keepalive(None);
        self.sweep_at.get_or_insert(now + SWEEP_INTERVAL);
    }

    /// New link-probing settings for every link, now and later; the links'
    /// state and measurements stay. False when probing is off (turning it
    /// on takes a new endpoint).
    pub fn set_health_config(&mut self, health: HealthConfig) -> bool {
        if self.local.config.health.is_none() {
            return false;
        }
        self.local.config.health = Some(health);
        for h in self.peers.iter_mut().filter_map(|p| p.health.as_mut()) {
            h.set_config(health);
        }
        true
    }

    /// This node's certificate, renewed: the same keys, name and overlay
    /// addresses, valid under the CA now. Handshakes from now on present it
    /// (every session rekeys within two minutes); sessions stay up.
    pub fn renew_certificate(&mut self, unix_nanos: u64, cert: Certificate) -> Result<(), String> {
        self.local.unix_nanos = unix_nanos;
        let local = &self.local;
        local
            .ca
            .verify_node(&*local.crypto, &cert, local.unix_secs())
            .map_err(|e| e.to_string())?;
        let old = local.identity.certificate().body();
        if cert.body().name != old.name || cert.body().addresses != old.addresses {
            return Err(format!(
                "it names '{}' {:?}, this node is '{}' {:?}: a new name or address needs a restart",
                cert.body().name,
                cert.body().addresses,
                old.name,
                old.addresses
            ));
        }
        let renewed = (local.identity.renewed(cert))
            .map_err(|_| "it is for another key: a new key needs a restart".to_string())?;
        self.local.identity = std::sync::Arc::new(renewed);
        Ok(())
    }
}
