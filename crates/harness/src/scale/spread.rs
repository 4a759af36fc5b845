//! `scale --seeds`: each figure over runs of one shape and size with
//! different seeds, as median [min–max].

use super::ScaleReport;

/// What a figure missing from a report means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// The run never got there (within its bound).
    NotReached,
    /// The run had nothing to measure (a mesh without stubs has no stub
    /// link to flap).
    NotMeasured,
}

/// The figures [`spread`] summarises: name, unit, how to read it from a
/// report, and what a `None` there means.
type Figure = (
    &'static str,
    &'static str,
    fn(&ScaleReport) -> Option<f64>,
    Missing,
);

const SPREAD_FIGURES: [Figure; 12] = [
    (
        "bring-up 99 %",
        "s",
        |r| Some(r.bring_up_secs),
        Missing::NotReached,
    ),
    (
        "bring-up 100 %",
        "s",
        |r| r.bring_up_all_secs,
        Missing::NotReached,
    ),
    (
        "detection",
        "ms",
        |r| Some(r.detection_ms),
        Missing::NotReached,
    ),
    (
        "convergence 99 %",
        "ms",
        |r| Some(r.convergence_ms),
        Missing::NotReached,
    ),
    (
        "convergence 100 %",
        "ms",
        |r| r.convergence_all_ms,
        Missing::NotReached,
    ),
    (
        "detection, link carrying data",
        "ms",
        |r| r.data_cut_detection_ms,
        Missing::NotReached,
    ),
    (
        "convergence 99 %, link carrying data",
        "ms",
        |r| r.data_cut_convergence_ms,
        Missing::NotReached,
    ),
    (
        "relay gossip max",
        "B/s",
        |r| Some(r.gossip_refresh_wire_bytes_per_relay_sec_max),
        Missing::NotReached,
    ),
    (
        "relay budget max",
        "B/s",
        |r| Some(r.relay_budget_wire_bytes_per_sec_max),
        Missing::NotReached,
    ),
    (
        "revocation spread",
        "ms",
        |r| Some(r.revocation_spread_ms),
        Missing::NotReached,
    ),
    (
        "stub-link flap, busiest relay",
        "kB",
        |r| r.stub_flap.as_ref().map(|f| f.relay_bytes_max / 1e3),
        Missing::NotMeasured,
    ),
    (
        "backbone flap, busiest relay",
        "kB",
        |r| r.backbone_flap.as_ref().map(|f| f.relay_bytes_max / 1e3),
        Missing::NotMeasured,
    ),
];

/// One line per figure over runs of one shape and size with different
/// seeds: median [min–max], and how many runs never reached it (or had
/// nothing to measure).
pub fn spread(reports: &[ScaleReport]) -> Vec<String> {
    SPREAD_FIGURES
        .iter()
        .map(|(name, unit, get, missing_means)| {
            let mut v: Vec<f64> = reports.iter().filter_map(get).collect();
            let missing = reports.len() - v.len();
            v.sort_by(f64::total_cmp);
            let why = match missing_means {
                Missing::NotReached => "not reached",
                Missing::NotMeasured => "not measured",
            };
            let never = if missing > 0 {
                format!(", {why} in {missing}")
            } else {
                String::new()
            };
            match (v.first(), v.last()) {
                (Some(lo), Some(hi)) => format!(
                    "{name}: {:.1} {unit} [{lo:.1}–{hi:.1}]{never}",
                    v[(v.len() - 1) / 2]
                ),
                _ if *missing_means == Missing::NotMeasured => format!("{name}: {why}"),
                _ => format!("{name}: never reached{never}"),
            }
        })
        .collect()
}
