//! duplex's report: the results document schema ([`results`]) and the renderers that turn it
//! into one offline `index.html` plus CSV files. It depends on neither the server nor the
//! loadgen, so a report can be rebuilt, and tested, from a `results.json` alone.

#![warn(missing_docs)]

pub mod histogram;
pub mod results;

pub use histogram::LatencyHistogram;
pub use results::Results;
