//! What is in force: bundles (a policy, a revocation list) verified and
//! applied, and the policy and revocations they set, each change enforced
//! on the peers at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use crate::bundle::{Bundle, BundleError, BundleKind, Content};
use crate::filter::Filter;
use crate::policy::Compiled;

use super::{cx, Endpoint};

impl Endpoint {
    /// Verifies a bundle (policy or revocation list) and puts it in force if
    /// it is newer than the one held, then offers it to every neighbour.
    /// On error the bundle in force stays and the refusal is counted.
    pub fn apply_bundle(
        &mut self,
        now: Instant,
        unix_nanos: u64,
        bytes: &[u8],
    ) -> Result<(BundleKind, u64), BundleError> {
        self.local.unix_nanos = unix_nanos;
        self.apply_bundle_bytes(now, bytes)
    }

    pub(super) fn apply_bundle_bytes(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<(BundleKind, u64), BundleError> {
        let (b, content) = match self.bundles.verify(&self.local, &self.admission, bytes) {
            Ok(v) => v,
            Err(e) => {
                *self.out.stats.bundle_rejects.entry(e.reason()).or_insert(0) += 1;
                return Err(e);
            }
        };
        match content {
            Content::Policy(p) => self.set_policy(now, Some(Arc::new(p.compile()))),
            Content::Revocation(l) => {
                let set = l.entries.iter().map(|e| e.fingerprint).collect();
                self.set_revoked(now, set);
            }
        }
        let (kind, version) = (b.kind(), b.version());
        self.bundles.install(cx!(self), now, b);
        Ok((kind, version))
    }

    /// The bundle of `kind` in force.
    pub fn bundle(&self, kind: BundleKind) -> Option<&Bundle> {
        self.bundles.get(kind)
    }

    /// A newer version of `kind` than the one in force that neighbours
    /// have offered, and since when (a policy or revocation list this node
    /// cannot get: its transfer or verification keeps failing).
    pub fn newer_offered(&self, kind: BundleKind) -> Option<(u64, Instant)> {
        self.bundles.offered(kind)
    }

    /// Puts `policy` in force (`None`: everything passes). Tracked flows are
    /// re-checked on their next packet; peers a new enclave definition puts
    /// outside ours are torn down at once.
    pub fn set_policy(&mut self, now: Instant, policy: Option<Arc<Compiled>>) {
        if let Some(ids) = self.ids.as_mut() {
            ids.tune(policy.as_ref().map_or(&[], |p| p.detection()));
        }
        self.admission.set_policy(policy);
        self.enforce_admission(now);
    }

    /// The policy in force.
    pub fn policy(&self) -> Option<&Arc<Compiled>> {
        self.admission.policy()
    }

    /// Puts a revocation list in force: fingerprints of node certificates.
    /// Sessions with revoked peers are torn down at once and their
    /// handshakes refused from now on.
    pub fn set_revoked(&mut self, now: Instant, revoked: HashSet<[u8; 32]>) {
        self.admission.set_revoked(revoked);
        self.enforce_admission(now);
    }

    /// Whether this certificate fingerprint is revoked.
    pub fn is_revoked(&self, fingerprint: &[u8; 32]) -> bool {
        self.admission.is_revoked(fingerprint)
    }

    /// The policy filter: counters and tracked flows.
    pub fn filter(&self) -> &Filter {
        self.admission.filter()
    }
}
