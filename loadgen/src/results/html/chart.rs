//! Hand-built SVG line charts for the HTML report: linear time axes and the log-scaled
//! percentile axis HdrHistogram plots use. Colours come from CSS classes (`s0`..`s4`, `axis`,
//! `grid`) so one SVG reads well in light and dark themes.

use std::fmt::Write as _;

use super::esc;

/// Drawing area, in SVG user units.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 36.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 48.0;

/// One line: a name for the legend and `(x, y)` points in data units, x ascending.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Legend text.
    pub name: String,
    /// Points in data units.
    pub points: Vec<(f64, f64)>,
}

/// The horizontal axis.
#[derive(Debug, Clone, Copy)]
pub(crate) enum XAxis {
    /// Seconds since the start of the run, linear, from 0 to at least `end`.
    Seconds {
        /// Last second to show (the axis may extend to a round number).
        end: f64,
    },
    /// Percentile on a log scale: x is `log10(1 / (1 - q))`, from 0 (0th percentile) to
    /// `decades` (99.9...% with that many nines).
    Percentile {
        /// Number of nines shown at the right end (1 to 6).
        decades: u32,
    },
}

/// A chart ready to render.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    /// `id` attribute of the SVG (stable, used by tests and links).
    pub id: String,
    /// Accessible label (what the chart shows).
    pub label: String,
    /// Horizontal axis.
    pub x: XAxis,
    /// Vertical axis label, with unit.
    pub y_label: String,
    /// Formats a y tick value.
    pub y_format: fn(f64) -> String,
    /// The lines; at most five get distinct colours.
    pub series: Vec<Series>,
}

/// x coordinate of quantile `q` (0..=1) on a percentile axis with `decades` nines.
#[must_use]
pub(crate) fn percentile_x(q: f64, decades: u32) -> f64 {
    let max = f64::from(decades);
    if q >= 1.0 {
        return max;
    }
    (1.0 / (1.0 - q)).log10().clamp(0.0, max)
}

/// Tick step of 1, 2 or 5 times a power of ten giving about `target` ticks over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    step.max(f64::MIN_POSITIVE)
}

/// `0, step, 2*step, ...` up to the first value at or above `max`.
fn ticks(max: f64, target: f64) -> Vec<f64> {
    let step = nice_step(max, target);
    let mut out = vec![0.0];
    let mut v = 0.0;
    while v < max && out.len() < 50 {
        v += step;
        out.push(v);
    }
    out
}

