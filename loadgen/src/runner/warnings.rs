//! A phase's validity warnings, worked out from what the phase measured by one pure function,
//! so each rule is tested on its own instead of through whole phases.

use crate::probe::SATURATED_LAG_MS;

/// What the warnings are decided from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseFacts {
    /// Senders still had publishes unanswered when their grace after the window ran out.
    pub senders_unanswered: bool,
    /// Clients that did not stop within their grace (their deliveries are not counted).
    pub clients_not_stopped: usize,
    /// Server CPU and memory were read at both edges of the window.
    pub server_readable: bool,
    /// Clients planned.
    pub clients: u64,
    /// Clients connected when the window opened.
    pub connected: u64,
    /// Failed connects, requests and frames over the phase.
    pub errors: u64,
    /// Deliveries that never arrived.
    pub missing: u64,
    /// The window ran its whole length.
    pub complete: bool,
    /// How busy the loadgen itself was.
    pub load: LoadgenLoad,
}

/// How busy the loadgen was during the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadgenLoad {
    /// Its timer lag's p99, ms.
    pub lag_p99_ms: f64,
    /// Its timer lag's maximum, ms.
    pub lag_max_ms: f64,
    /// Its CPU seconds in the window.
    pub cpu_s: f64,
    /// The window's length, seconds.
    pub duration_s: f64,
    /// CPUs the machine has.
    pub cpus: f64,
}

impl LoadgenLoad {
    /// Whether the loadgen was saturated: its timers fired late, or it used (nearly) every CPU,
    /// so latencies include its own delay.
    pub fn saturated(&self) -> bool {
        self.lag_p99_ms > SATURATED_LAG_MS
            || (self.duration_s > 0.0 && self.cpu_s / self.duration_s > 0.9 * self.cpus)
    }
}

/// The phase's warnings, in the order the report lists them.
pub fn phase_warnings(f: &PhaseFacts) -> Vec<String> {
    let mut w = Vec::new();
    if f.senders_unanswered {
        w.push("some publishes were still unanswered when the window closed".to_owned());
    }
    if f.clients_not_stopped > 0 {
        w.push(format!(
            "{} clients did not stop within {:?}; their deliveries are not counted",
            f.clients_not_stopped,
            super::STOP_GRACE
        ));
    }
    if !f.server_readable {
        w.push(
            "server CPU and memory could not be read (no /proc for it and no process_* metrics)"
                .to_owned(),
        );
    }
    if f.connected < f.clients {
        w.push(format!(
            "{} of {} clients never connected",
            f.clients - f.connected,
            f.clients
        ));
    }
    if f.errors > 0 {
        w.push(format!(
            "{} errors (failed connects, requests or frames)",
            f.errors
        ));
    }
    if f.missing > 0 {
        w.push(if f.complete {
            format!("{} deliveries missing", f.missing)
        } else {
            format!(
                "{} deliveries missing (the phase was cut short; messages still on their way then count as missing)",
                f.missing
            )
        });
    }
    let l = &f.load;
    if l.saturated() {
        w.push(format!(
            "loadgen saturated: its timers fired late (p99 {:.1} ms, max {:.1} ms; its CPU {:.1} s in {:.1} s), so the machine or the loadgen was too busy and latencies include that delay",
            l.lag_p99_ms, l.lag_max_ms, l.cpu_s, l.duration_s
        ));
    }
    if !f.complete {
        w.push("phase cut short".to_owned());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALM: LoadgenLoad = LoadgenLoad {
        lag_p99_ms: 1.0,
        lag_max_ms: 2.0,
        cpu_s: 1.0,
        duration_s: 10.0,
        cpus: 2.0,
    };

    fn clean() -> PhaseFacts {
        PhaseFacts {
            senders_unanswered: false,
            clients_not_stopped: 0,
            server_readable: true,
            clients: 10,
            connected: 10,
            errors: 0,
            missing: 0,
            complete: true,
            load: CALM,
        }
    }

    #[test]
    fn a_clean_phase_has_no_warnings() {
        assert!(phase_warnings(&clean()).is_empty());
    }

    #[test]
    fn each_problem_is_named_with_its_figures() {
        let f = PhaseFacts {
            connected: 7,
            errors: 4,
            missing: 12,
            ..clean()
        };
        assert_eq!(
            phase_warnings(&f),
            [
                "3 of 10 clients never connected",
                "4 errors (failed connects, requests or frames)",
                "12 deliveries missing",
            ]
        );
        let f = PhaseFacts {
            senders_unanswered: true,
            clients_not_stopped: 2,
            server_readable: false,
            ..clean()
        };
        let w = phase_warnings(&f);
        assert_eq!(w.len(), 3);
        assert!(w[0].contains("unanswered"), "{w:?}");
        assert!(w[1].starts_with("2 clients did not stop"), "{w:?}");
        assert!(w[2].contains("could not be read"), "{w:?}");
    }

    #[test]
    fn a_cut_short_phase_says_why_deliveries_may_be_missing() {
        let f = PhaseFacts {
            missing: 5,
            complete: false,
            ..clean()
        };
        let w = phase_warnings(&f);
        assert!(
            w[0].contains("cut short; messages still on their way"),
            "{w:?}"
        );
        assert_eq!(w.last().unwrap(), "phase cut short");
    }

    #[test]
    fn saturation_is_late_timers_or_every_cpu_busy() {
        assert!(!CALM.saturated());
        let late = LoadgenLoad {
            lag_p99_ms: SATURATED_LAG_MS + 1.0,
            ..CALM
        };
        assert!(late.saturated());
        // 19 CPU seconds in 10 s on 2 CPUs is 95% of the machine.
        let busy = LoadgenLoad {
            cpu_s: 19.0,
            ..CALM
        };
        assert!(busy.saturated());
        let w = phase_warnings(&PhaseFacts {
            load: late,
            ..clean()
        });
        assert!(
            w[0].starts_with("loadgen saturated: its timers fired late (p99 21.0 ms"),
            "{w:?}"
        );
        // A window of no length cannot divide by zero into a false alarm.
        let empty = LoadgenLoad {
            duration_s: 0.0,
            ..busy
        };
        assert!(!empty.saturated());
    }
}
