//! One analysis per phase, computed once: what was measured ([`Figures`]), what the model
//! expects ([`Expected`]), and whether the two agree ([`Verdicts`]). The report card, every
//! chart, the CSV files and the loadgen's terminal summary read their numbers from here, so a
//! figure has one definition and no two outputs can disagree about it (the card and the
//! terminal once divided "empty answers" by different counts). See `docs/ARCHITECTURE.md` for
//! how the results document becomes this analysis and then the page.
//!
//! The results document keeps transports as identifiers (strings, so a newer loadgen's
//! transport still reads); the analysis parses them once into [`Transport`] (`None` for an
//! identifier this report does not know: such a phase is shown without a model).

use crate::model::{self, Expected, ModelInput};
use crate::noise::{self, Tolerance};
use crate::results::{Phase, Results, Run};
use crate::transport::{self, Transport};

/// Every run of a results document, analysed.
pub struct Analysis<'a> {
    /// The document analysed.
    pub results: &'a Results,
    /// One per run, in the order run.
    pub runs: Vec<RunAnalysis<'a>>,
}

impl<'a> Analysis<'a> {
    /// Analyses every phase of every run.
    pub fn of(results: &'a Results) -> Self {
        Self {
            results,
            runs: results
                .runs
                .iter()
                .map(|run| RunAnalysis::of(results, run))
                .collect(),
        }
    }

    /// The run the page's sections about one run and the per-run CSV files describe
    /// ([`crate::headline_run`]: the last).
    pub fn headline(&self) -> Option<&RunAnalysis<'a>> {
        self.runs.last()
    }
}

/// One run (one sweep point), analysed.
pub struct RunAnalysis<'a> {
    /// The run.
    pub run: &'a Run,
    /// One per phase, in the order run.
    pub phases: Vec<PhaseAnalysis<'a>>,
}

impl<'a> RunAnalysis<'a> {
    /// Analyses every phase of `run`.
    pub fn of(results: &'a Results, run: &'a Run) -> Self {
        let estimate = Floor::estimate(run);
        let mut phases: Vec<PhaseAnalysis<'a>> = run
            .phases
            .iter()
            .map(|phase| {
                let floor = phase.model_floor_ms.map_or(estimate, |ms| Floor {
                    ms,
                    spread_ms: phase.model_floor_spread_ms.unwrap_or(0.0),
                    source: FloorSource::Measured,
                });
                PhaseAnalysis::of(results, run, phase, floor)
            })
            .collect();
        let palette = transport::Palette::of(phases.iter().map(|a| a.id()));
        for a in &mut phases {
            a.colour = palette.colour(&a.key);
        }
        Self { run, phases }
    }
}

/// Where a phase's server floor (the models' service time) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorSource {
    /// Measured before the phase (`Phase::model_floor_ms`).
    Measured,
    /// Not measured: the run's fastest delivery beyond the network's trips, an upper bound on
    /// the server's service time (no message can beat it). A run whose every transport is slow
    /// hides a slow server this way, which is why the loadgen measures the floor.
    FastestDelivery,
}

/// The server's service time the long-poll, SSE and WebSocket models add, and its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Floor {
    /// Milliseconds.
    pub ms: f64,
    /// How much the measured samples scattered around it, ms
    /// ([`Phase::model_floor_spread_ms`]); 0 for an estimate, which has no samples.
    pub spread_ms: f64,
    /// Measured, or estimated.
    pub source: FloorSource,
}

impl Floor {
    /// The estimate for a run whose phases did not measure the floor: the fastest delivery of
    /// any of its transports, less the network's two trips (never below zero). One figure per
    /// run, because it is the server's and the machine's, not a transport's.
    pub fn estimate(run: &Run) -> Self {
        let trips_ms = run.rtt_ms;
        let fastest = run
            .phases
            .iter()
            .filter_map(|p| p.latency.quantile_ms(0.0))
            .fold(f64::INFINITY, f64::min);
        Self {
            ms: if fastest.is_finite() {
                (fastest - trips_ms).max(0.0)
            } else {
                0.0
            },
            spread_ms: 0.0,
            source: FloorSource::FastestDelivery,
        }
    }
}

