//! Reading a results file: round trip, and errors that name the file and the problem.

use report::{ReportError, read_results, write_results};

use crate::helpers::{fixture, fixture_path, out_dir};

#[test]
fn results_round_trip_through_the_file() {
    let results = fixture("results.json");
    let path = out_dir("round_trip").join("results.json");
    write_results(&results, &path).unwrap();
    assert_eq!(read_results(&path).unwrap(), results);
}

#[test]
fn an_unknown_schema_version_is_refused_with_the_file_named() {
    let text = std::fs::read_to_string(fixture_path("results.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["schema_version"] = 99.into();
    let path = out_dir("schema_version").join("future.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let err = read_results(&path).unwrap_err();
    assert!(
        matches!(err, ReportError::SchemaVersion { found: 99, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("future.json") && message.contains("99"),
        "{message}"
    );
}

#[test]
fn a_file_that_is_not_results_is_refused_with_the_file_named() {
    let dir = out_dir("not_results");
    let garbage = dir.join("notes.json");
    std::fs::write(&garbage, "{\"hello\": 1}").unwrap();
    let err = read_results(&garbage).unwrap_err();
    assert!(matches!(err, ReportError::Parse { .. }));
    assert!(err.to_string().contains("notes.json"), "{err}");

    let missing = dir.join("missing.json");
    let err = read_results(&missing).unwrap_err();
    assert!(matches!(err, ReportError::Read { .. }));
    assert!(err.to_string().contains("missing.json"), "{err}");
}

#[test]
fn results_written_before_tcp_connections_were_recorded_still_read() {
    let text = std::fs::read_to_string(fixture_path("results.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for phase in json["runs"][0]["phases"].as_array_mut().unwrap() {
        let server = phase["server"].as_object_mut().unwrap();
        assert!(server.remove("tcp_connections_peak").is_some());
    }
    let path = out_dir("no_tcp_connections").join("old.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let results = read_results(&path).unwrap();
    let phases = &results.runs[0].phases;
    assert!(phases.iter().all(|p| p.server.tcp_connections_peak == 0));
    assert!(phases.iter().all(|p| p.server.open_connections_peak > 0));
}
