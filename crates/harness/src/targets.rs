//! Target files (`configs/targets.toml`): written bounds on the metrics that
//! `mesh-harness check` measures.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One written target.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Target {
    /// What the target says, in words.
    pub name: String,
    /// The metric it bounds.
    pub metric: String,
    /// Upper bound, if any.
    #[serde(default)]
    pub max: Option<f64>,
    /// Lower bound, if any.
    #[serde(default)]
    pub min: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    target: Vec<Target>,
}

/// The metrics `check` measures.
pub const METRICS: [&str; 29] = [
    "udp-rtt-p50-us",
    "udp-rtt-p99-us",
    "udp-rtt-p999-us",
    "udp-rtt-added-p50-us",
    "udp-rtt-added-p99-us",
    "udp-rtt-loaded-p50-us",
    "udp-rtt-loaded-p99-us",
    "udp-rtt-loaded-p999-us",
    "udp-rtt-loaded-added-p50-us",
    "udp-rtt-loaded-p99-ratio",
    "tcp-gbps",
    "tcp-ratio",
    "reference-tcp-gbps",
    "tcp-vs-reference",
    "udp-gbps",
    "udp-ratio",
    "wire-efficiency",
    "udp-delivered-ratio",
    "longrun-delivered-ratio",
    "handshakes-per-sec",
    "first-packet-ms",
    "failover-ms",
    "restart-outage-ms",
    "reload-outage-ms",
    "policy-push-outage-ms",
    "rekey-outage-ms",
    "renewal-outage-ms",
    "yearly-outage-s",
    "ids-alerts",
];

/// Reads a targets file; errors name the file, the line and the fix.
pub fn load_targets(path: &Path) -> Result<Vec<Target>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let f: TargetsFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        format!("{}: line {line}: {}", path.display(), e.message().trim())
    })?;
    for t in &f.target {
        if !METRICS.contains(&t.metric.as_str()) {
            let line = text
                .lines()
                .position(|l| l.contains(&t.metric))
                .map(|i| i + 1)
                .unwrap_or(0);
            return Err(format!(
                "{}: line {line}: unknown metric '{}'; use one of {}",
                path.display(),
                t.metric,
                METRICS.join(", ")
            ));
        }
        if t.min.is_none() && t.max.is_none() {
            return Err(format!(
                "{}: target '{}' needs min or max",
                path.display(),
                t.name
            ));
        }
    }
    Ok(f.target)
}
