//! The CSV files parse back with their documented headers and agree with the results.

use report::summary::{self, SummaryRow};
use report::tables::{self, PercentileRow, TimeseriesRow};

use crate::helpers::{fixture, render};

fn header(path: &std::path::Path) -> Vec<String> {
    let mut reader = csv::Reader::from_path(path).expect("csv opens");
    reader
        .headers()
        .expect("a header")
        .iter()
        .map(String::from)
        .collect()
}

#[test]
fn summary_csv_has_the_documented_columns_and_one_row_per_transport_of_the_last_run() {
    let results = fixture("sweep.json");
    let (dir, _) = render(&results, "summary_csv");
    let path = dir.join("summary.csv");
    let documented = "transport,clients,duration_s,messages_published,deliveries_expected,\
        deliveries_received,missing,duplicates,out_of_order,latency_p50_ms,latency_p90_ms,\
        latency_p99_ms,latency_max_ms,requests,empty_responses,bytes_up,bytes_down,server_cpu_s,\
        server_rss_peak_mib,errors";
    // Columns are only ever appended: the documented ones come first, unchanged.
    let appended =
        ",bytes_up_per_message,bytes_down_per_message,server_rss_growth_per_client_kib,stack";
    assert_eq!(header(&path).join(","), format!("{documented}{appended}"));
    assert_eq!(summary::HEADER.join(","), format!("{documented}{appended}"));

    let rows: Vec<SummaryRow> = csv::Reader::from_path(&path)
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("every row parses");
    // A sweep: the run the page's sections 1–5 show, so no two rows are about one transport.
    let phases = &results.runs.last().unwrap().phases;
    assert_eq!(rows.len(), phases.len());
    assert_eq!(rows.len(), 4);
    for (row, phase) in rows.iter().zip(phases) {
        assert_eq!(row.transport, phase.transport);
        assert_eq!(row.clients, phase.clients);
        assert_eq!(row.deliveries_received, phase.integrity.deliveries_received);
        assert_eq!(row.requests, phase.traffic.requests);
        let p50 = phase.latency.quantile_ms(0.5).unwrap();
        assert!((row.latency_p50_ms.unwrap() - p50).abs() < 0.001);
    }
}

#[test]
fn latency_percentiles_csv_parses_and_rises_with_the_percentile() {
    let results = fixture("results.json");
    let (dir, _) = render(&results, "percentiles_csv");
    let path = dir.join("latency_percentiles.csv");
    assert_eq!(header(&path), tables::LATENCY_PERCENTILES_HEADER);
    let rows: Vec<PercentileRow> = csv::Reader::from_path(&path)
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("every row parses");
    assert_eq!(rows.len(), 4 * tables::PERCENTILES.len());
    for t in ["short_poll", "long_poll", "sse", "websocket"] {
        let mine: Vec<_> = rows.iter().filter(|r| r.transport == t).collect();
        assert!(
            mine.windows(2).all(|w| w[0].latency_ms <= w[1].latency_ms),
            "{t} rises"
        );
    }
}

#[test]
fn timeseries_csv_parses_with_one_row_per_second() {
    let results = fixture("results.json");
    let (dir, _) = render(&results, "timeseries_csv");
    let path = dir.join("timeseries.csv");
    assert_eq!(header(&path), tables::TIMESERIES_HEADER);
    let rows: Vec<TimeseriesRow> = csv::Reader::from_path(&path)
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("every row parses");
    let seconds: usize = results.runs[0]
        .phases
        .iter()
        .map(|p| p.timeseries.len())
        .sum();
    assert_eq!(rows.len(), seconds);
    let deliveries: u64 = rows
        .iter()
        .filter(|r| r.transport == "sse")
        .map(|r| r.deliveries)
        .sum();
    let sse = results.runs[0]
        .phases
        .iter()
        .find(|p| p.transport == "sse")
        .unwrap();
    assert_eq!(deliveries, sse.integrity.deliveries_received);
}

#[test]
fn sweep_csv_parses_back_with_the_swept_value_before_every_summary_row() {
    let results = fixture("sweep.json");
    let sweep = results.scenario.sweep.as_ref().expect("the fixture sweeps");
    let (dir, _) = render(&results, "sweep_csv");
    let path = dir.join("sweep.csv");
    let mut reader = csv::Reader::from_path(&path).expect("csv opens");
    let header = reader.headers().expect("a header").clone();
    assert_eq!(
        header.iter().collect::<Vec<_>>(),
        tables::sweep_header(&sweep.key)
    );
    assert_eq!(&header[0], "clients.count");
    assert_eq!(
        header.iter().skip(1).collect::<Vec<_>>(),
        summary::HEADER,
        "then the summary.csv columns"
    );

    let summary_header: csv::StringRecord = header.iter().skip(1).collect();
    let mut parsed = Vec::new();
    for record in reader.records() {
        let record = record.expect("a row");
        let value: f64 = record[0].parse().expect("the swept value is a number");
        let rest: csv::StringRecord = record.iter().skip(1).collect();
        let row: SummaryRow = rest
            .deserialize(Some(&summary_header))
            .expect("the rest is a summary row");
        parsed.push((value, row));
    }
    let expected: Vec<_> = results
        .runs
        .iter()
        .flat_map(|run| run.phases.iter().map(move |p| (run, p)))
        .collect();
    assert_eq!(parsed.len(), expected.len(), "one row per (run, transport)");
    assert_eq!(parsed.len(), 3 * 4);
    for ((value, row), (run, phase)) in parsed.iter().zip(expected) {
        assert_eq!(Some(*value), run.sweep_value);
        assert_eq!(*row, SummaryRow::from_phase(phase));
    }
    let values: Vec<f64> = parsed.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        values.iter().step_by(4).copied().collect::<Vec<_>>(),
        sweep.values
    );
}

#[test]
fn in_a_sweep_the_percentile_and_timeseries_files_describe_the_last_run_only() {
    let results = fixture("sweep.json");
    let last = results.runs.last().unwrap();
    let (dir, _) = render(&results, "sweep_per_run_csv");
    let percentiles: Vec<PercentileRow> =
        csv::Reader::from_path(dir.join("latency_percentiles.csv"))
            .unwrap()
            .deserialize()
            .collect::<Result<_, _>>()
            .expect("every row parses");
    assert_eq!(
        percentiles.len(),
        last.phases.len() * tables::PERCENTILES.len()
    );
    for (row, phase) in percentiles
        .iter()
        .filter(|r| r.percentile == 50.0)
        .zip(&last.phases)
    {
        assert_eq!(row.transport, phase.transport);
        let p50 = phase.latency.quantile_ms(0.5).unwrap();
        assert!((row.latency_ms - p50).abs() < 0.001, "{}", row.transport);
    }
    let seconds: Vec<TimeseriesRow> = csv::Reader::from_path(dir.join("timeseries.csv"))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("every row parses");
    let last_seconds: usize = last.phases.iter().map(|p| p.timeseries.len()).sum();
    assert_eq!(seconds.len(), last_seconds);
    for phase in &last.phases {
        let requests: u64 = seconds
            .iter()
            .filter(|r| r.transport == phase.transport)
            .map(|r| r.requests)
            .sum();
        let expected: u64 = phase.timeseries.iter().map(|s| s.requests).sum();
        assert_eq!(requests, expected, "{}", phase.transport);
    }
}
