//! What a schedule does at a given moment. Pure: no I/O, no clock; the
//! scheduler applies the plan in one transaction.
//!
//! 1. A buffered fire (BUFFER_ONE) starts once the last run is no longer
//!    active.
//! 2. The due fires are the cron times from `next_fire_at` up to `now`
//!    (at most `max_fires` at a time; the rest follow at once).
//! 3. Catch-up: a due fire older than the grace fell due while no scheduler
//!    ran. NONE records those as missed; ONE runs only the latest due fire
//!    and records the others as missed; ALL runs them all. Fires within the
//!    grace always run.
//! 4. Overlap, in time order over the fires that run: SKIP skips a fire
//!    while a run is active; BUFFER_ONE buffers the first such fire and
//!    skips the rest; ALLOW starts them all.

use chrono::{DateTime, Duration, Utc};

use super::{CatchupPolicy, CronSpec, FireOutcome, OverlapPolicy, Schedule};

/// One fire and what becomes of it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFire {
    pub at: DateTime<Utc>,
    pub outcome: FireOutcome,
    /// The fire was buffered earlier (its record exists).
    pub from_buffer: bool,
    pub detail: Option<String>,
}

/// The schedule's next state and the fires to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub fires: Vec<PlannedFire>,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub buffered_fire_at: Option<DateTime<Utc>>,
    /// More fires were due than `max_fires`: plan again at once.
    pub more: bool,
}

impl Plan {
    /// Whether applying the plan would change nothing.
    pub fn is_noop(&self, s: &Schedule) -> bool {
        self.fires.is_empty()
            && self.next_fire_at == s.next_fire_at
            && self.buffered_fire_at == s.buffered_fire_at
    }
}