/// One phase (one transport in one run): measured, modelled, judged.
pub struct PhaseAnalysis<'a> {
    /// The phase as measured.
    pub phase: &'a Phase,
    /// Its transport, `None` when the identifier is not one this report knows.
    pub transport: Option<Transport>,
    /// Its identifier ([`transport::phase_id`]): the transport's, or `stack/transport`.
    key: String,
    /// Its colour in its run ([`transport::Palette`]).
    colour: &'static str,
    /// The figures derived from the measurements.
    pub measured: Figures,
    /// What the model took as input (measured sizes and rate where the phase has them).
    pub model_input: ModelInput,
    /// The server's service time in the model, and where it came from.
    pub floor: Floor,
    /// What the model expects; `None` for an unknown transport.
    pub model: Option<Expected>,
    /// Measured against expected, figure by figure.
    pub verdicts: Verdicts,
}

impl<'a> PhaseAnalysis<'a> {
    /// Analyses one phase of `run`, with `floor` as the server's service time.
    pub fn of(results: &'a Results, run: &'a Run, phase: &'a Phase, floor: Floor) -> Self {
        let transport = phase.transport.parse::<Transport>().ok();
        let measured = Figures::of(phase);
        let model_input = ModelInput {
            server_floor_s: floor.ms / 1000.0,
            ..ModelInput::measured(&results.scenario, run, phase)
        };
        let model = transport.map(|t| model::expected(t, &model_input));
        let verdicts = Verdicts::judge(results, phase, &measured, model.as_ref(), floor);
        Self {
            phase,
            transport,
            key: transport::phase_id(phase.stack.as_deref(), &phase.transport),
            colour: transport::colour_of(&phase.transport),
            measured,
            model_input,
            floor,
            model,
            verdicts,
        }
    }

    /// The phase's identifier: the transport's as in `results.json`, or `stack/transport`
    /// when the run compared stacks ([`transport::phase_id`]).
    pub fn id(&self) -> &str {
        &self.key
    }

    /// The name a reader sees (`nchan · SSE` for a stack's; the identifier for an unknown
    /// transport).
    pub fn label(&self) -> String {
        transport::label_of(&self.key)
    }

    /// The short name for chart labels.
    pub fn short_label(&self) -> String {
        transport::short_label_of(&self.key)
    }

    /// Its colour: the transport's, in its stack's shade when the run compared several
    /// ([`transport::Palette`]; grey for an unknown transport).
    pub fn colour(&self) -> &'static str {
        self.colour
    }

    /// `true` for short and long polling.
    pub fn is_polling(&self) -> bool {
        self.transport.is_some_and(Transport::is_polling)
    }
}

/// Bytes read per delivered message, by kind (see [`crate::results::Traffic`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BytesSplit {
    /// Message bodies' JSON.
    pub payload: f64,
    /// HTTP status lines and headers.
    pub headers: f64,
    /// Chunk sizes, SSE lines, frame headers, batch JSON, pings.
    pub framing: f64,
    /// Whole answers that carried nothing.
    pub empty: f64,
    /// What the loadgen read but did not attribute to any of the above.
    pub unattributed: f64,
}

impl BytesSplit {
    /// The parts in drawing order: payload, headers, framing, empty, unattributed.
    pub fn parts(&self) -> [f64; 5] {
        [
            self.payload,
            self.headers,
            self.framing,
            self.empty,
            self.unattributed,
        ]
    }

    /// Their sum: everything read per delivered message.
    pub fn total(&self) -> f64 {
        self.parts().iter().sum()
    }
}

