//! The harness: runs a target for a number of cases or seconds, and shows generated values in full.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use smtp_oauth_core::Value;

pub(crate) const DEFAULT_CASES: u32 = 64;
/// One call of a target must return within this (debug build, a loaded CI machine).
pub(crate) const MAX_CALL_TIME: Duration = Duration::from_secs(5);

pub(crate) fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `test` on values of `strategy`: `PROPTEST_CASES` cases (64 by default), in batches
/// with fresh random seeds, stopping early after `FUZZ_SECONDS` if set. A failure panics
/// with proptest's minimal failing input.
pub(crate) fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let total = env_number("PROPTEST_CASES").unwrap_or(u64::from(DEFAULT_CASES));
    let deadline = env_number("FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let executions = AtomicU64::new(0);
    let started = Instant::now();
    let mut cases_done = 0u64;
    while cases_done < total {
        let batch = (total - cases_done).min(1024) as u32;
        let config = ProptestConfig {
            cases: batch,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        let mut runner = TestRunner::new(config);
        let outcome = runner.run(&strategy, |value| {
            executions.fetch_add(1, Ordering::Relaxed);
            let call = Instant::now();
            let result = test(value);
            let took = call.elapsed();
            prop_assert!(took < MAX_CALL_TIME, "one call took {took:?}");
            result
        });
        if outcome.is_err() {
            eprintln!(
                "fuzz {name}: {} executions in {:.1} s, then a failure",
                executions.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
        }
        match outcome {
            Ok(()) => {}
            Err(TestError::Fail(why, value)) => {
                panic!("fuzz target {name} failed: {why}\nminimal failing input: {value:#?}")
            }
            Err(TestError::Abort(why)) => panic!("fuzz target {name} aborted: {why}"),
        }
        cases_done += u64::from(batch);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {} executions ({cases_done} cases) in {:.1} s",
        executions.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

/// A `Buffer` value holding `bytes`.
pub(crate) fn bytes_value(bytes: Vec<u8>) -> Value {
    Value::Bytes(bytes.into())
}

/// A generated value, shown in full when a case fails (`Value`'s own `Debug` is a summary
/// written for error messages).
#[derive(Clone)]
pub(crate) struct Input(pub(crate) Value);

impl Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn show(value: &Value) -> String {
            match value {
                Value::Undefined => "undefined".into(),
                Value::Null => "null".into(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => format!("Number({n:?})"),
                Value::String(s) => format!("{s:?}"),
                Value::Bytes(b) => format!("Bytes({:?})", String::from_utf8_lossy(b)),
                Value::Date(d) => format!("Date({d:?})"),
                Value::Array(items) => format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(", ")),
                Value::Object(pairs) => format!(
                    "{{{}}}",
                    pairs
                        .iter()
                        .map(|(k, v)| format!("{k:?}: {}", show(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Value::Other(name) => format!("Other({name:?})"),
            }
        }
        f.write_str(&show(&self.0))
    }
}

/// A token endpoint answer, its body shown as text.
#[derive(Clone)]
pub(crate) struct Answer(pub(crate) u16, pub(crate) Vec<u8>);

impl Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {:?}", self.0, String::from_utf8_lossy(&self.1))
    }
}