/// Plans schedule `s` at `now`.
pub fn plan(
    s: &Schedule,
    spec: &CronSpec,
    now: DateTime<Utc>,
    grace: Duration,
    max_fires: usize,
) -> Plan {
    let mut active = s.last_run_active();
    let mut buffer = s.buffered_fire_at;
    let mut fires = Vec::new();
    if let Some(at) = buffer
        && !active
    {
        fires.push(PlannedFire {
            at,
            outcome: FireOutcome::Started,
            from_buffer: true,
            detail: Some("buffered fire started after the previous run ended".into()),
        });
        buffer = None;
        active = true;
    }

    let mut due = Vec::new();
    let mut next = s.next_fire_at;
    while let Some(t) = next
        && t <= now
        && due.len() < max_fires.max(1)
    {
        due.push(t);
        next = spec.next_after(t);
    }
    let more = next.is_some_and(|t| t <= now);

    let late = |t: DateTime<Utc>| now - t > grace;
    let backlog = due.iter().any(|t| late(*t));
    let last = due.len().checked_sub(1);
    for (i, at) in due.into_iter().enumerate() {
        let runs = match s.catchup_policy {
            CatchupPolicy::All => true,
            CatchupPolicy::None => !late(at),
            CatchupPolicy::One => !backlog || (Some(i) == last && !more),
        };
        if !runs {
            fires.push(PlannedFire {
                at,
                outcome: FireOutcome::Missed,
                from_buffer: false,
                detail: Some(format!(
                    "fell due while no scheduler ran (catch-up policy {})",
                    s.catchup_policy
                )),
            });
            continue;
        }
        let (outcome, detail) = match (s.overlap_policy, active) {
            (OverlapPolicy::Allow, _) | (_, false) => {
                active = true;
                (FireOutcome::Started, None)
            }
            (OverlapPolicy::BufferOne, true) if buffer.is_none() => {
                buffer = Some(at);
                (
                    FireOutcome::Buffered,
                    Some("waiting for the active run to end (overlap policy BUFFER_ONE)".into()),
                )
            }
            (policy, true) => (
                FireOutcome::Skipped,
                Some(format!(
                    "the previous run was still active (overlap policy {policy})"
                )),
            ),
        };
        fires.push(PlannedFire {
            at,
            outcome,
            from_buffer: false,
            detail,
        });
    }
    Plan {
        fires,
        next_fire_at: next,
        buffered_fire_at: buffer,
        more,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RunId, TenantId};
    use crate::run::state::RunState;
    use crate::schedule::ScheduleId;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn schedule(overlap: OverlapPolicy, catchup: CatchupPolicy) -> Schedule {
        Schedule {
            id: ScheduleId::new(),
            tenant_id: TenantId::new("t"),
            name: "n".into(),
            cron: "*/5 * * * *".into(),
            timezone: "UTC".into(),
            workflow_name: "w".into(),
            input: serde_json::json!({}),
            paused: false,
            pause_reason: None,
            overlap_policy: overlap,
            catchup_policy: catchup,
            next_fire_at: Some(at("2026-01-01T00:05:00Z")),
            last_fire_at: None,
            last_workflow_id: None,
            buffered_fire_at: None,
            revision: 0,
            created_at: at("2026-01-01T00:00:00Z"),
            updated_at: at("2026-01-01T00:00:00Z"),
            last_run_state: None,
        }
    }

    fn outcomes(p: &Plan) -> Vec<FireOutcome> {
        p.fires.iter().map(|f| f.outcome).collect()
    }

    fn spec() -> CronSpec {
        CronSpec::parse("*/5 * * * *", "").unwrap()
    }

    const GRACE: Duration = Duration::seconds(60);

    fn plan_at(overlap: OverlapPolicy, catchup: CatchupPolicy, now: DateTime<Utc>) -> Plan {
        plan(&schedule(overlap, catchup), &spec(), now, GRACE, 100)
    }

    fn missed_then_started(missed: usize) -> Vec<FireOutcome> {
        let mut v = vec![FireOutcome::Missed; missed];
        v.push(FireOutcome::Started);
        v
    }

    #[test]
    fn nothing_due_changes_nothing() {
        let s = schedule(OverlapPolicy::Skip, CatchupPolicy::One);
        let p = plan(&s, &spec(), at("2026-01-01T00:04:59Z"), GRACE, 100);
        assert!(p.is_noop(&s));
    }

    #[test]
    fn an_on_time_fire_starts_and_advances() {
        let s = schedule(OverlapPolicy::Skip, CatchupPolicy::None);
        let p = plan(&s, &spec(), at("2026-01-01T00:05:01Z"), GRACE, 100);
        assert_eq!(outcomes(&p), [FireOutcome::Started]);
        assert_eq!(p.next_fire_at, Some(at("2026-01-01T00:10:00Z")));
        assert!(!p.more);
    }

    #[test]
    fn catchup_after_an_hour_down() {
        let now = at("2026-01-01T01:02:30Z"); // 12 fires due, all late
        let all = plan_at(OverlapPolicy::Allow, CatchupPolicy::All, now);
        assert_eq!(outcomes(&all), vec![FireOutcome::Started; 12]);
        let one = plan_at(OverlapPolicy::Allow, CatchupPolicy::One, now);
        assert_eq!(outcomes(&one), missed_then_started(11));
        assert_eq!(one.fires[11].at, at("2026-01-01T01:00:00Z"));
        let none = plan_at(OverlapPolicy::Allow, CatchupPolicy::None, now);
        assert_eq!(outcomes(&none), vec![FireOutcome::Missed; 12]);
        for p in [all, one, none] {
            assert_eq!(p.next_fire_at, Some(at("2026-01-01T01:05:00Z")));
        }
    }

    #[test]
    fn catchup_none_still_runs_fires_within_the_grace() {
        let now = at("2026-01-01T01:00:30Z");
        let p = plan_at(OverlapPolicy::Allow, CatchupPolicy::None, now);
        assert_eq!(outcomes(&p), missed_then_started(11));
    }

    #[test]
    fn a_capped_backlog_continues() {
        let now = at("2026-01-01T01:02:30Z");
        let s = schedule(OverlapPolicy::Allow, CatchupPolicy::One);
        let p = plan(&s, &spec(), now, GRACE, 5);
        assert_eq!(outcomes(&p), vec![FireOutcome::Missed; 5]);
        assert!(p.more);
        assert_eq!(p.next_fire_at, Some(at("2026-01-01T00:30:00Z")));
    }

    #[test]
    fn skip_never_starts_a_second_active_run() {
        let mut s = schedule(OverlapPolicy::Skip, CatchupPolicy::All);
        let now = at("2026-01-01T00:20:00Z");
        let p = plan(&s, &spec(), now, GRACE, 100);
        assert_eq!(
            outcomes(&p),
            [
                FireOutcome::Started,
                FireOutcome::Skipped,
                FireOutcome::Skipped,
                FireOutcome::Skipped
            ]
        );
        s.last_workflow_id = Some(RunId::new());
        s.last_run_state = Some(RunState::Running);
        let p = plan(&s, &spec(), now, GRACE, 100);
        assert_eq!(outcomes(&p), vec![FireOutcome::Skipped; 4]);
        s.last_run_state = Some(RunState::Failed);
        assert_eq!(
            outcomes(&plan(&s, &spec(), now, GRACE, 100)),
            vec![FireOutcome::Skipped; 4]
        );
        s.last_run_state = Some(RunState::Completed);
        assert_eq!(
            outcomes(&plan(&s, &spec(), now, GRACE, 100))[0],
            FireOutcome::Started
        );
    }

    #[test]
    fn buffer_one_keeps_one_fire_and_starts_it_when_the_run_ends() {
        let mut s = schedule(OverlapPolicy::BufferOne, CatchupPolicy::All);
        s.last_workflow_id = Some(RunId::new());
        s.last_run_state = Some(RunState::Running);
        let p = plan(&s, &spec(), at("2026-01-01T00:10:00Z"), GRACE, 100);
        assert_eq!(outcomes(&p), [FireOutcome::Buffered, FireOutcome::Skipped]);
        assert_eq!(p.buffered_fire_at, Some(at("2026-01-01T00:05:00Z")));
        s.buffered_fire_at = p.buffered_fire_at;
        s.next_fire_at = p.next_fire_at;
        // Still running: nothing changes.
        let p = plan(&s, &spec(), at("2026-01-01T00:12:00Z"), GRACE, 100);
        assert!(p.is_noop(&s));
        // The run ended: the buffered fire starts, the next one is buffered.
        s.last_run_state = Some(RunState::Completed);
        let p = plan(&s, &spec(), at("2026-01-01T00:15:00Z"), GRACE, 100);
        assert_eq!(outcomes(&p), [FireOutcome::Started, FireOutcome::Buffered]);
        assert!(p.fires[0].from_buffer);
        assert_eq!(p.fires[0].at, at("2026-01-01T00:05:00Z"));
        assert_eq!(p.buffered_fire_at, Some(at("2026-01-01T00:15:00Z")));
    }
}
