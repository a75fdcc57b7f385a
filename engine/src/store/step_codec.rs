//! The stored form of a run's steps: compact JSON text, written on every
//! checkpoint, so it is kept small and cheap to produce and to store.
//!
//! Keys are one or two letters, zero counters and absent values are left
//! out, and times are microseconds since the Unix epoch:
//!
//! ```json
//! [{"n":"allocate_ip","s":"SUCCEEDED","a":1,"t0":1763778000123456,"t1":1763778000124456}]
//! ```
//!
//! Text, not JSONB: the database never looks inside, so it is spared
//! parsing the document (and sorting its keys) on every write. The
//! long form of earlier releases (`{"name": …, "started_at": "2026-…"}`)
//! is still read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Result, StepRecord, StoreError};
use crate::run::state::StepState;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn not(b: &bool) -> bool {
    !*b
}

#[derive(Serialize)]
struct Out<'a> {
    n: &'a str,
    s: StepState,
    #[serde(skip_serializing_if = "is_zero")]
    a: u32,
    #[serde(skip_serializing_if = "is_zero")]
    c: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    o: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    t0: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    t1: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tn: Option<i64>,
    #[serde(skip_serializing_if = "not")]
    u: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    w: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wu: Option<i64>,
    #[serde(skip_serializing_if = "not")]
    rw: bool,
}

/// A stored time: microseconds (this form) or RFC 3339 text (the long form).
#[derive(Deserialize)]
#[serde(untagged)]
enum Time {
    Micros(i64),
    Text(DateTime<Utc>),
}

impl Time {
    fn get(t: Option<Time>) -> Result<Option<DateTime<Utc>>> {
        match t {
            None => Ok(None),
            Some(Time::Text(t)) => Ok(Some(t)),
            Some(Time::Micros(us)) => DateTime::from_timestamp_micros(us)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("steps: time {us} out of range"))),
        }
    }
}

#[derive(Deserialize)]
struct In {
    #[serde(alias = "name")]
    n: String,
    #[serde(alias = "state")]
    s: StepState,
    #[serde(default, alias = "attempts")]
    a: u32,
    #[serde(default, alias = "compensation_attempts")]
    c: u32,
    #[serde(default, alias = "last_error")]
    e: Option<String>,
    #[serde(default, alias = "output")]
    o: Option<Value>,
    #[serde(default, alias = "started_at")]
    t0: Option<Time>,
    #[serde(default, alias = "finished_at")]
    t1: Option<Time>,
    #[serde(default, alias = "next_attempt_at")]
    tn: Option<Time>,
    #[serde(default, alias = "effect_uncertain")]
    u: bool,
    #[serde(default, alias = "wake_at")]
    w: Option<Time>,
    #[serde(default, alias = "wait_until")]
    wu: Option<Time>,
    #[serde(default, alias = "rewind_target")]
    rw: bool,
}

/// The stored text of `steps`.
pub(crate) fn encode(steps: &[StepRecord]) -> String {
    let out: Vec<Out<'_>> = steps
        .iter()
        .map(|s| Out {
            n: &s.name,
            s: s.state,
            a: s.attempts,
            c: s.compensation_attempts,
            e: s.last_error.as_deref(),
            o: s.output.as_ref(),
            t0: s.started_at.map(|t| t.timestamp_micros()),
            t1: s.finished_at.map(|t| t.timestamp_micros()),
            tn: s.next_attempt_at.map(|t| t.timestamp_micros()),
            u: s.effect_uncertain,
            w: s.wake_at.map(|t| t.timestamp_micros()),
            wu: s.wait_until.map(|t| t.timestamp_micros()),
            rw: s.rewind_target,
        })
        .collect();
    // Serializing plain structs, strings and JSON values cannot fail.
    serde_json::to_string(&out).unwrap_or_else(|_| "[]".into())
}

/// Reads stored steps, in this form or the long form.
pub fn decode(text: &str) -> Result<Vec<StepRecord>> {
    let rows: Vec<In> =
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("steps: {e}")))?;
    rows.into_iter()
        .map(|r| {
            Ok(StepRecord {
                name: r.n,
                state: r.s,
                attempts: r.a,
                compensation_attempts: r.c,
                last_error: r.e,
                output: r.o,
                started_at: Time::get(r.t0)?,
                finished_at: Time::get(r.t1)?,
                next_attempt_at: Time::get(r.tn)?,
                effect_uncertain: r.u,
                wake_at: Time::get(r.w)?,
                wait_until: Time::get(r.wu)?,
                rewind_target: r.rw,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn full() -> StepRecord {
        StepRecord {
            name: "activate_onu".into(),
            state: StepState::CompensationFailed,
            attempts: 3,
            compensation_attempts: 2,
            last_error: Some("olt: 503 \"busy\"".into()),
            output: Some(json!({"onu_id": "ONU-1", "n": [1, 2]})),
            started_at: DateTime::from_timestamp_micros(1_763_778_000_123_456),
            finished_at: DateTime::from_timestamp_micros(1_763_778_000_124_456),
            next_attempt_at: DateTime::from_timestamp_micros(1_763_778_001_000_000),
            effect_uncertain: true,
            wake_at: DateTime::from_timestamp_micros(1_763_778_002_000_000),
            wait_until: DateTime::from_timestamp_micros(1_763_778_003_000_000),
            rewind_target: true,
        }
    }

    #[test]
    fn round_trips_every_field() {
        let steps = vec![full(), StepRecord::new("second")];
        let text = encode(&steps);
        assert_eq!(decode(&text).unwrap(), steps);
        // A fresh step is just its name and state.
        assert!(text.ends_with(r#"{"n":"second","s":"PENDING"}]"#), "{text}");
    }

    #[test]
    fn reads_the_long_form() {
        let long = serde_json::to_string(&vec![full(), StepRecord::new("second")]).unwrap();
        assert!(long.contains("\"started_at\":\"2025-"), "{long}");
        assert_eq!(
            decode(&long).unwrap(),
            vec![full(), StepRecord::new("second")]
        );
    }

    #[test]
    fn is_much_smaller_than_the_long_form() {
        let steps: Vec<StepRecord> = (0..10)
            .map(|i| StepRecord {
                name: format!("step{i}"),
                state: StepState::Succeeded,
                attempts: 1,
                started_at: DateTime::from_timestamp_micros(1_763_778_000_123_456),
                finished_at: DateTime::from_timestamp_micros(1_763_778_000_124_456),
                ..StepRecord::new("")
            })
            .collect();
        let short = encode(&steps).len();
        let long = serde_json::to_string(&steps).unwrap().len();
        assert!(short * 2 < long, "{short} vs {long}");
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(decode("{"), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            decode(r#"[{"n":"x","s":"NOPE"}]"#),
            Err(StoreError::Corrupt(_))
        ));
    }
}
