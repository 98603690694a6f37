//! A small SVG line chart: axes with ticks and labels, one polyline with
//! markers per series, a legend. Enough to put our results beside the
//! papers' reference curves, with no plotting dependency.

use std::fmt::Write;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// The series' name in the legend.
    pub name: String,
    /// (x, y) points, in x order.
    pub points: Vec<(f64, f64)>,
    /// Dashed lines mark reference values (the paper's).
    pub dashed: bool,
}

/// A chart; `log2_x` spaces x by log2 (for N = 2^k).
#[derive(Clone, Debug)]
pub struct Chart {
    /// The plot's title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Draw x on a log2 scale?
    pub log2_x: bool,
    /// The series drawn.
    pub series: Vec<Series>,
}

const W: f64 = 720.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#555555", "#17becf", "#8c564b",
];

/// The smallest 1/2/5 × 10^k step at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw > 0.0 { raw } else { 1.0 };
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A tick label without useless decimals.
fn trim(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}").trim_end_matches('0').to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Chart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        let fx = |x: f64| if self.log2_x { x.max(1e-9).log2() } else { x };
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|(x, y)| (fx(*x), *y)))
            .collect();
        let (mut x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
            (a.min(*x), b.max(*x))
        });
        let mut y1 = pts.iter().fold(0.0f64, |m, (_, y)| m.max(*y));
        if pts.is_empty() || x0 >= x1 {
            x0 = 0.0;
            x1 = 1.0;
        }
        if y1 <= 0.0 {
            y1 = 1.0;
        }
        // Round the top up to a "nice" multiple of a 1/2/5 × 10^k step.
        let raw = y1 * 1.1 / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let ystep = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        y1 = (y1 * 1.1 / ystep).ceil() * ystep;
        let px = |x: f64| LEFT + (fx(x) - x0) / (x1 - x0) * (W - LEFT - RIGHT);
        let py = |y: f64| H - BOTTOM - y / y1 * (H - TOP - BOTTOM);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
            (W - RIGHT + LEFT) / 2.0,
            esc(&self.title)
        );
        // Axes.
        let (ax0, ax1, ay0, ay1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
        let _ = writeln!(
            s,
            r#"<line x1="{ax0}" y1="{ay0}" x2="{ax1}" y2="{ay0}" stroke="black"/>"#
        );
        let _ = writeln!(
            s,
            r#"<line x1="{ax0}" y1="{ay0}" x2="{ax0}" y2="{ay1}" stroke="black"/>"#
        );
        // X ticks: whole powers of two on a log2 axis, else a nice step.
        let step = if self.log2_x {
            ((x1 - x0) / 10.0).ceil().max(1.0)
        } else {
            nice_step((x1 - x0) / 8.0)
        };
        let mut t = (x0 / step).ceil() * step;
        while t <= x1 + 1e-9 {
            let x = LEFT + (t - x0) / (x1 - x0) * (W - LEFT - RIGHT);
            let label = if self.log2_x {
                format!("2^{}", t as i64)
            } else {
                trim(t)
            };
            let _ = writeln!(
                s,
                r#"<line x1="{x}" y1="{ay0}" x2="{x}" y2="{}" stroke="black"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"#,
                ay0 + 5.0,
                ay0 + 20.0
            );
            t += step;
        }
        // Y ticks at every step.
        let ticks = (y1 / ystep).round() as usize;
        for k in 0..=ticks {
            let v = ystep * k as f64;
            let y = py(v);
            let _ = writeln!(
                s,
                r##"<line x1="{}" y1="{y}" x2="{ax1}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                ax0,
                ax0 - 6.0,
                y + 4.0,
                trim(v)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (ax0 + ax1) / 2.0,
            H - 15.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
            (ay0 + ay1) / 2.0,
            (ay0 + ay1) / 2.0,
            esc(&self.y_label)
        );
        // Series and legend.
        for (k, series) in self.series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let path: Vec<String> = series
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
            if !series.dashed {
                for (x, y) in &series.points {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                        px(*x),
                        py(*y)
                    );
                }
            }
            let ly = TOP + 10.0 + 20.0 * k as f64;
            let _ = writeln!(
                s,
                r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
                W - RIGHT + 15.0,
                W - RIGHT + 40.0,
                W - RIGHT + 46.0,
                ly + 4.0,
                esc(&series.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_axes_series_and_legend() {
        let chart = Chart {
            title: "t <1>".into(),
            x_label: "N".into(),
            y_label: "hops".into(),
            log2_x: true,
            series: vec![
                Series {
                    name: "ours".into(),
                    points: vec![(8.0, 1.0), (1024.0, 4.0)],
                    dashed: false,
                },
                Series {
                    name: "paper".into(),
                    points: vec![(8.0, 1.5), (1024.0, 5.0)],
                    dashed: true,
                },
            ],
        };
        let svg = chart.to_svg();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(svg.contains("2^3") && svg.contains("2^10"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("stroke-dasharray"));
    }
}
