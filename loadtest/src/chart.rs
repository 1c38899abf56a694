//! SVG charts: one run's deliveries/s and p50/p99 time to delivery per second (`--chart`), and
//! several runs side by side from their JSON reports (`petrel-load chart`, used by compare.sh).

use crate::stats::{Percentiles, Sample};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Chart size in pixels.
const SIZE: (u32, u32) = (900, 640);

/// Failures while charting.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// A report could not be read.
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// A report is not petrel-load's JSON.
    #[error("parsing {0}: {1}")]
    Parse(PathBuf, serde_json::Error),
    /// No per-second samples to draw (a report from before `series`, or an untimed scenario).
    #[error("no per-second samples in {0}")]
    Empty(String),
    /// plotters could not draw or write the file.
    #[error("drawing {0}: {1}")]
    Draw(PathBuf, String),
}

/// The part of a JSON report a chart needs.
#[derive(Debug, Deserialize)]
pub struct Run {
    /// Scenario name.
    pub scenario: String,
    /// Delivered messages per second over the measured phase.
    pub msgs_per_s: f64,
    /// Time to delivery over the whole measured phase.
    pub delivery_latency_us: PercentilesIn,
    /// Per-second samples.
    #[serde(default)]
    pub series: Vec<Sample>,
}

/// The percentiles a chart's legend quotes.
#[derive(Debug, Deserialize)]
pub struct PercentilesIn {
    /// Median, microseconds.
    pub p50: u64,
    /// 99th percentile, microseconds.
    pub p99: u64,
}

impl From<&Percentiles> for PercentilesIn {
    fn from(p: &Percentiles) -> Self {
        PercentilesIn {
            p50: p.p50,
            p99: p.p99,
        }
    }
}

/// Read one JSON report written with `--json`.
pub fn read_run(path: &Path) -> Result<Run, ChartError> {
    let text = std::fs::read_to_string(path).map_err(|e| ChartError::Read(path.into(), e))?;
    serde_json::from_str(&text).map_err(|e| ChartError::Parse(path.into(), e))
}

/// One line of a chart: its legend, colour and points.
struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Colours of the targets in a comparison, in order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Milliseconds from microseconds, for the latency axes.
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Human form of a rate for legends ("144 352 msg/s" reads better as "144k").
fn rate(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.0}k", r / 1000.0)
    } else {
        format!("{r:.0}")
    }
}

/// `--chart`: deliveries/s on top, p50 and p99 time to delivery below, per second of the run.
pub fn run_chart(title: &str, run: &Run, out: &Path) -> Result<(), ChartError> {
    if run.series.is_empty() {
        return Err(ChartError::Empty(title.to_owned()));
    }
    let pts = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        run.series
            .iter()
            .filter_map(|s| f(s).map(|v| (s.t_s, v)))
            .collect()
    };
    let thr = [Line {
        label: format!("delivered ({} msg/s over the run)", rate(run.msgs_per_s)),
        color: PALETTE[0],
        points: pts(&|s| Some(s.msgs_per_s)),
    }];
    let quantile = |name: &str, whole_us: u64, color, of: fn(&Sample) -> Option<u64>| Line {
        label: format!("{name} ({:.2} ms over the run)", ms(whole_us)),
        color,
        points: pts(&|s| of(s).map(ms)),
    };
    let p = &run.delivery_latency_us;
    let lat = [
        quantile("p50", p.p50, PALETTE[2], |s| s.p50_us),
        quantile("p99", p.p99, PALETTE[1], |s| s.p99_us),
    ];
    draw(out, title, &thr, &lat, false)
}

