//! Checks kept in the results document, so a run can be judged again without running it:
//! `duplex run` records the thresholds and `--strict` it was given
//! ([`report::results::RecordedCheck`]), `duplex report` prints the same pass/fail table from
//! the file, and `duplex compare` judges both runs by the same checks and lists every check
//! that passed in the base run and fails in the new one ([`regressions`]).

use report::results::{RecordedCheck, Results};

use super::{Check, Origin, Outcome, Threshold, ThresholdError, Verdict, evaluate, parse};

/// The rule `--strict` adds.
const STRICT_RULE: &str = "*.loadgen_saturated == 0";

/// What `duplex run` writes into `results.checks`: `thresholds` as written, then `--strict`.
pub fn record(thresholds: &[Threshold], strict: bool) -> Vec<RecordedCheck> {
    let mut checks: Vec<RecordedCheck> = thresholds
        .iter()
        .map(|t| RecordedCheck {
            rule: t.to_string(),
            origin: t.origin.to_string(),
        })
        .collect();
    if strict {
        checks.push(RecordedCheck {
            rule: STRICT_RULE.to_owned(),
            origin: Origin::Strict.to_string(),
        });
    }
    checks
}

/// The thresholds and the `--strict` of `checks`, parsed again; an error names the rule a
/// hand-edited file got wrong.
pub fn parse_recorded(checks: &[RecordedCheck]) -> Result<(Vec<Threshold>, bool), ThresholdError> {
    let mut thresholds = Vec::new();
    let mut strict = false;
    for c in checks {
        let origin = match c.origin.as_str() {
            "--strict" => {
                strict = true;
                continue;
            }
            "--threshold" => Origin::Flag,
            _ => Origin::Scenario,
        };
        thresholds.push(
            parse(&c.rule, origin)
                .map_err(|e| ThresholdError(format!("the recorded check {:?}: {e}", c.rule)))?,
        );
    }
    Ok((thresholds, strict))
}

/// Judges `results` again by the checks it recorded (and the integrity rule).
pub fn judge_recorded(results: &Results) -> Result<Verdict, ThresholdError> {
    let (thresholds, strict) = parse_recorded(&results.checks)?;
    Ok(evaluate(results, &thresholds, strict))
}

/// The checks of both runs (the base's, then any only the new one recorded), each run judged
/// by all of them: what `duplex compare` holds the new run to.
pub fn judge_both(base: &Results, new: &Results) -> Result<(Verdict, Verdict), ThresholdError> {
    let mut checks = base.checks.clone();
    for c in &new.checks {
        if !checks.iter().any(|b| b.rule == c.rule) {
            checks.push(c.clone());
        }
    }
    let (thresholds, strict) = parse_recorded(&checks)?;
    Ok((
        evaluate(base, &thresholds, strict),
        evaluate(new, &thresholds, strict),
    ))
}

/// The checks that passed in `base` and fail in `new`, matched by transport and rule, as
/// (base's check, new's check).
pub fn regressions<'a>(base: &'a Verdict, new: &'a Verdict) -> Vec<(&'a Check, &'a Check)> {
    new.checks
        .iter()
        .filter(|n| n.outcome == Outcome::Fail)
        .filter_map(|n| {
            base.checks
                .iter()
                .find(|b| b.subject == n.subject && b.rule == n.rule)
                .filter(|b| b.outcome == Outcome::Pass)
                .map(|b| (b, n))
        })
        .collect()
}

/// Prints one line per regression (`websocket  latency_p99_ms < 50: 12.3 -> 61.0`), or that
/// none regressed.
pub fn write_regressions(
    regressed: &[(&Check, &Check)],
    checks: usize,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    if regressed.is_empty() {
        return writeln!(
            out,
            "thresholds: none of the {checks} checks that passed in the base run fails in the new one"
        );
    }
    writeln!(
        out,
        "thresholds: {} check(s) passed in the base run and FAIL in the new one:",
        regressed.len()
    )?;
    for (b, n) in regressed {
        writeln!(
            out,
            "  {}  {}: {} -> {}  ({})",
            n.subject,
            n.rule,
            super::figure_text(b.value),
            super::figure_text(n.value),
            n.origin
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fixture() -> Results {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../report/tests/fixtures/results.json");
        report::read_results(&path).expect("the report's fixture reads")
    }

    #[test]
    fn recorded_checks_survive_the_results_file_and_judge_the_same() {
        let thresholds = vec![
            parse("websocket.latency_p99_ms < 50", Origin::Scenario).unwrap(),
            parse("short_poll.requests_per_s < 10", Origin::Flag).unwrap(),
        ];
        let mut results = fixture();
        results.checks = record(&thresholds, true);
        let text = serde_json::to_string(&results).unwrap();
        let again: Results = serde_json::from_str(&text).unwrap();
        assert_eq!(again.checks, results.checks);
        let verdict = judge_recorded(&again).unwrap();
        assert_eq!(verdict, evaluate(&results, &thresholds, true));
        // The fixture's short polls ask far more than 10 times a second.
        assert!(!verdict.passed());
        let strict = verdict
            .checks
            .iter()
            .filter(|c| c.origin == Origin::Strict)
            .count();
        assert_eq!(strict, results.runs[0].phases.len());
    }

    #[test]
    fn results_without_recorded_checks_are_judged_by_the_integrity_rule_alone() {
        let mut results = fixture();
        results.checks.clear();
        let text = serde_json::to_string(&results).unwrap();
        assert!(!text.contains("\"checks\""), "an empty list is not written");
        let verdict = judge_recorded(&serde_json::from_str(&text).unwrap()).unwrap();
        assert!(verdict.checks.iter().all(|c| c.origin == Origin::Integrity));
    }

    #[test]
    fn a_threshold_that_passed_in_the_base_and_fails_in_the_new_run_is_a_regression() {
        let mut base = fixture();
        base.checks = record(
            &[parse("websocket.latency_p99_ms < 50", Origin::Scenario).unwrap()],
            false,
        );
        let mut new = base.clone();
        let ws = new.runs[0]
            .phases
            .iter_mut()
            .find(|p| p.transport == "websocket")
            .unwrap();
        ws.latency = report::LatencyHistogram::new();
        ws.latency.record_us(80_000);
        // One delivery lost too: the integrity rule regresses as well.
        ws.integrity.missing = 1;
        let (b, n) = judge_both(&base, &new).unwrap();
        let regressed = regressions(&b, &n);
        let rules: Vec<&str> = regressed.iter().map(|(_, n)| n.rule.as_str()).collect();
        assert_eq!(rules, ["latency_p99_ms < 50", "missing == 0"]);
        let mut out = Vec::new();
        write_regressions(&regressed, b.checks.len(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("websocket  latency_p99_ms < 50: ") && text.contains(" -> 80"),
            "{text}"
        );
        // Judged against itself, nothing regresses.
        let (b, n) = judge_both(&base, &base).unwrap();
        assert!(regressions(&b, &n).is_empty());
    }

    #[test]
    fn a_hand_edited_rule_that_no_longer_parses_is_named() {
        let mut results = fixture();
        results.checks = vec![RecordedCheck {
            rule: "websocket.latncy < 5".into(),
            origin: "scenario".into(),
        }];
        let e = judge_recorded(&results).unwrap_err().to_string();
        assert!(
            e.starts_with("the recorded check \"websocket.latncy < 5\": unknown metric"),
            "{e}"
        );
    }
}
