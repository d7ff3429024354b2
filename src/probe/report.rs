//! The probe's report: one line per step (name, ok/FAIL/skip, milliseconds, detail) and the
//! verdict line. Pure formatting.

use std::time::Duration;

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed, with what was seen (a mapped address, a relayed address…).
    Pass(String),
    /// Failed, with why (an error code and reason, a timeout…).
    Fail(String),
    /// Did not apply (no target for it).
    Skip(String),
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The step's name, with the address probed.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// `name  ok  12 ms  detail`, in aligned columns.
pub fn line(step: &StepResult) -> String {
    let (word, detail) = match &step.outcome {
        Outcome::Pass(d) => ("ok", d),
        Outcome::Fail(d) => ("FAIL", d),
        Outcome::Skip(d) => ("skip", d),
    };
    let ms = match step.outcome {
        Outcome::Skip(_) => "-".to_owned(),
        _ => format!("{} ms", step.elapsed.as_millis()),
    };
    format!("{:<40} {word:<4} {ms:>8}  {detail}", step.name)
}

/// The verdict line, and whether every step that ran passed.
pub fn verdict(steps: &[StepResult]) -> (String, bool) {
    let count = |f: fn(&Outcome) -> bool| steps.iter().filter(|s| f(&s.outcome)).count();
    let passed = count(|o| matches!(o, Outcome::Pass(_)));
    let failed = count(|o| matches!(o, Outcome::Fail(_)));
    let skipped = count(|o| matches!(o, Outcome::Skip(_)));
    let ok = failed == 0 && passed > 0;
    let word = if ok { "PASS" } else { "FAIL" };
    let line = format!("verdict: {word} ({passed} passed, {failed} failed, {skipped} skipped)");
    (line, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(outcome: Outcome) -> StepResult {
        StepResult {
            name: "allocate UDP 127.0.0.1:3478".to_owned(),
            outcome,
            elapsed: Duration::from_millis(12),
        }
    }

    #[test]
    fn lines_name_the_step_the_outcome_the_time_and_the_detail() {
        let l = line(&step(Outcome::Fail(
            "Allocate: 401 Unauthorized".to_owned(),
        )));
        assert!(l.starts_with("allocate UDP 127.0.0.1:3478 "), "{l}");
        assert!(l.contains(" FAIL ") && l.contains("12 ms") && l.ends_with("401 Unauthorized"));
        let s = line(&step(Outcome::Skip("no turns: target".to_owned())));
        assert!(s.contains(" skip ") && !s.contains("ms"), "{s}");
    }

    #[test]
    fn one_failure_fails_the_verdict_skips_do_not() {
        let pass = step(Outcome::Pass(String::new()));
        let skip = step(Outcome::Skip(String::new()));
        let fail = step(Outcome::Fail(String::new()));
        assert_eq!(
            verdict(&[pass.clone(), skip.clone()]),
            (
                "verdict: PASS (1 passed, 0 failed, 1 skipped)".to_owned(),
                true
            )
        );
        assert!(!verdict(&[pass, fail, skip.clone()]).1);
        assert!(!verdict(&[skip]).1, "nothing checked is no pass");
    }
}
