//! Metrics read back from a recorder: the scheduler's
//! `sagaflow_schedule_fires_total{outcome}` and
//! `sagaflow_schedule_fire_lateness_seconds`, and the executor's
//! `sagaflow_queue_expired_total{workflow}`. A test binary of its own, so
//! the process-wide recorder sees only these tests' metrics (each test reads
//! names no other test writes).
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use sagaflow_engine::Engine;
use sagaflow_engine::clock::ManualClock;
use sagaflow_engine::handler::Registry;
use sagaflow_engine::schedule::{CatchupPolicy, NewSchedule, OverlapPolicy, SchedulerOptions};
use sagaflow_engine::state::RunState;
use serde_json::json;
use support::*;

#[derive(Default)]
struct Count(AtomicU64);

impl CounterFn for Count {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::SeqCst);
    }
    fn absolute(&self, v: u64) {
        self.0.store(v, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, v: f64) {
        self.0.lock().unwrap().push(v);
    }
}

/// Keeps counters and histograms by `name{label=value,…}`.
#[derive(Default, Clone)]
struct Memory {
    counters: Arc<Mutex<HashMap<String, Arc<Count>>>>,
    histograms: Arc<Mutex<HashMap<String, Arc<Values>>>>,
}

fn show(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Memory {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let c = self
            .counters
            .lock()
            .unwrap()
            .entry(show(key))
            .or_default()
            .clone();
        Counter::from_arc(c)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let h = self
            .histograms
            .lock()
            .unwrap()
            .entry(show(key))
            .or_default()
            .clone();
        Histogram::from_arc(h)
    }
}

impl Memory {
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.0.load(Ordering::SeqCst))
    }
    fn histogram(&self, name: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .unwrap()
            .get(name)
            .map_or_else(Vec::new, |h| h.0.lock().unwrap().clone())
    }
}

/// The process-wide recorder, installed by the first test that asks.
fn memory() -> Memory {
    static MEMORY: OnceLock<Memory> = OnceLock::new();
    MEMORY
        .get_or_init(|| {
            let m = Memory::default();
            metrics::set_global_recorder(m.clone()).unwrap();
            m
        })
        .clone()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn fires_are_counted_by_outcome_with_their_lateness() {
    let memory = memory();
    let (store, _dir) = sqlite().await;
    let clock = ManualClock::new(at("2026-01-01T00:00:30Z"));
    let registry = Registry::new().with_builtins();
    let toml =
        "name = \"tick\"\nversion = 1\n[[steps]]\nname = \"s1\"\nhandler = \"builtin.noop\"\n";
    let defs = definitions(&registry, &[toml.to_string()]);
    let engine = Engine::new(store, Arc::new(registry), defs, Arc::new(clock.clone()))
        .await
        .unwrap();
    engine
        .create_schedule(NewSchedule {
            overlap_policy: OverlapPolicy::Skip,
            catchup_policy: CatchupPolicy::One,
            ..NewSchedule::new(&tenant(), "five", "*/5 * * * *", "tick")
        })
        .await
        .unwrap();
    let s = engine.start_scheduler(SchedulerOptions {
        poll_interval: Duration::from_secs(3600),
        ..SchedulerOptions::default()
    });
    // An hour down: 11 missed, the latest (01:00, 150 s late) started.
    clock.set(at("2026-01-01T01:02:30Z"));
    s.tick_now().await.unwrap();
    // The run is still active (no executor): the next fire is skipped.
    clock.set(at("2026-01-01T01:05:10Z"));
    s.tick_now().await.unwrap();
    s.shutdown().await;
    let fires = |o: &str| memory.counter(&format!("sagaflow_schedule_fires_total{{outcome={o}}}"));
    assert_eq!(fires("missed"), 11);
    assert_eq!(fires("started"), 1);
    assert_eq!(fires("skipped"), 1);
    assert_eq!(fires("buffered"), 0);
    assert_eq!(
        memory.histogram("sagaflow_schedule_fire_lateness_seconds{}"),
        [150.0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_expiries_are_counted_by_workflow() {
    let memory = memory();
    let (store, _dir) = sqlite().await;
    let (h, clock, _holder) = key_held_with_queue_ttl(store, "expiring", 1, 1000, "a").await;
    let mut queued = Vec::new();
    for _ in 0..2 {
        queued.push(
            h.start("expiring", json!({"subscriber_id": "a"}))
                .await
                .run
                .id,
        );
    }
    clock.advance(Duration::from_secs(2));
    for id in queued {
        h.wait_state(id, RunState::Cancelled).await;
    }
    h.shutdown().await;
    assert_eq!(
        memory.counter("sagaflow_queue_expired_total{workflow=expiring}"),
        2
    );
    assert_eq!(
        memory.counter("sagaflow_runs_finished_total{workflow=expiring,state=cancelled}"),
        2
    );
}
