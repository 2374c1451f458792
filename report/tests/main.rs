//! The report crate's one integration-test binary: renders the checked-in fixtures
//! (`tests/fixtures/*.json`, synthetic data written by `examples/synthetic_results.rs`) and
//! checks the page, the CSV files and, in a real headless Chromium, that the page loads clean.

mod browser;
mod compare;
mod csv_files;
mod findings;
mod helpers;
mod loadgen_cost;
mod modes;
mod page;
mod page_text;
mod print;
mod reading;
mod stacks;
mod verdicts;
