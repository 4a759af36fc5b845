//! Availability as outage per event, for `mesh-harness check`: a paced
//! stream a → b through meshd (1,000 datagrams a second, sequence-numbered)
//! runs across each day-two event an operator causes on b — an agent
//! restart, a configuration reload, a policy push, a rekey, a certificate
//! renewal — and the outage is the datagrams lost times the 1 ms interval:
//! the time the application had no delivery. Five nines read as an
//! availability is then a yearly outage budget (315 s), and [`YEARLY`]
//! says how often each event is assumed to happen, so the measured outages
//! add up to a figure held against it.

use std::path::Path;
use std::time::{Duration, Instant};

use harness::netns::{self, state_dir};

/// Each event's metric, how many times a year a node pair is assumed to
/// see it, and why that many. `failover-ms` (a link cut) is measured by
/// the failover run, the others by [`measure`].
pub const YEARLY: [(&str, f64, &str); 6] = [
    ("failover-ms", 52.0, "a link cut a week"),
    ("restart-outage-ms", 52.0, "an upgrade or restart a week"),
    ("reload-outage-ms", 365.0, "a configuration reload a day"),
    ("policy-push-outage-ms", 365.0, "a policy push a day"),
    ("rekey-outage-ms", 262_800.0, "a rekey every 2 minutes"),
    (
        "renewal-outage-ms",
        365.0,
        "a certificate renewed every day",
    ),
];

/// Five nines of a year, in seconds.
pub const FIVE_NINES_BUDGET_S: f64 = 365.0 * 86_400.0 * 1e-5;

/// Rekeys in one stream (the outage reported is per rekey): one rekey is
/// multiplied by 262,800 a year, so a single unrelated loss must not pass
/// for its outage.
const REKEYS: u32 = 5;

/// The yearly outage, seconds, from the per-event outages measured (ms);
/// events not measured count nothing.
pub fn yearly_outage_s(measured: impl Fn(&str) -> Option<f64>) -> f64 {
    YEARLY
        .iter()
        .filter_map(|(metric, per_year, _)| Some(measured(metric)? * per_year / 1e3))
        .sum()
}

/// One event's outage.
pub struct Outage {
    /// The metric it is reported as.
    pub metric: &'static str,
    /// Datagrams lost × 1 ms, per event.
    pub lost_ms: f64,
    /// The longest silence between arrivals, ms.
    pub max_gap_ms: f64,
}

/// Runs `meshctl ARGS` inside `host`; an error names the command and what
/// it printed.
fn meshctl(topo: &str, host: &str, meshctl: &Path, args: &[&str]) -> Result<(), String> {
    let mut all = vec![meshctl.to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    let out = netns::output(topo, host, &all);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "meshctl {args:?} on {host}: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Stops `host`'s meshd (SIGTERM, as a service manager does) and starts it
/// again once it has exited.
fn restart(topo: &str, host: &str, meshd: &Path) -> Result<(), String> {
    let dir = state_dir(topo);
    let pid = std::fs::read_to_string(dir.join(format!("{host}.pid")))
        .map_err(|e| format!("{host}.pid: {e}"))?;
    let pid = pid.trim();
    let killed = std::process::Command::new("kill")
        .arg(pid)
        .status()
        .map_err(|e| e.to_string())?;
    if !killed.success() {
        return Err(format!("kill {pid}: meshd on {host} was not running"));
    }
    // Gone (its reaper in `netns::start_agent` waited for it), or a zombie
    // for the instant before that.
    let status = format!("/proc/{pid}/status");
    let t = Instant::now();
    while std::fs::read_to_string(&status).is_ok_and(|s| !s.contains("State:\tZ")) {
        if t.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "meshd on {host} did not exit within 5 s of SIGTERM"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    netns::start_agent(topo, host, meshd)
}

/// Measures the outage of each event on `b` of the running pair `topo`
/// (a → b at 100.64.0.2), `meshd` and `meshctl` being the binaries.
pub fn measure(
    topo: &str,
    harness: &Path,
    meshd: &Path,
    meshctl_bin: &Path,
) -> Result<Vec<Outage>, String> {
    let dir = state_dir(topo);
    let p = |f: &str| dir.join(f).to_string_lossy().to_string();
    let (sock, ca_crt, ca_key) = (p("b.sock"), p("ca.crt"), p("ca.key"));
    let policy = dir.join("allow-all.toml");
    std::fs::write(
        &policy,
        "# every member may reach every member\n[[rule]]\naction = \"allow\"\nfrom = \"any\"\nto = \"any\"\n",
    )
    .map_err(|e| format!("{}: {e}", policy.display()))?;
    let policy = policy.to_string_lossy().to_string();
    let (crt, renewed) = (p("b.crt"), p("b.renewed.crt"));
    let ctl = |args: &[&str]| meshctl(topo, "b", meshctl_bin, args);
    let mut out = Vec::new();
    let events: [(&'static str, u32); 5] = [
        ("restart-outage-ms", 1),
        ("reload-outage-ms", 1),
        ("rekey-outage-ms", REKEYS),
        ("renewal-outage-ms", 1),
        ("policy-push-outage-ms", 1),
    ];
    for (k, (metric, times)) in events.into_iter().enumerate() {
        let listen = format!("100.64.0.2:{}", 7300 + k);
        let stream = netns::OutageStream::start(topo, harness, "a", "b", &listen, 3)?;
        std::thread::sleep(Duration::from_millis(800));
        for _ in 0..times {
            match metric {
                "restart-outage-ms" => restart(topo, "b", meshd)?,
                "reload-outage-ms" => ctl(&["reload", "--socket", &sock])?,
                "rekey-outage-ms" => ctl(&["rekey", "a", "--socket", &sock])?,
                "renewal-outage-ms" => {
                    ctl(&[
                        "cert",
                        "renew",
                        &crt,
                        "--ttl",
                        "30d",
                        "--ca-crt",
                        &ca_crt,
                        "--ca-key",
                        &ca_key,
                        "--out-crt",
                        &renewed,
                    ])?;
                    std::fs::copy(&renewed, &crt).map_err(|e| format!("{renewed}: {e}"))?;
                    ctl(&["reload", "--socket", &sock])?;
                }
                _ => ctl(&[
                    "policy", "push", &policy, "--ca-crt", &ca_crt, "--ca-key", &ca_key,
                    "--socket", &sock,
                ])?,
            }
            if times > 1 {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        let o = stream.finish_detail()?;
        out.push(Outage {
            metric,
            lost_ms: o.lost as f64 / f64::from(times),
            max_gap_ms: o.max_gap_ms,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yearly_outage_adds_each_measured_event_times_its_frequency() {
        let m = |metric: &str| match metric {
            "failover-ms" => Some(250.0),
            "rekey-outage-ms" => Some(0.0),
            "restart-outage-ms" => Some(20.0),
            _ => None,
        };
        // 52 × 0.25 s + 52 × 0.02 s.
        assert!((yearly_outage_s(m) - 14.04).abs() < 1e-9);
        assert!((FIVE_NINES_BUDGET_S - 315.36).abs() < 1e-9);
    }
}
