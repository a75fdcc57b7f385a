//! Limits over real gRPC, an in-process server on a fresh PostgreSQL
//! database per test: an exhausted store pool answers UNAVAILABLE within
//! the pool's acquire timeout (no hang, no INTERNAL); payloads exactly at
//! the limit are accepted and one byte over are RESOURCE_EXHAUSTED with
//! nothing stored; 1,000 concurrent WatchWorkflow streams all get their
//! events and end, and the 1,001st is refused with RESOURCE_EXHAUSTED.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::lifecycle_service_client::LifecycleServiceClient;
use sagaflow_proto::v1::schedule_service_client::ScheduleServiceClient;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use serde_json::json;
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;

const LIMIT: usize = 256 * 1024;

fn demo_only() -> Vec<(&'static str, String)> {
    vec![("demo.toml", DEMO.to_string())]
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn exhausted_store_pool_answers_unavailable_without_hanging(pool: PgPool) {
    let t = start_with(&pool, &demo_only(), |c| {
        c.database.max_connections = 2;
        // The API's reads have a pool of their own: make it as small, and
        // let its statements wait on the lock longer than the acquire
        // timeout, so the calls that hold a connection keep it.
        c.database.api_connections = 2;
        c.database.api_statement_timeout_ms = 60_000;
        c.schedules.enabled = false;
        c.engine.shutdown_grace_ms = 100;
    })
    .await;
    let mut c = t.client.clone();
    let id = start_run(&mut c, "crm-a", "demo_saga", json!({}), "")
        .await
        .unwrap()
        .workflow
        .unwrap()
        .id;
    wait_state(&mut c, "crm-a", &id, pb::WorkflowState::Completed).await;

    // Hold the tables the calls read: each call that gets a connection
    // keeps it while it waits for the lock, so the pool of two runs dry.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE runs, address_records IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();

    let calls = 12;
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..calls {
        let ch = t.channel.clone();
        let id = id.clone();
        tasks.spawn(async move {
            // A client deadline far beyond the pool's 5 s acquire timeout:
            // if it fires, the server hung.
            let deadline = Duration::from_secs(60);
            let call = async {
                if i % 3 == 2 {
                    let mut l = LifecycleServiceClient::new(ch);
                    l.get_lifecycle_summary(req(pb::GetLifecycleSummaryRequest {}, "crm-a"))
                        .await
                        .map(drop)
                } else {
                    let mut w = WorkflowServiceClient::new(ch);
                    w.get_workflow(req(pb::GetWorkflowRequest { id }, "crm-a"))
                        .await
                        .map(drop)
                }
            };
            tokio::time::timeout(deadline, call)
                .await
                .expect("the server answered")
                .map_err(|e| (e.code(), e.message().to_owned()))
        });
    }
    // Every call that could not get a connection answers UNAVAILABLE while
    // the lock is still held.
    let mut unavailable = 0;
    while unavailable == 0 {
        match tasks.join_next().await.unwrap().unwrap() {
            Err((Code::Unavailable, m)) => {
                assert!(m.contains("retry later"), "{m}");
                unavailable += 1;
            }
            other => panic!("while the pool is exhausted: {other:?}"),
        }
    }
    holder.rollback().await.unwrap();
    // The rest end too: UNAVAILABLE, or OK for the calls that held a
    // connection and got the lock once it was released.
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(()) => ok += 1,
            Err((Code::Unavailable, _)) => unavailable += 1,
            Err(other) => panic!("no code but OK or UNAVAILABLE: {other:?}"),
        }
    }
    assert_eq!(ok + unavailable, calls);
    // The figures docs/security.md reports (no assertion on time).
    eprintln!(
        "pool of 2 exhausted: {calls} calls, {ok} OK, {unavailable} UNAVAILABLE, 0 INTERNAL, all answered within {:?}",
        began.elapsed()
    );
    // GetWorkflow reads through the API's pool, GetLifecycleSummary through
    // the general one: two connections each could be waiting.
    assert!(
        ok <= 4,
        "at most the two pools' two connections were waiting"
    );
    // And the server is fine afterwards.
    c.get_workflow(req(pb::GetWorkflowRequest { id: id.clone() }, "crm-a"))
        .await
        .unwrap();
    LifecycleServiceClient::new(t.channel.clone())
        .get_lifecycle_summary(req(pb::GetLifecycleSummaryRequest {}, "crm-a"))
        .await
        .unwrap();
    t.server.shutdown().await;
}

/// A JSON object `{"blob": "xxx…"}` whose encoded Struct is exactly `len`
/// bytes.
fn payload_of(len: usize) -> prost_types::Struct {
    let mut n = len;
    loop {
        let s = obj(json!({ "blob": "x".repeat(n) })).unwrap();
        match s.encoded_len().cmp(&len) {
            std::cmp::Ordering::Equal => return s,
            std::cmp::Ordering::Greater => n -= s.encoded_len() - len,
            std::cmp::Ordering::Less => panic!("no payload of exactly {len} bytes"),
        }
    }
}

