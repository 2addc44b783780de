//! PNG plots (feature `plots`): throughput against connections, and latency CDFs.
//!
//! Text is drawn with plotters' pure-Rust `ab_glyph` rasteriser from a TTF file on this machine
//! (DejaVu Sans from Debian's fonts-dejavu-core), so no fontconfig or freetype is needed; when
//! no font is found the plots are skipped and the report says so.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::report::{Results, Row};
use crate::run::Backend;
use crate::workloads::{Kind, CONNECTION_SWEEP};

/// Fonts tried, in order.
const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn register_font() -> anyhow::Result<()> {
    let path = FONT_PATHS
        .iter()
        .find(|p| Path::new(p).exists())
        .context("no DejaVuSans.ttf (apt-get install fonts-dejavu-core)")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{path} is not a usable font"))?;
    Ok(())
}

fn color(backend: Backend) -> RGBColor {
    match backend {
        Backend::Esdb => RGBColor(0x1f, 0x77, 0xb4),
        Backend::JetStream => RGBColor(0xff, 0x7f, 0x0e),
        Backend::JetStreamSyncAlways => RGBColor(0x2c, 0xa0, 0x2c),
    }
}

const BACKENDS: [Backend; 3] = [
    Backend::Esdb,
    Backend::JetStream,
    Backend::JetStreamSyncAlways,
];

/// Writes `throughput.png` and `latency_cdf.png` into `dir`; returns the file names.
pub fn write_plots(results: &Results, dir: &Path) -> anyhow::Result<Vec<String>> {
    register_font()?;
    throughput(results, &dir.join("throughput.png"))?;
    latency_cdf(results, &dir.join("latency_cdf.png"))?;
    Ok(vec!["throughput.png".into(), "latency_cdf.png".into()])
}

fn sweep_rows(results: &Results) -> Vec<&Row> {
    results
        .rows
        .iter()
        .filter(|r| {
            matches!(r.spec.kind, Kind::Append { conns, window: 1, batch: 1 } if CONNECTION_SWEEP.contains(&conns))
                && r.spec.event_bytes == 100
        })
        .collect()
}

fn throughput(results: &Results, path: &Path) -> anyhow::Result<()> {
    let rows = sweep_rows(results);
    let max = rows
        .iter()
        .flat_map(|r| r.runs.iter().map(|run| run.figures.events_per_s))
        .fold(1.0, f64::max);
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Durable single-event appends (100 B), waiting for each ack",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d((1f64..300f64).log_scale(), 0f64..max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc("events/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for backend in BACKENDS {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| {
                let conns = match r.spec.kind {
                    Kind::Append { conns, .. } => conns as f64,
                    _ => return None,
                };
                Some((conns, r.get(backend)?.figures.events_per_s))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let c = color(backend);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
            .label(backend.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

fn latency_cdf(results: &Results, path: &Path) -> anyhow::Result<()> {
    let rows = sweep_rows(results);
    let wanted = [1usize, 64];
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_us = rows
        .iter()
        .flat_map(|r| r.runs.iter().map(|run| run.figures.p999_us))
        .max()
        .unwrap_or(1000)
        .max(10) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Append latency CDF (100 B, wait each): 1 and 64 connections",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((10f64..max_us * 1.2).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("latency, µs (log)")
        .y_desc("fraction of requests at or below")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for row in rows
        .iter()
        .filter(|r| matches!(r.spec.kind, Kind::Append { conns, .. } if wanted.contains(&conns)))
    {
        let conns = match row.spec.kind {
            Kind::Append { conns, .. } => conns,
            _ => continue,
        };
        for backend in BACKENDS {
            let Some(run) = row.get(backend) else {
                continue;
            };
            let c = color(backend);
            let style = if conns == 1 {
                c.stroke_width(1)
            } else {
                c.stroke_width(3)
            };
            let points: Vec<(f64, f64)> = run
                .figures
                .latency_cdf
                .iter()
                .map(|&(us, q)| ((us.max(10)) as f64, q))
                .collect();
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(format!("{}, {conns} conn", backend.label()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