/// What a phase measured, as the figures a reader compares. Each figure is defined here once.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Median delivery latency, ms; `None` when nothing was delivered.
    pub latency_p50_ms: Option<f64>,
    /// 90th percentile delivery latency, ms.
    pub latency_p90_ms: Option<f64>,
    /// 99th percentile delivery latency, ms.
    pub latency_p99_ms: Option<f64>,
    /// Largest delivery latency, ms.
    pub latency_max_ms: Option<f64>,
    /// Requests per measured second, all clients (polls and publishes).
    pub requests_per_s: f64,
    /// Requests per second per client; `None` without clients.
    pub requests_per_s_per_client: Option<f64>,
    /// Poll answers: requests that were not publishes (every empty answer is one of them).
    pub poll_answers: u64,
    /// Share of poll answers that were empty; `None` for a transport without poll answers.
    pub empty_share: Option<f64>,
    /// Bytes read per delivered message; `None` when nothing was delivered.
    pub bytes_down_per_message: Option<f64>,
    /// Bytes written by the clients per delivered message.
    pub bytes_up_per_message: Option<f64>,
    /// Bytes read per measured second, all clients.
    pub bytes_down_per_s: f64,
    /// Bytes written per measured second, all clients.
    pub bytes_up_per_s: f64,
    /// Bytes read per delivered message, by kind.
    pub bytes_split: Option<BytesSplit>,
    /// Server CPU as a share of one core.
    pub server_core_share: f64,
    /// Server memory growth over the phase (peak − start) per client, bytes; `None` without
    /// clients or without a memory sample.
    pub server_memory_per_client_bytes: Option<f64>,
    /// The loadgen's own CPU in the window per simulated client, seconds; `None` without
    /// clients.
    pub loadgen_cpu_per_client_s: Option<f64>,
    /// The loadgen's own CPU in the window per delivery received, µs; `None` when nothing was
    /// delivered.
    pub loadgen_cpu_per_delivery_us: Option<f64>,
    /// The loadgen's memory growth over the phase (peak − start) per simulated client, bytes;
    /// `None` without clients or without a memory sample (results from before the loadgen
    /// recorded its memory).
    pub loadgen_memory_per_client_bytes: Option<f64>,
}

impl Figures {
    /// Derives the figures from a phase.
    pub fn of(phase: &Phase) -> Self {
        let t = &phase.traffic;
        let per_s = |n: f64| {
            if phase.duration_s > 0.0 {
                n / phase.duration_s
            } else {
                0.0
            }
        };
        let ms = |q: f64| phase.latency.quantile_ms(q);
        // `requests` counts publishes too; an empty answer can only be a poll's.
        let poll_answers = t.requests.saturating_sub(phase.messages_published);
        let polling = phase
            .transport
            .parse::<Transport>()
            .is_ok_and(Transport::is_polling);
        let delivered = phase.integrity.deliveries_received;
        let per_message = |bytes: u64| (delivered > 0).then(|| bytes as f64 / delivered as f64);
        let requests_per_s = per_s(t.requests as f64);
        let clients = phase.clients;
        let attributed = t.payload_down + t.header_down + t.framing_down + t.empty_down;
        let growth = phase
            .server
            .rss_peak_bytes
            .saturating_sub(phase.server.rss_start_bytes);
        Self {
            latency_p50_ms: ms(0.5),
            latency_p90_ms: ms(0.9),
            latency_p99_ms: ms(0.99),
            latency_max_ms: ms(1.0),
            requests_per_s,
            requests_per_s_per_client: (clients > 0).then(|| requests_per_s / clients as f64),
            poll_answers,
            empty_share: (polling && poll_answers > 0)
                .then(|| t.empty_responses as f64 / poll_answers as f64),
            bytes_down_per_message: per_message(t.bytes_down),
            bytes_up_per_message: per_message(t.bytes_up),
            bytes_down_per_s: per_s(t.bytes_down as f64),
            bytes_up_per_s: per_s(t.bytes_up as f64),
            bytes_split: (delivered > 0).then(|| {
                let n = delivered as f64;
                BytesSplit {
                    payload: t.payload_down as f64 / n,
                    headers: t.header_down as f64 / n,
                    framing: t.framing_down as f64 / n,
                    empty: t.empty_down as f64 / n,
                    unattributed: t.bytes_down.saturating_sub(attributed) as f64 / n,
                }
            }),
            server_core_share: per_s(phase.server.cpu_s),
            server_memory_per_client_bytes: (clients > 0 && phase.server.rss_peak_bytes > 0)
                .then(|| growth as f64 / clients as f64),
            loadgen_cpu_per_client_s: (clients > 0).then(|| phase.loadgen.cpu_s / clients as f64),
            loadgen_cpu_per_delivery_us: (delivered > 0)
                .then(|| phase.loadgen.cpu_s * 1e6 / delivered as f64),
            loadgen_memory_per_client_bytes: (clients > 0 && phase.loadgen.rss_peak_bytes > 0)
                .then(|| {
                    let l = &phase.loadgen;
                    l.rss_peak_bytes.saturating_sub(l.rss_start_bytes) as f64 / clients as f64
                }),
        }
    }
}

