//! The charts of docs/scale.md, drawn from any set of scale reports.

use super::ScaleReport;
use crate::svg::{Chart, Series};

/// A value of a run, drawn against its size (NaN: not measured in that
/// run, left out).
type Plotted<'a> = &'a dyn Fn(&ScaleReport) -> f64;

/// Lines of a value, one per mesh shape, named `name, <shape>`.
type Lines<'a> = &'a dyn Fn(&str, Plotted<'_>) -> Vec<Series>;

/// The two charts of docs/scale.md from any set of runs: one line per mesh
/// shape (every node relaying, or a relay percentage), by size. Runs on an
/// impaired underlay (all with loss) get their own two.
pub fn charts(reports: &[ScaleReport]) -> Vec<(&'static str, Chart)> {
    let shape = |r: &ScaleReport| {
        if r.relays == r.nodes {
            "every node relays".to_string()
        } else {
            format!("{} % relays", (r.relays * 100 + r.nodes / 2) / r.nodes)
        }
    };
    let mut shapes: Vec<String> = reports.iter().map(shape).collect();
    shapes.sort();
    shapes.dedup();
    let series = |name: &str, f: Plotted<'_>| -> Vec<Series> {
        shapes
            .iter()
            .map(|sh| {
                let mut points: Vec<(f64, f64)> = reports
                    .iter()
                    .filter(|r| shape(r) == *sh)
                    .map(|r| (r.nodes as f64, f(r)))
                    .filter(|(_, y)| y.is_finite())
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series {
                    name: format!("{name}, {sh}"),
                    points,
                }
            })
            .collect()
    };
    if !reports.is_empty() && reports.iter().all(|r| r.loss_percent > 0.0) {
        return impaired_charts(&series);
    }
    let mut convergence = series("link cut: detection → 99 % agree", &|r| r.convergence_ms);
    convergence.extend(series("revocation held by every node", &|r| {
        r.revocation_spread_ms
    }));
    let mut gossip = series("link-state gossip", &|r| {
        r.gossip_refresh_wire_bytes_per_node_sec
    });
    gossip.extend(series("probes (idle links, 1/s)", &|r| {
        r.probe_wire_bytes_per_node_sec
    }));
    vec![
        by_size(
            "scale-convergence.svg",
            "Convergence: link cut, and a revocation",
            "ms of virtual time",
            convergence,
            (2000.0, "target 2 s"),
        ),
        by_size(
            "scale-gossip.svg",
            "Control traffic per node, steady state",
            "bytes/s (UDP payload)",
            gossip,
            (1000.0, "gossip target 1 kB/s"),
        ),
    ]
}

/// The two charts of runs on an impaired underlay (loss, jitter, the CPU
/// model): how long until nodes agree, and the busiest relay's and stub's
/// control bytes, by size.
fn impaired_charts(series: Lines<'_>) -> Vec<(&'static str, Chart)> {
    let mut agree = series("bring-up: every node holds every advert", &|r| {
        r.bring_up_all_secs.unwrap_or(r.bring_up_secs) * 1000.0
    });
    agree.extend(series("idle link cut: detected, then 99 % agree", &|r| {
        r.detection_ms + r.convergence_ms
    }));
    agree.extend(series(
        "cut of a link carrying data: detected, then 99 % agree",
        &|r| match (r.data_cut_detection_ms, r.data_cut_convergence_ms) {
            (Some(d), Some(c)) => d + c,
            _ => f64::NAN,
        },
    ));
    agree.extend(series("revocation held by every node", &|r| {
        r.revocation_spread_ms
    }));
    let mut budget = series("busiest relay (refresh round + quiet)", &|r| {
        r.relay_budget_wire_bytes_per_sec_max
    });
    budget.extend(series("busiest stub (quiet)", &|r| {
        r.control_quiet_wire_bytes_per_stub_sec_max
    }));
    vec![
        by_size(
            "scale-impaired-agreement.svg",
            "1 % loss, 2 ms jitter, CPU model: time until nodes agree",
            "ms of virtual time",
            agree,
            (10_000.0, "bring-up target 10 s"),
        ),
        by_size(
            "scale-impaired-budget.svg",
            "1 % loss, 2 ms jitter, CPU model: link-state bytes",
            "bytes/s (UDP payload)",
            budget,
            (1000.0, "relay target 1 kB/s"),
        ),
    ]
}

/// A chart of `series` against the mesh size (log scale), to `file`.
fn by_size(
    file: &'static str,
    title: &str,
    y_label: &str,
    series: Vec<Series>,
    target: (f64, &str),
) -> (&'static str, Chart) {
    let chart = Chart {
        title: title.into(),
        x_label: "nodes".into(),
        y_label: y_label.into(),
        log_x: true,
        series,
        target: Some((target.0, target.1.into())),
        markers: vec![],
    };
    (file, chart)
}
