//! Run-outcome webhooks with the real binary: a replica SIGKILLed while it
//! delivers leaves the delivery to another replica, which sends it with the
//! same id; the delivery is acknowledged once and the delivery log
//! (`sagaflow webhooks deliveries`) shows it.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use sagaflow_engine::Engine;
use sagaflow_engine::clock::SystemClock;
use sagaflow_engine::definition::Definitions;
use sagaflow_engine::engine::StartRequest;
use sagaflow_engine::store::postgres::PgStore;
use sagaflow_engine::store::{DeliveryFilter, DeliveryState, Store};
use sagaflow_engine::webhook::signature::verify_signature;
use serde_json::{Value, json};
use sqlx::PgPool;

const SECRET: &str = "crash-webhook-secret-0123";

fn replica(url: &str, dir: &std::path::Path, n: u32) -> common::serve::ServeProcess {
    common::serve::spawn_serve(
        url,
        &dir.join("workflows"),
        &format!("replica-{n}"),
        Some(&dir.join("sagaflow.toml")),
    )
}

/// What the receiver saw: (delivery id, signature, body) of each request.
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A receiver that holds its first request unanswered (the replica sending
/// it is killed meanwhile) and acknowledges every later one; it records
/// (delivery id, signature, body) of each.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (s, count) = (s.clone(), count.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                s.lock().unwrap().push((
                    h("x-sagaflow-delivery"),
                    h("x-sagaflow-signature"),
                    body.to_vec(),
                ));
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    std::future::pending::<()>().await;
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

async fn poll<T, F: Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval (loop has a deadline)
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_replica_killed_mid_delivery_leaves_it_to_another_with_the_same_id(pool: PgPool) {
    let (hook, seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("workflows")).unwrap();
    std::fs::write(
        dir.path().join("workflows/hooked.toml"),
        "name = \"hooked\"\nversion = 1\n[[steps]]\nname = \"only\"\nhandler = \"builtin.noop\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sagaflow.toml"),
        format!(
            "[schedules]\nenabled = false\n\n[[webhooks]]\ntenant = \"crm\"\nurl = \"{hook}\"\n\
             secret = \"{SECRET}\"\nevents = [\"run_completed\"]\n"
        ),
    )
    .unwrap();
    let url = common::database_url(&pool);

    // The test starts the run through the library (no executor here).
    let registry = sagaflow::app::registry(&sagaflow_steps::Deps::default());
    let defs = Definitions::load_dir(&dir.path().join("workflows"), &registry).unwrap();
    let store: Arc<dyn Store> = Arc::new(PgStore::from_pool(pool.clone()));
    let engine = Engine::new(
        store.clone(),
        Arc::new(registry),
        defs,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let first = replica(&url, dir.path(), 1);
    let run = engine
        .start(StartRequest::new("crm", "hooked", json!({})))
        .await
        .unwrap()
        .run
        .id;

    // The first replica completes the run and is sending its delivery when
    // it is killed.
    poll("the first try to reach the receiver", || async {
        (!seen.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let mut first = first;
    first.0.kill().expect("SIGKILL");
    first.0.wait().unwrap();
    let all = DeliveryFilter {
        limit: 10,
        ..DeliveryFilter::default()
    };
    let pending = store.deliveries(&all).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].state, DeliveryState::Pending);
    assert_eq!(pending[0].attempts, 0, "the killed try was never recorded");

    let _second = replica(&url, dir.path(), 2);
    let delivered = poll("the other replica to deliver", || async {
        let d = store.deliveries(&all).await.unwrap();
        (d.len() == 1 && d[0].state == DeliveryState::Delivered).then(|| d[0].clone())
    })
    .await;
    assert_eq!(delivered.run_id, run);
    assert_eq!(delivered.attempts, 1);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "the lost try and the acknowledged one");
    for (id, signature, body) in &seen {
        assert_eq!(id, &delivered.id.to_string(), "same id on every try");
        assert!(verify_signature(SECRET.as_bytes(), body, signature));
        let body: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(body["event"], "run_completed");
        assert_eq!(body["workflow"]["id"], run.to_string());
    }

    // The delivery log shows it.
    let out = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["webhooks", "deliveries", "--database-url", &url, "--run"])
        .arg(run.to_string())
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log[0]["delivery_id"], delivered.id.to_string());
    assert_eq!(log[0]["state"], "delivered");
    assert_eq!(log[0]["attempts"], 1);
    let bad = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args([
            "webhooks",
            "deliveries",
            "--database-url",
            &url,
            "--state",
            "lost",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("pending, delivered, failed"));
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn an_operator_enables_a_disabled_webhook_again_with_a_reason(pool: PgPool) {
    let url = common::database_url(&pool);
    let hook = "http://crm.example/hook";
    let delivery = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, tenant_id, run_id, url, event, occurred_at, state, \
            attempts, first_failed_at, last_error) \
         VALUES ($1, 'crm', $2, $3, 'run_completed', now(), 'failed', 30, now(), 'HTTP 500')",
    )
    .bind(delivery)
    .bind(uuid::Uuid::now_v7())
    .bind(hook)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO webhooks_disabled (tenant_id, url, disabled_at, reason) \
         VALUES ('crm', $1, now(), 'HTTP 500 Internal Server Error')",
    )
    .bind(hook)
    .execute(&pool)
    .await
    .unwrap();
    let sagaflow = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sagaflow"))
            .args(["webhooks", "--database-url", &url])
            .args(args)
            .output()
            .unwrap()
    };

    // A reason is required; nothing changes without one.
    let no_reason = sagaflow(&["enable", hook, "--reason", " "]);
    assert_eq!(no_reason.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_reason.stderr).contains("--reason"));
    let disabled: Value =
        serde_json::from_slice(&sagaflow(&["disabled", "-o", "json"]).stdout).unwrap();
    assert_eq!(disabled[0]["url"], hook);

    let out = sagaflow(&[
        "enable",
        hook,
        "--tenant",
        "crm",
        "--reason",
        "receiver fixed",
        "--actor",
        "alice",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 deliveries queued again"));
    let disabled: Value =
        serde_json::from_slice(&sagaflow(&["disabled", "-o", "json"]).stdout).unwrap();
    assert_eq!(disabled, json!([]));
    let (state, first_failed, next): (
        String,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = sqlx::query_as(
        "SELECT state, first_failed_at, next_attempt_at FROM webhook_deliveries WHERE id = $1",
    )
    .bind(delivery)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, "pending", "the delivery that gave up is tried again");
    assert!(first_failed.is_none() && next.is_some());
    let audit: (String, String, String, i64) =
        sqlx::query_as("SELECT tenant_id, enabled_by, reason, requeued FROM webhook_reenables")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        audit,
        ("crm".into(), "alice".into(), "receiver fixed".into(), 1)
    );

    // Enabling what is not disabled is refused and records nothing.
    let again = sagaflow(&["enable", hook, "--reason", "again"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no disabled webhook"));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_reenables")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}
