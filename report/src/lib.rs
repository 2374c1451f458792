//! duplex's report: the results document schema ([`results`]) and the renderers that turn it
//! into one offline `index.html` plus CSV files. It depends on neither the server nor the
//! loadgen, so a report can be rebuilt, and tested, from a `results.json` alone.
//!
//! [`write_all`] is the entry point `duplex run` and `duplex report` share; [`analysis`] computes
//! every figure, model and verdict once per phase for all the outputs; [`model`] holds the
//! theory the report compares measurements with; [`summary`] the one definition of a summary
//! row, reused by the loadgen's terminal table; [`tables`] the CSV files and what each holds
//! (`summary.csv`, `latency_percentiles.csv` and `timeseries.csv` describe the run the page's
//! sections 1–5 show, [`headline_run`]; `sweep.csv`, written for a sweep, holds every run).
//!
//! Looking at a report without a desktop: `cargo test -p report` renders the synthetic fixtures
//! in headless Chromium and keeps the screenshots in
//! `target/tmp/report-screenshots/synthetic-{classroom,sweep}.png`; after
//! `duplex run scenarios/classroom.toml`,
//! `cargo run -p report --example screenshot -- reports/classroom/index.html` writes
//! `reports/classroom/screenshot.png` ([`screenshot`]).

#![warn(missing_docs)]

pub mod analysis;
pub mod compare;
pub mod findings;
pub mod format;
pub mod histogram;
mod html;
pub mod model;
pub mod noise;
pub mod recommend;
pub mod results;
pub mod screenshot;
pub mod summary;
pub mod tables;
pub mod transport;

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

pub use analysis::{Analysis, PhaseAnalysis, RunAnalysis};
pub use histogram::LatencyHistogram;
pub use html::render_html;
pub use results::Results;
pub use transport::{Style, Transport};

/// What can go wrong reading a results file or writing a report; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a results document.
    #[error("{path} is not a duplex results file: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The file was written by a duplex whose schema this one does not know.
    #[error(
        "{path} has results schema version {found}; this duplex reads version {expected} \
         (re-run the scenario, or use the duplex that wrote it)"
    )]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// Its `schema_version`.
        found: u64,
        /// The version this crate reads.
        expected: u32,
    },
    /// An output file or folder could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A CSV file could not be written.
    #[error("cannot write {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// Why.
        source: csv::Error,
    },
    /// The HTML template failed to render.
    #[error("cannot render {path}: {source}")]
    Render {
        /// The file.
        path: PathBuf,
        /// Why.
        source: askama::Error,
    },
}

/// Reads and checks a `results.json`: the schema version is checked before the rest is
/// parsed, so an old or newer file gets a clear message instead of a missing-field error.
pub fn read_results(path: impl AsRef<Path>) -> Result<Results, ReportError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        schema_version: u64,
    }
    let parse_error = |source| ReportError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let version: VersionOnly = serde_json::from_str(&text).map_err(parse_error)?;
    if version.schema_version != u64::from(results::SCHEMA_VERSION) {
        return Err(ReportError::SchemaVersion {
            path: path.to_path_buf(),
            found: version.schema_version,
            expected: results::SCHEMA_VERSION,
        });
    }
    serde_json::from_str(&text).map_err(parse_error)
}

/// Writes `results` as pretty JSON to `path` (the loadgen's `results.json`).
pub fn write_results(results: &Results, path: impl AsRef<Path>) -> Result<(), ReportError> {
    let path = path.as_ref();
    let write_error = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(write_error)?);
    serde_json::to_writer_pretty(&mut out, results).map_err(|e| write_error(e.into()))?;
    out.write_all(b"\n").map_err(write_error)?;
    out.flush().map_err(write_error)
}

/// The files [`write_all`] always writes into its output folder (see [`tables`] for what each
/// CSV file holds).
pub const REPORT_FILES: [&str; 4] = [
    "index.html",
    "summary.csv",
    "latency_percentiles.csv",
    "timeseries.csv",
];

/// The file [`write_all`] adds when the scenario sweeps a key: every run, one row per (run,
/// transport), led by the swept value.
pub const SWEEP_FILE: &str = "sweep.csv";

/// The run the page's sections 1–5 and the per-run CSV files describe: the last one, which
/// for a sweep is usually the largest; `None` when the results hold no run.
pub fn headline_run(results: &Results) -> Option<&results::Run> {
    results.runs.last()
}

/// Renders `index.html`, `summary.csv`, `latency_percentiles.csv` and `timeseries.csv` into
/// `out_dir` (created if missing), plus `sweep.csv` when the scenario sweeps a key, and returns
/// their paths in that order.
pub fn write_all(results: &Results, out_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let html_path = out_dir.join(REPORT_FILES[0]);
    let html = render_html(results).map_err(|source| ReportError::Render {
        path: html_path.clone(),
        source,
    })?;
    std::fs::write(&html_path, html).map_err(|source| ReportError::Write {
        path: html_path.clone(),
        source,
    })?;

    type CsvWriter = fn(&Results, BufWriter<File>) -> Result<(), csv::Error>;
    let mut csv_files: Vec<(&str, CsvWriter)> = vec![
        (REPORT_FILES[1], tables::write_summary),
        (REPORT_FILES[2], tables::write_latency_percentiles),
        (REPORT_FILES[3], tables::write_timeseries),
    ];
    if results.scenario.sweep.is_some() {
        csv_files.push((SWEEP_FILE, tables::write_sweep));
    }
    let mut paths = vec![html_path];
    for (name, write) in csv_files {
        let path = out_dir.join(name);
        let file = File::create(&path).map_err(|source| ReportError::Write {
            path: path.clone(),
            source,
        })?;
        write(results, BufWriter::new(file)).map_err(|source| ReportError::Csv {
            path: path.clone(),
            source,
        })?;
        paths.push(path);
    }
    Ok(paths)
}