async fn digest(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT md5(coalesce((SELECT string_agg(t::text, '|' ORDER BY t::text) FROM runs t), '') \
         || coalesce((SELECT string_agg(t::text, '|' ORDER BY t::text) FROM run_events t), '') \
         || coalesce((SELECT string_agg(t::text, '|' ORDER BY t::text) FROM schedules t), ''))",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn payloads_at_the_limit_pass_and_one_byte_over_is_refused(pool: PgPool) {
    let t = start_with(&pool, &demo_only(), |c| {
        c.schedules.enabled = false;
        c.engine.shutdown_grace_ms = 100;
    })
    .await;
    let mut c = t.client.clone();
    let mut s = ScheduleServiceClient::new(t.channel.clone());
    let at = payload_of(LIMIT);
    let over = payload_of(LIMIT + 1);
    assert_eq!((at.encoded_len(), over.encoded_len()), (LIMIT, LIMIT + 1));
    let retried = failed_run(&mut c, "crm-a").await;
    let skipped = failed_run(&mut c, "crm-a").await;

    // One byte over: refused, naming the limit, and nothing is written.
    let before = digest(&pool).await;
    let start = |input: &prost_types::Struct| {
        req(
            pb::StartWorkflowRequest {
                workflow_name: "demo_saga".into(),
                input: Some(input.clone()),
                idempotency_key: String::new(),
                workflow_version: 0,
            },
            "crm-a",
        )
    };
    let retry = |patch: &prost_types::Struct| {
        req(
            pb::RetryWorkflowRequest {
                id: retried.clone(),
                from_step: String::new(),
                context_patch: Some(patch.clone()),
                reason: String::new(),
            },
            "operator-a",
        )
    };
    let skip = |output: &prost_types::Struct| {
        req(
            pb::SkipStepRequest {
                id: skipped.clone(),
                step: "configure".into(),
                output: Some(output.clone()),
                reason: String::new(),
            },
            "operator-a",
        )
    };
    let schedule = |input: &prost_types::Struct| {
        req(
            pb::CreateScheduleRequest {
                name: "big".into(),
                cron: "0 3 * * *".into(),
                workflow_name: "demo_saga".into(),
                input: Some(input.clone()),
                paused: true,
                ..Default::default()
            },
            "admin-a",
        )
    };
    let refusals = [
        c.start_workflow(start(&over)).await.map(drop),
        c.retry_workflow(retry(&over)).await.map(drop),
        c.skip_step(skip(&over)).await.map(drop),
        s.create_schedule(schedule(&over)).await.map(drop),
    ];
    for r in refusals {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(
            e.message()
                .contains(&format!("{} bytes; the limit is {LIMIT} bytes", LIMIT + 1)),
            "{}",
            e.message()
        );
    }
    assert_eq!(digest(&pool).await, before, "a refused payload was stored");

    // Exactly at the limit: accepted, and stored whole.
    let started = c.start_workflow(start(&at)).await.unwrap().into_inner();
    let id = started.workflow.unwrap().id;
    let stored: i32 =
        sqlx::query_scalar("SELECT length(input->>'blob') FROM runs WHERE id::text = $1")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    let blob_len = |s: &prost_types::Struct| match &s.fields["blob"].kind {
        Some(prost_types::value::Kind::StringValue(v)) => v.len() as i32,
        _ => unreachable!(),
    };
    assert_eq!(stored, blob_len(&at));
    c.retry_workflow(retry(&at)).await.unwrap();
    c.skip_step(skip(&at)).await.unwrap();
    let created = s.create_schedule(schedule(&at)).await.unwrap().into_inner();
    assert_eq!(created.input.unwrap().encoded_len(), LIMIT);
    t.server.shutdown().await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_thousand_watch_streams_all_end_and_the_next_is_refused(pool: PgPool) {
    let t = start_with(&pool, &demo_only(), |c| {
        c.schedules.enabled = false;
        c.database.max_connections = 16;
        c.engine.shutdown_grace_ms = 100;
        // Events of runs this server drives reach watches at once; the
        // poll (for other replicas' writes) only adds load here.
        c.grpc.watch_poll_ms = 5000;
    })
    .await;
    let mut c = t.client.clone();
    // Ten runs waiting for an operator: their watches stay open.
    let mut runs = Vec::new();
    for _ in 0..10 {
        runs.push(failed_run(&mut c, "crm-a").await);
    }
    // The server sets no HTTP/2 concurrent-stream limit per connection:
    // four connections carry 250 watches each.
    let channels: Vec<Channel> = (0..4)
        .map(|_| {
            Channel::from_shared(format!("http://{}", t.server.grpc_addr))
                .unwrap()
                .connect_lazy()
        })
        .collect();
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<()>(1000);
    let retries = Arc::new(AtomicUsize::new(0));
    let mut watchers = tokio::task::JoinSet::new();
    for (i, ch) in channels.iter().enumerate() {
        for j in 0..250 {
            let id = runs[(i * 250 + j) % runs.len()].clone();
            let ch = ch.clone();
            let opened = opened_tx.clone();
            let retries = retries.clone();
            watchers.spawn(async move {
                let mut w = WorkflowServiceClient::new(ch);
                let mut told = false;
                let give_up = Instant::now() + Duration::from_secs(120);
                // UNAVAILABLE (the pool stayed busy while a thousand watches
                // opened at once) means: watch again, as documented; a new
                // watch sends the history from the start.
                'watch: loop {
                    let mut stream = match w
                        .watch_workflow(req(pb::WatchWorkflowRequest { id: id.clone() }, "crm-a"))
                        .await
                    {
                        Ok(s) => s.into_inner(),
                        Err(e) if e.code() == Code::Unavailable => {
                            if Instant::now() > give_up {
                                return Err(format!("watch {id}: still UNAVAILABLE after 120 s"));
                            }
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await; // back-off between polls, bounded by `give_up`
                            continue;
                        }
                        Err(e) => return Err(format!("watch {id}: {e:?}")),
                    };
                    let mut seen = Vec::new();
                    loop {
                        match stream.message().await {
                            Ok(Some(e)) => {
                                let failed = e.r#type == "run_failed";
                                seen.push(e);
                                if failed && !told {
                                    // The history up to the failure arrived.
                                    opened.send(()).await.unwrap();
                                    told = true;
                                }
                            }
                            Ok(None) => return Ok::<_, String>((id, seen)),
                            Err(e) if e.code() == Code::Unavailable => {
                                retries.fetch_add(1, Ordering::Relaxed);
                                continue 'watch;
                            }
                            Err(e) => return Err(format!("stream {id}: {e:?}")),
                        }
                    }
                }
            });
        }
    }
    drop(opened_tx);
    let end = Instant::now() + Duration::from_secs(120);
    for _ in 0..1000 {
        tokio::select! {
            caught_up = tokio::time::timeout_at(end.into(), opened_rx.recv()) => {
                caught_up
                    .expect("1,000 watches open and caught up")
                    .expect("a watcher ended early");
            }
            Some(ended) = watchers.join_next() => {
                panic!("a watch ended before its run did: {:?}", ended.unwrap());
            }
        }
    }

    let watch_first = || {
        req(
            pb::WatchWorkflowRequest {
                id: runs[0].clone(),
            },
            "crm-a",
        )
    };
    // The 1,001st is refused while the thousand are open. (A watch being
    // opened again after UNAVAILABLE leaves its slot free for a moment: a
    // watch that gets it is closed and the call made again.)
    let end = Instant::now() + Duration::from_secs(20);
    let e = loop {
        match c.watch_workflow(watch_first()).await {
            Err(e) => break e,
            Ok(extra) => {
                drop(extra);
                assert!(Instant::now() < end, "no watch limit");
                tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
            }
        }
    };
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("1000 watches"), "{}", e.message());

    // The runs move on: every watch gets the rest and ends with the run.
    for id in &runs {
        c.skip_step(req(
            pb::SkipStepRequest {
                id: id.clone(),
                step: "configure".into(),
                output: None,
                reason: "limits test".into(),
            },
            "operator-a",
        ))
        .await
        .unwrap();
    }
    let mut ended = 0;
    while let Some(r) = watchers.join_next().await {
        let (id, seen) = r.unwrap().unwrap();
        assert_eq!(seen.first().unwrap().r#type, "run_started", "{id}");
        assert_eq!(seen.last().unwrap().r#type, "run_completed", "{id}");
        assert!(
            seen.iter()
                .enumerate()
                .all(|(i, e)| e.sequence == i as u64 + 1),
            "{id}: gapless, in order"
        );
        ended += 1;
    }
    assert_eq!(ended, 1000);
    eprintln!(
        "1000 concurrent watches: all caught up, all ended with their run; the 1001st: RESOURCE_EXHAUSTED; {} UNAVAILABLE answers watched again",
        retries.load(Ordering::Relaxed)
    );

    // The permits came back: a new watch opens (polled: a stream's permit
    // is released just after its last message).
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match c.watch_workflow(watch_first()).await {
            Ok(s) => {
                let mut s = s.into_inner();
                let mut last = None;
                while let Some(e) = s.message().await.unwrap() {
                    last = Some(e.r#type);
                }
                assert_eq!(last.as_deref(), Some("run_completed"));
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(Instant::now() < end, "watch permits never came back");
                tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
            }
        }
    }
    t.server.shutdown().await;
}