fn trim_number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Percentile label for `decades` nines: 0 -> `0%`, 1 -> `90%`, 3 -> `99.9%`.
fn percentile_label(decades: u32) -> String {
    match decades {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        2 => "99%".to_owned(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

impl Chart {
    /// The chart as an inline `<svg>` element.
    #[must_use]
    pub(crate) fn svg(&self) -> String {
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let all = || self.series.iter().flat_map(|s| s.points.iter());
        let y_max_data = all().map(|p| p.1).fold(0.0, f64::max);
        let y_ticks = ticks(if y_max_data > 0.0 { y_max_data } else { 1.0 }, 5.0);
        let y_max = y_ticks.last().copied().unwrap_or(1.0);
        let (x_ticks, x_max): (Vec<(f64, String)>, f64) = match self.x {
            XAxis::Seconds { end } => {
                let max = all().map(|p| p.0).fold(end, f64::max);
                let t = ticks(if max > 0.0 { max } else { 1.0 }, 8.0);
                let end = t.last().copied().unwrap_or(1.0);
                (
                    t.into_iter()
                        .map(|v| (v, format!("{}s", trim_number(v))))
                        .collect(),
                    end,
                )
            }
            XAxis::Percentile { decades } => (
                (0..=decades)
                    .map(|d| (f64::from(d), percentile_label(d)))
                    .collect(),
                f64::from(decades.max(1)),
            ),
        };
        let sx = |x: f64| LEFT + x / x_max * plot_w;
        let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;

        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg class="chart" id="{}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
            esc(&self.id),
            esc(&self.label)
        );
        let _ = write!(out, "<title>{}</title>", esc(&self.label));
        for &y in &y_ticks {
            let py = sy(y);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{py:.1}" y2="{py:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT + plot_w,
                LEFT - 6.0,
                py + 5.0,
                esc(&(self.y_format)(y))
            );
        }
        for (x, label) in &x_ticks {
            let px = sx(*x);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{:.1}"/><text class="tick" x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + plot_h,
                TOP + plot_h + 19.0,
                esc(label)
            );
        }
        let _ = write!(
            out,
            r#"<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{:.1}"/><line class="axis" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/>"#,
            TOP + plot_h,
            LEFT + plot_w,
            TOP + plot_h,
            TOP + plot_h
        );
        let x_label = match self.x {
            XAxis::Seconds { .. } => "time since start",
            XAxis::Percentile { .. } => "percentile (log scale)",
        };
        let _ = write!(
            out,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="middle">{x_label}</text><text class="label" x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 6.0,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            esc(&self.y_label)
        );
        let mut legend_x = LEFT;
        for (i, s) in self.series.iter().enumerate() {
            let class = format!("s{}", i % 5);
            let points: Vec<String> = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            if points.len() == 1 {
                let _ = write!(
                    out,
                    r#"<circle class="dot {class}" cx="{}" r="3"/>"#,
                    points[0].replacen(',', "\" cy=\"", 1)
                );
            } else if !points.is_empty() {
                let _ = write!(
                    out,
                    r#"<polyline class="line {class}" data-series="{}" points="{}"><title>{}</title></polyline>"#,
                    esc(&s.name),
                    points.join(" "),
                    esc(&s.name)
                );
            }
            let _ = write!(
                out,
                r#"<rect class="key {class}" x="{legend_x:.1}" y="10" width="14" height="4"/><text class="legend" x="{:.1}" y="17">{}</text>"#,
                legend_x + 18.0,
                esc(&s.name)
            );
            legend_x += 32.0 + 8.5 * s.name.chars().count() as f64;
        }
        if self.series.iter().all(|s| s.points.is_empty()) {
            let _ = write!(
                out,
                r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="middle">no samples</text>"#,
                LEFT + plot_w / 2.0,
                TOP + plot_h / 2.0
            );
        }
        out.push_str("</svg>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers_covering_the_data() {
        assert_eq!(ticks(9.3, 5.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(
            ticks(1000.0, 5.0),
            [0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]
        );
        let small = ticks(0.07, 5.0);
        assert!(small.last().is_some_and(|&v| v >= 0.07));
    }

    #[test]
    fn the_percentile_axis_is_log_scaled_in_nines() {
        assert!((percentile_x(0.0, 4) - 0.0).abs() < 1e-12);
        assert!((percentile_x(0.9, 4) - 1.0).abs() < 1e-9);
        assert!((percentile_x(0.999, 4) - 3.0).abs() < 1e-9);
        assert!((percentile_x(1.0, 4) - 4.0).abs() < 1e-12);
        assert!(
            (percentile_x(0.999_999_9, 4) - 4.0).abs() < 1e-12,
            "clamped"
        );
        assert_eq!(percentile_label(4), "99.99%");
    }

    #[test]
    fn a_chart_draws_one_polyline_per_series_and_escapes_names() {
        let chart = Chart {
            id: "c".to_owned(),
            label: "a <chart>".to_owned(),
            x: XAxis::Seconds { end: 0.0 },
            y_label: "ms".to_owned(),
            y_format: |v| format!("{v}"),
            series: vec![
                Series {
                    name: "one".to_owned(),
                    points: vec![(0.0, 1.0), (1.0, 2.0)],
                },
                Series {
                    name: "<two>".to_owned(),
                    points: vec![(0.0, 3.0), (2.0, f64::NAN), (3.0, 4.0)],
                },
            ],
        };
        let svg = chart.svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("&lt;two&gt;") && !svg.contains("<two>"));
        assert!(svg.contains("aria-label=\"a &lt;chart&gt;\""));
        assert!(!svg.contains("NaN"));
    }
}