/// A measured figure beside its model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// The measurement, `None` when there is none (nothing delivered).
    pub measured: Option<f64>,
    /// The model's value, `None` when there is no model for it.
    pub expected: Option<f64>,
    /// `true` when the two differ by more than the noise allows.
    pub differs: bool,
}

impl Comparison {
    fn judge(measured: Option<f64>, expected: Option<f64>, tolerance: Tolerance) -> Self {
        Self::judged_by(measured, expected, |m, e| tolerance.disagrees(m, e))
    }

    fn judged_by(
        measured: Option<f64>,
        expected: Option<f64>,
        disagrees: impl Fn(f64, f64) -> bool,
    ) -> Self {
        let differs = match (measured, expected) {
            (Some(m), Some(e)) => disagrees(m, e),
            _ => false,
        };
        Self {
            measured,
            expected,
            differs,
        }
    }
}

/// Each compared figure of a phase, measured against its model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdicts {
    /// Median delivery latency, ms.
    pub latency_p50: Comparison,
    /// 99th percentile delivery latency, ms.
    pub latency_p99: Comparison,
    /// Requests per second, all clients.
    pub requests_per_s: Comparison,
    /// Bytes read per delivered message.
    pub bytes_per_message: Comparison,
    /// Share of poll answers that were empty.
    pub empty_share: Comparison,
    /// `true` when nothing went missing, arrived twice or out of order.
    pub integrity_ok: bool,
}

impl Verdicts {
    /// Compares `measured` with `model` within the noise the phase's counts show.
    pub fn judge(
        results: &Results,
        phase: &Phase,
        measured: &Figures,
        model: Option<&Expected>,
        floor: Floor,
    ) -> Self {
        let jitter = results.scenario.network.jitter_ms;
        let latency = |q: f64, measured: Option<f64>, expected: Option<f64>| {
            let band = model.and_then(|e| {
                // A wait depends on each client's own poll timing, so every delivery is a
                // sample of its own; without one, the clients of a message share its fate.
                let independent = if e.latency.wait_share > 0.0 {
                    phase.integrity.deliveries_received
                } else {
                    phase.messages_published
                };
                noise::latency_band_ms(&phase.latency, q, &e.latency, independent, jitter)
            });
            // Short polling's model leaves the floor out (see `model::expected`), yet its
            // deliveries pay it too: the publish reaching the log, the answer leaving it. Only
            // a measured floor says how much: the estimate is the run's fastest delivery,
            // which a saturated machine pushes up to anything.
            let short_poll = phase.transport == Transport::ShortPoll.as_str();
            let allowance = noise::FloorAllowance {
                spread_ms: floor.spread_ms,
                above_ms: match (short_poll, floor.source) {
                    (true, FloorSource::FastestDelivery) => 0.0,
                    _ => floor.ms,
                },
            };
            Comparison::judged_by(measured, expected, |m, e| {
                band.is_some_and(|band| noise::latency_disagrees(m, e, band, allowance))
            })
        };
        let empty_expected = model.and_then(|e| e.empty_share);
        let i = &phase.integrity;
        Self {
            latency_p50: latency(
                0.5,
                measured.latency_p50_ms,
                model.map(|e| e.latency_p50_ms),
            ),
            latency_p99: latency(
                0.99,
                measured.latency_p99_ms,
                model.map(|e| e.latency_p99_ms),
            ),
            requests_per_s: Comparison::judge(
                Some(measured.requests_per_s),
                model.map(|e| e.requests_per_s),
                noise::count_tolerance(phase.traffic.requests),
            ),
            bytes_per_message: Comparison::judge(
                measured.bytes_down_per_message,
                model.and_then(|e| e.bytes_per_message),
                Tolerance {
                    abs: 10.0,
                    rel: 0.25,
                },
            ),
            empty_share: Comparison::judge(
                measured.empty_share,
                empty_expected,
                noise::share_tolerance(empty_expected.unwrap_or(0.0), measured.poll_answers),
            ),
            integrity_ok: i.missing + i.duplicates + i.out_of_order + i.misdelivered == 0,
        }
    }
}
