//! The card shows what simulating the clients cost the loadgen itself: its CPU and peak memory
//! in the measured window, per simulated client and per delivery, so a reader can tell how many
//! clients this machine can simulate; results from before the loadgen recorded its memory show
//! no memory figure rather than a made-up one.

use crate::helpers::{card_row, fixture, render};

const ROW: &str = "Load generator CPU · memory";
const KIB: u64 = 1024;

#[test]
fn the_card_shows_the_loadgens_cpu_and_memory_per_simulated_client() {
    let mut results = fixture("results.json");
    let mut expected = Vec::new();
    for phase in &mut results.runs[0].phases {
        phase.loadgen.cpu_s = 0.5;
        phase.loadgen.rss_start_bytes = 20 * KIB * KIB;
        phase.loadgen.rss_peak_bytes = 20 * KIB * KIB + phase.clients * 12 * KIB;
        let per_client_ms = 500.0 / phase.clients as f64;
        let per_delivery_us = 0.5e6 / phase.integrity.deliveries_received as f64;
        expected.push((per_client_ms, per_delivery_us));
    }
    let (_, html) = render(&results, "loadgen_cost");
    let cells = card_row(&html, ROW);
    assert_eq!(cells.len(), expected.len());
    for (cell, (per_client_ms, per_delivery_us)) in cells.iter().zip(expected) {
        assert!(cell.contains("0.50 s · 20."), "{cell}");
        assert!(cell.contains("and 12.0 KiB per client"), "{cell}");
        assert!(
            cell.contains(&format!("{per_delivery_us:.1} µs CPU per delivery")),
            "{cell}"
        );
        let cpu = format!("{} CPU and", report::format::ms(per_client_ms));
        assert!(cell.contains(&cpu), "{cpu} in {cell}");
    }
}

#[test]
fn results_without_the_loadgens_memory_show_its_cpu_alone() {
    let results = fixture("results.json");
    let (_, html) = render(&results, "loadgen_cost_old");
    for cell in card_row(&html, ROW) {
        assert!(!cell.contains("KiB") && !cell.contains("MiB"), "{cell}");
        assert!(cell.contains("CPU per client"), "{cell}");
    }
}
