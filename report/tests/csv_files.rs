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
fn summary_csv_has_the_documented_columns_and_one_row_per_phase() {
    let results = fixture("sweep.json");
    let (dir, _) = render(&results, "summary_csv");
    let path = dir.join("summary.csv");
    let documented = "transport,clients,duration_s,messages_published,deliveries_expected,\
        deliveries_received,missing,duplicates,out_of_order,latency_p50_ms,latency_p90_ms,\
        latency_p99_ms,latency_max_ms,requests,empty_responses,bytes_up,bytes_down,server_cpu_s,\
        server_rss_peak_mib,errors";
    assert_eq!(header(&path).join(","), documented);
    assert_eq!(summary::HEADER.join(","), documented);

    let rows: Vec<SummaryRow> = csv::Reader::from_path(&path)
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("every row parses");
    let phases: Vec<_> = results.runs.iter().flat_map(|r| &r.phases).collect();
    assert_eq!(rows.len(), phases.len());
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
