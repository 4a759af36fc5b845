//! Minimal SVG line charts for harness reports: no dependencies, one file
//! per chart, readable in a browser or embedded in Markdown.

use std::fmt::Write as _;

/// One line of a chart.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points (x, y).
    pub points: Vec<(f64, f64)>,
}

/// A chart with a logarithmic or linear x axis and a linear y axis from 0.
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Logarithmic x axis (base 10).
    pub log_x: bool,
    /// The lines.
    pub series: Vec<Series>,
    /// Optional horizontal target line (value, label).
    pub target: Option<(f64, String)>,
    /// Vertical marker lines (x, label), e.g. the moment a link was cut.
    pub markers: Vec<(f64, String)>,
}

const W: f64 = 640.0;
const H: f64 = 360.0;
const L: f64 = 70.0;
const R: f64 = 20.0;
const T: f64 = 40.0;
const B: f64 = 50.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Chart {
    /// Renders the chart as an SVG document.
    pub fn render(&self) -> String {
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(self.markers.iter().map(|m| m.0))
            .collect();
        let mut ymax = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(self.target.as_ref().map(|t| t.0))
            .fold(0.0f64, f64::max);
        if ymax <= 0.0 {
            ymax = 1.0;
        }
        ymax *= 1.1;
        let tx = |x: f64| if self.log_x { x.max(1e-9).log10() } else { x };
        let (x0, x1) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), x| {
            (a.min(tx(*x)), b.max(tx(*x)))
        });
        let (x0, x1) = if x0 >= x1 {
            (x0 - 1.0, x0 + 1.0)
        } else {
            (x0, x1)
        };
        let px = |x: f64| L + (tx(x) - x0) / (x1 - x0) * (W - L - R);
        let py = |y: f64| H - B - y / ymax * (H - T - B);
        let mut o = String::new();
        let _ = write!(
            o,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
            W / 2.0,
            esc(&self.title)
        );
        // Axes and ticks.
        let _ = writeln!(
            o,
            "<line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{}\" stroke=\"black\"/>",
            H - B,
            W - R,
            H - B,
            H - B
        );
        for i in 0..=4 {
            let y = ymax * f64::from(i) / 4.0;
            let _ = writeln!(
                o,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><line x1=\"{L}\" y1=\"{1}\" x2=\"{}\" y2=\"{1}\" stroke=\"#ddd\"/>",
                L - 6.0,
                py(y) + 4.0,
                fmt_num(y),
                W - R
            );
        }
        let mut ticks: Vec<f64> = xs.clone();
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        // Few distinct x values (mesh sizes): a tick at each. Many (a time
        // series, a CDF): five evenly spaced.
        if ticks.len() > 12 && !self.log_x {
            ticks = (0..=4)
                .map(|i| x0 + (x1 - x0) * f64::from(i) / 4.0)
                .collect();
        }
        for x in ticks {
            let _ = writeln!(
                o,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                px(x),
                H - B + 16.0,
                fmt_num(x)
            );
        }
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>",
            (L + W - R) / 2.0,
            H - 12.0,
            esc(&self.x_label),
            (T + H - B) / 2.0,
            (T + H - B) / 2.0,
            esc(&self.y_label)
        );
        if let Some((v, label)) = &self.target {
            let _ = writeln!(
                o,
                "<line x1=\"{L}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\" stroke-dasharray=\"6 4\"/><text x=\"{1}\" y=\"{2}\" text-anchor=\"end\" fill=\"#555\">{3}</text>",
                py(*v),
                W - R,
                py(*v) - 4.0,
                esc(label)
            );
        }
        for (x, label) in &self.markers {
            let _ = writeln!(
                o,
                "<line x1=\"{0:.1}\" y1=\"{T}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#e377c2\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/><text x=\"{2:.1}\" y=\"{3}\" fill=\"#b0479a\">{4}</text>",
                px(*x),
                H - B,
                px(*x) + 4.0,
                T + 12.0,
                esc(label)
            );
        }
        for (k, s) in self.series.iter().enumerate() {
            let c = COLORS[k % COLORS.len()];
            let pts: Vec<String> = s
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
            let _ = writeln!(
                o,
                "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
                pts.join(" ")
            );
            for (x, y) in s.points.iter().filter(|_| s.points.len() <= 30) {
                let _ = writeln!(
                    o,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>",
                    px(*x),
                    py(*y)
                );
            }
            let _ = writeln!(
                o,
                "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{}</text>",
                L + 10.0,
                T + 14.0 + 16.0 * k as f64,
                esc(&s.name)
            );
        }
        o.push_str("</svg>\n");
        o
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_point_and_the_target() {
        let c = Chart {
            title: "t <1>".into(),
            x_label: "nodes".into(),
            y_label: "ms".into(),
            log_x: true,
            series: vec![Series {
                name: "a".into(),
                points: vec![(100.0, 1.0), (1000.0, 2.0)],
            }],
            target: Some((3.0, "target".into())),
            markers: vec![(300.0, "cut".into())],
        };
        let svg = c.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("t &lt;1&gt;") && svg.contains("stroke-dasharray"));
        assert!(svg.contains(">cut</text>"));
    }
}