/// `petrel-load chart`: every report's deliveries/s on top and p99 below (log scale: peers
/// differ by orders of magnitude), one colour per target named after its file.
pub fn compare_chart(reports: &[PathBuf], out: &Path) -> Result<(), ChartError> {
    let mut title = String::new();
    let mut thr = Vec::new();
    let mut lat = Vec::new();
    for (i, path) in reports.iter().enumerate() {
        let run = read_run(path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if run.series.is_empty() {
            return Err(ChartError::Empty(path.display().to_string()));
        }
        let color = PALETTE[i % PALETTE.len()];
        let p = &run.delivery_latency_us;
        thr.push(Line {
            label: format!("{name}: {} msg/s", rate(run.msgs_per_s)),
            color,
            points: run.series.iter().map(|s| (s.t_s, s.msgs_per_s)).collect(),
        });
        lat.push(Line {
            label: format!("{name}: p50 {:.2} ms, p99 {:.2} ms", ms(p.p50), ms(p.p99)),
            color,
            points: run
                .series
                .iter()
                .filter_map(|s| s.p99_us.map(|v| (s.t_s, ms(v.max(1)))))
                .collect(),
        });
        if title.is_empty() {
            title = format!("{}: targets side by side", run.scenario);
        }
    }
    draw(out, &title, &thr, &lat, true)
}

/// Two stacked panels sharing the time axis.
fn draw(
    out: &Path,
    title: &str,
    thr: &[Line],
    lat: &[Line],
    log_latency: bool,
) -> Result<(), ChartError> {
    let err = |e: String| ChartError::Draw(out.into(), e);
    let root = SVGBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(e.to_string()))?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 20);
    let x_max = thr
        .iter()
        .chain(lat)
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = |ls: &[Line]| {
        ls.iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(0.0, f64::max)
    };
    panel(
        &top,
        thr,
        x_max,
        0.0..y_max(thr) * 1.15 + 1.0,
        "delivered messages/s",
    )
    .map_err(err)?;
    let top_lat = y_max(lat) * 1.3 + 0.01;
    if log_latency {
        let lo = lat
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(f64::MAX, f64::min)
            .min(top_lat / 10.0);
        // Down to a power of ten, so the lowest decade has its label.
        let lo = 10f64.powf(lo.max(1e-3).log10().floor());
        panel(
            &bottom,
            lat,
            x_max,
            (lo..top_lat).log_scale(),
            "p99 time to delivery, ms (log)",
        )
        .map_err(err)?;
    } else {
        panel(&bottom, lat, x_max, 0.0..top_lat, "time to delivery, ms").map_err(err)?;
    }
    root.present().map_err(|e| err(e.to_string()))
}

/// Axis numbers without spurious decimals: "150k", "25", "2.5", "0.25".
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One panel: lines over seconds of the run, with axis labels and a legend.
fn panel<Y>(
    area: &DrawingArea<SVGBackend, Shift>,
    lines: &[Line],
    x_max: f64,
    y: Y,
    y_desc: &str,
) -> Result<(), String>
where
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds into the measured phase")
        .y_desc(y_desc)
        // A log axis draws ten light lines per decade: a grey band rather than a grid.
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&tick)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    for l in lines {
        let color = l.color;
        chart
            .draw_series(LineSeries::new(
                l.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(l.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, r: f64, p99: Option<u64>) -> Sample {
        Sample {
            t_s: t,
            msgs_per_s: r,
            p50_us: p99.map(|v| v / 2),
            p99_us: p99,
        }
    }

    #[test]
    fn ticks_read_well() {
        assert_eq!(tick(&150_000.0), "150k");
        assert_eq!(tick(&25.0), "25");
        assert_eq!(tick(&2.5), "2.5");
        assert_eq!(tick(&0.25), "0.25");
        assert_eq!(tick(&0.0), "0");
    }

    #[test]
    fn writes_both_charts() {
        let dir = std::env::temp_dir().join(format!("petrel-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = r#"{"scenario":"max","msgs_per_s":1200.0,
            "delivery_latency_us":{"p50":400,"p99":2500},
            "series":[{"t_s":1.0,"msgs_per_s":1100.0,"p50_us":300,"p99_us":2000},
                      {"t_s":2.0,"msgs_per_s":1300.0,"p50_us":null,"p99_us":null}]}"#;
        let report = dir.join("petrel.json");
        std::fs::write(&report, json).unwrap();
        let out = dir.join("compare.svg");
        compare_chart(std::slice::from_ref(&report), &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("petrel: 1200 msg/s"), "{svg}");
        assert!(svg.contains("p99 time to delivery, ms"));
        assert!(svg.contains("max: targets side by side"));

        let run = Run {
            scenario: "chat".into(),
            msgs_per_s: 50_000.0,
            delivery_latency_us: PercentilesIn {
                p50: 500,
                p99: 4000,
            },
            series: vec![
                sample(1.0, 49_000.0, Some(3000)),
                sample(2.0, 51_000.0, None),
            ],
        };
        let out = dir.join("run.svg");
        run_chart("chat", &run, &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("delivered (50k msg/s over the run)"), "{svg}");
        assert!(svg.contains("p99 (4.00 ms over the run)"));
        let empty = Run {
            series: vec![],
            ..run
        };
        assert!(matches!(
            run_chart("x", &empty, &out),
            Err(ChartError::Empty(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
