//! Security over real gRPC, an in-process server on a fresh PostgreSQL
//! database per test: the auth matrix over every RPC of every service
//! (missing, malformed, unknown and wrong-role tokens, nothing written),
//! tenant isolation with the other tenant's real ids, and the audit record
//! of every accepted and refused operator action and schedule change.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use common::*;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::lifecycle_service_client::LifecycleServiceClient;
use sagaflow_proto::v1::schedule_service_client::ScheduleServiceClient;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use serde_json::json;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing_subscriber::layer::SubscriberExt;

const RANDOM_ID: &str = "0190a5d2-ac96-7d4b-bcce-b302099a8057";

/// Every RPC of every service, with the least role that may call it.
const RPCS: &[(&str, &str)] = &[
    ("StartWorkflow", "crm"),
    ("GetWorkflow", "crm"),
    ("ListWorkflows", "crm"),
    ("WatchWorkflow", "crm"),
    ("GetWorkflowHistory", "crm"),
    ("ListWorkflowHistory", "crm"),
    ("ListWorkflowDefinitions", "crm"),
    ("RetryWorkflow", "operator"),
    ("CompensateWorkflow", "operator"),
    ("CancelWorkflow", "operator"),
    ("SkipStep", "operator"),
    ("CreateSchedule", "admin"),
    ("GetSchedule", "admin"),
    ("ListSchedules", "admin"),
    ("PauseSchedule", "admin"),
    ("ResumeSchedule", "admin"),
    ("TriggerSchedule", "admin"),
    ("DeleteSchedule", "admin"),
    ("GetSubscriberAddresses", "crm"),
    ("ListPools", "crm"),
    ("GetLifecycleSummary", "crm"),
];

const ROLES: [&str; 3] = ["crm", "operator", "admin"];

/// The `authorization` value a request carries, if any.
fn request<T>(msg: T, auth: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(v) = auth {
        r.metadata_mut().insert("authorization", v.parse().unwrap());
    }
    r
}

/// Calls `rpc` with a request that would change something if allowed: the
/// run is FAILED and the schedule exists.
async fn call(
    ch: &Channel,
    rpc: &str,
    auth: Option<&str>,
    run: &str,
    schedule: &str,
) -> Result<(), Status> {
    let mut w = WorkflowServiceClient::new(ch.clone());
    let mut s = ScheduleServiceClient::new(ch.clone());
    let mut l = LifecycleServiceClient::new(ch.clone());
    let id = run.to_owned();
    let sid = schedule.to_owned();
    match rpc {
        "StartWorkflow" => w
            .start_workflow(request(
                pb::StartWorkflowRequest {
                    workflow_name: "demo_saga".into(),
                    input: obj(json!({"matrix": true})),
                    ..Default::default()
                },
                auth,
            ))
            .await
            .map(drop),
        "GetWorkflow" => w
            .get_workflow(request(pb::GetWorkflowRequest { id }, auth))
            .await
            .map(drop),
        "ListWorkflows" => w
            .list_workflows(request(pb::ListWorkflowsRequest::default(), auth))
            .await
            .map(drop),
        "WatchWorkflow" => w
            .watch_workflow(request(pb::WatchWorkflowRequest { id }, auth))
            .await
            .map(drop),
        "GetWorkflowHistory" => w
            .get_workflow_history(request(pb::GetWorkflowHistoryRequest { id }, auth))
            .await
            .map(drop),
        "ListWorkflowHistory" => w
            .list_workflow_history(request(
                pb::ListWorkflowHistoryRequest {
                    id,
                    ..Default::default()
                },
                auth,
            ))
            .await
            .map(drop),
        "ListWorkflowDefinitions" => w
            .list_workflow_definitions(request(pb::ListWorkflowDefinitionsRequest {}, auth))
            .await
            .map(drop),
        "RetryWorkflow" => w
            .retry_workflow(request(
                pb::RetryWorkflowRequest {
                    id,
                    // Slow enough to still be running when the next action
                    // comes.
                    context_patch: obj(json!({"demo": {"sleep_ms": 5000}})),
                    reason: "ticket 7".into(),
                    ..Default::default()
                },
                auth,
            ))
            .await
            .map(drop),
        "CompensateWorkflow" => w
            .compensate_workflow(request(
                pb::CompensateWorkflowRequest {
                    id,
                    reason: String::new(),
                },
                auth,
            ))
            .await
            .map(drop),
        "CancelWorkflow" => w
            .cancel_workflow(request(
                pb::CancelWorkflowRequest {
                    id,
                    compensate: true,
                    reason: String::new(),
                },
                auth,
            ))
            .await
            .map(drop),
        "SkipStep" => w
            .skip_step(request(
                pb::SkipStepRequest {
                    id,
                    step: "configure".into(),
                    output: None,
                    reason: String::new(),
                },
                auth,
            ))
            .await
            .map(drop),
        "CreateSchedule" => s
            .create_schedule(request(
                pb::CreateScheduleRequest {
                    name: "matrix".into(),
                    cron: "0 3 * * *".into(),
                    workflow_name: "demo_saga".into(),
                    paused: true,
                    ..Default::default()
                },
                auth,
            ))
            .await
            .map(drop),
        "GetSchedule" => s
            .get_schedule(request(pb::GetScheduleRequest { id: sid }, auth))
            .await
            .map(drop),
        "ListSchedules" => s
            .list_schedules(request(pb::ListSchedulesRequest {}, auth))
            .await
            .map(drop),
        "PauseSchedule" => s
            .pause_schedule(request(
                pb::PauseScheduleRequest {
                    id: sid,
                    reason: String::new(),
                },
                auth,
            ))
            .await
            .map(drop),
        "ResumeSchedule" => s
            .resume_schedule(request(pb::ResumeScheduleRequest { id: sid }, auth))
            .await
            .map(drop),
        "TriggerSchedule" => s
            .trigger_schedule(request(pb::TriggerScheduleRequest { id: sid }, auth))
            .await
            .map(drop),
        "DeleteSchedule" => s
            .delete_schedule(request(pb::DeleteScheduleRequest { id: sid }, auth))
            .await
            .map(drop),
        "GetSubscriberAddresses" => l
            .get_subscriber_addresses(request(
                pb::GetSubscriberAddressesRequest {
                    subscriber_id: "sub-1".into(),
                },
                auth,
            ))
            .await
            .map(drop),
        "ListPools" => l
            .list_pools(request(pb::ListPoolsRequest {}, auth))
            .await
            .map(drop),
        "GetLifecycleSummary" => l
            .get_lifecycle_summary(request(pb::GetLifecycleSummaryRequest {}, auth))
            .await
            .map(drop),
        other => panic!("no call for {other}"),
    }
}

/// A digest of everything a call could write.
async fn fingerprint(pool: &PgPool) -> String {
    let mut out = String::new();
    for table in [
        "runs",
        "run_events",
        "concurrency_locks",
        "schedules",
        "schedule_fires",
        "address_records",
    ] {
        // The table names are the constants above.
        let digest: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push_str(&format!("{table}={digest} "));
    }
    out
}

/// No scheduler (no seeded schedules firing), a short drain at shutdown.
fn quiet(c: &mut sagaflow::config::Config) {
    c.schedules.enabled = false;
    c.engine.shutdown_grace_ms = 100;
}

fn demo_only() -> Vec<(&'static str, String)> {
    vec![("demo.toml", DEMO.to_string())]
}

async fn new_schedule(ch: &Channel, tenant: &str, name: &str) -> pb::Schedule {
    ScheduleServiceClient::new(ch.clone())
        .create_schedule(req(
            pb::CreateScheduleRequest {
                name: name.into(),
                cron: "0 3 * * *".into(),
                timezone: "Europe/Berlin".into(),
                workflow_name: "demo_saga".into(),
                paused: true,
                ..Default::default()
            },
            &format!("admin-{tenant}"),
        ))
        .await
        .unwrap()
        .into_inner()
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn every_rpc_refuses_missing_unknown_and_wrong_role_tokens(pool: PgPool) {
    let t = start_with(&pool, &demo_only(), quiet).await;
    let mut c = t.client.clone();
    let run = failed_run(&mut c, "crm-a").await;
    let schedule = new_schedule(&t.channel, "a", "nightly").await.id;
    let before = fingerprint(&pool).await;

    let mut refused = 0;
    for (rpc, need) in RPCS {
        for bad in [
            None,
            Some("Bearer not-a-configured-token"),
            Some("Bearer "),
            Some("Basic crm-a"),
            Some("crm-a"),
            Some("Bearer crm-a-but-longer"),
        ] {
            let e = call(&t.channel, rpc, bad, &run, &schedule)
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{rpc} with {bad:?}: {e:?}");
            refused += 1;
        }
        let need_rank = ROLES.iter().position(|r| r == need).unwrap();
        for role in &ROLES[..need_rank] {
            let auth = format!("Bearer {role}-a");
            let e = call(&t.channel, rpc, Some(&auth), &run, &schedule)
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{rpc} as {role}: {e:?}");
            assert!(e.message().contains(need), "{rpc}: {}", e.message());
            refused += 1;
        }
    }
    assert_eq!(refused, 6 * RPCS.len() + 18);
    assert_eq!(fingerprint(&pool).await, before, "a refused call wrote");

    // Every role at or above the one needed gets past authentication and
    // the role check (reads answer OK; the writes do what they say).
    for (rpc, need) in RPCS {
        let need_rank = ROLES.iter().position(|r| r == need).unwrap();
        for role in &ROLES[need_rank..] {
            let auth = format!("Bearer {role}-a");
            if let Err(e) = call(&t.channel, rpc, Some(&auth), &run, &schedule).await {
                assert!(
                    !matches!(e.code(), Code::Unauthenticated | Code::PermissionDenied),
                    "{rpc} as {role}: {e:?}"
                );
            }
        }
    }
    assert_ne!(fingerprint(&pool).await, before, "the allowed calls wrote");
    t.server.shutdown().await;
}

/// Asserts that `e` is the answer for an unknown id, word for word.
fn same_as_unknown(rpc: &str, e: Status, unknown: Status, id: &str) {
    assert_eq!(e.code(), Code::NotFound, "{rpc} {id}: {e:?}");
    assert_eq!(e.code(), unknown.code(), "{rpc}");
    assert_eq!(
        e.message(),
        unknown.message().replace(RANDOM_ID, id),
        "{rpc}: same answer as for an id that does not exist"
    );
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn another_tenants_ids_answer_like_unknown_ids(pool: PgPool) {
    let t = start_with(&pool, &demo_only(), quiet).await;
    let mut c = t.client.clone();
    // Tenant b's runs in several states, and its schedules.
    let mut b_runs = vec![failed_run(&mut c, "crm-b").await];
    let done = start_run(&mut c, "crm-b", "demo_saga", json!({}), "")
        .await
        .unwrap()
        .workflow
        .unwrap()
        .id;
    wait_state(&mut c, "crm-b", &done, pb::WorkflowState::Completed).await;
    b_runs.push(done);
    let b_schedules = [
        new_schedule(&t.channel, "b", "nightly").await.id,
        new_schedule(&t.channel, "b", "weekly").await.id,
    ];
    // Tenant a has a schedule of the same name: names are per tenant.
    new_schedule(&t.channel, "a", "nightly").await;
    let before = fingerprint(&pool).await;

    let run_rpcs = [
        "GetWorkflow",
        "WatchWorkflow",
        "GetWorkflowHistory",
        "ListWorkflowHistory",
        "RetryWorkflow",
        "CompensateWorkflow",
        "CancelWorkflow",
        "SkipStep",
    ];
    let schedule_rpcs = [
        "GetSchedule",
        "PauseSchedule",
        "ResumeSchedule",
        "TriggerSchedule",
        "DeleteSchedule",
    ];
    let mut cross = 0;
    for role in ROLES {
        let auth = format!("Bearer {role}-a");
        let cases = run_rpcs
            .iter()
            .flat_map(|rpc| b_runs.iter().map(move |id| (*rpc, id.as_str(), RANDOM_ID)))
            .chain(schedule_rpcs.iter().flat_map(|rpc| {
                b_schedules
                    .iter()
                    .map(move |id| (*rpc, RANDOM_ID, id.as_str()))
            }));
        for (rpc, run, schedule) in cases {
            let unknown = call(&t.channel, rpc, Some(&auth), RANDOM_ID, RANDOM_ID).await;
            let got = call(&t.channel, rpc, Some(&auth), run, schedule).await;
            let id = if run == RANDOM_ID { schedule } else { run };
            match (got, unknown) {
                (Err(e), Err(u)) if e.code() == Code::PermissionDenied => {
                    assert_eq!(u.code(), Code::PermissionDenied, "{rpc} as {role}");
                }
                (Err(e), Err(u)) => {
                    same_as_unknown(rpc, e, u, id);
                    cross += 1;
                }
                (Ok(()), _) => panic!("{rpc} as {role}-a on tenant b's {id} succeeded"),
                (Err(e), Ok(())) => panic!("{rpc}: unknown id accepted, other's refused: {e:?}"),
            }
        }
    }
    // crm reads 4 RPCs × 2 runs (its operator and schedule calls are refused
    // by role first); operator 8 × 2; admin 8 × 2 and 5 × 2 schedules.
    assert_eq!(cross, 8 + 16 + 16 + 10);
    assert_eq!(fingerprint(&pool).await, before, "tenant b's data changed");

    // Lists never show the other tenant's runs or schedules.
    let runs = c
        .list_workflows(req(pb::ListWorkflowsRequest::default(), "admin-a"))
        .await
        .unwrap()
        .into_inner()
        .workflows;
    assert!(runs.is_empty(), "tenant a has no runs: {runs:?}");
    let schedules = ScheduleServiceClient::new(t.channel.clone())
        .list_schedules(req(pb::ListSchedulesRequest {}, "admin-a"))
        .await
        .unwrap()
        .into_inner()
        .schedules;
    assert_eq!(schedules.len(), 1);
    assert!(!b_schedules.contains(&schedules[0].id));
    t.server.shutdown().await;
}

/// Audit records captured from the process-wide subscriber.
type Record = HashMap<String, String>;

fn audit_log() -> &'static Mutex<Vec<Record>> {
    static LOG: OnceLock<Mutex<Vec<Record>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let layer = Capture;
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).unwrap();
        Mutex::new(Vec::new())
    })
}

struct Capture;

struct Fields(Record);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != sagaflow_engine::api::audit::TARGET {
            return;
        }
        let mut f = Fields(Record::new());
        event.record(&mut f);
        audit_log().lock().unwrap().push(f.0);
    }
}

fn records_for(target: &str) -> Vec<Record> {
    audit_log()
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.get("target_id").map(String::as_str) == Some(target))
        .cloned()
        .collect()
}

fn summary(r: &Record) -> String {
    ["action", "principal", "tenant", "role", "outcome", "code"]
        .iter()
        .map(|k| r.get(*k).cloned().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn operator_actions_and_schedule_changes_are_audited(pool: PgPool) {
    audit_log();
    let t = start_with(&pool, &demo_only(), quiet).await;
    let mut c = t.client.clone();
    let run = failed_run(&mut c, "crm-a").await;
    let schedule = new_schedule(&t.channel, "a", "audited").await.id;

    // Refused: no token, unknown token, wrong role, wrong state; then
    // accepted.
    for (rpc, auth) in [
        ("SkipStep", None),
        ("SkipStep", Some("Bearer who-knows")),
        ("SkipStep", Some("Bearer crm-a")),
        ("CompensateWorkflow", Some("Bearer operator-b")),
        ("RetryWorkflow", Some("Bearer operator-a")),
        ("CompensateWorkflow", Some("Bearer operator-a")),
        ("CancelWorkflow", Some("Bearer operator-a")),
    ] {
        let _ = call(&t.channel, rpc, auth, &run, &schedule).await;
    }
    for (rpc, auth) in [
        ("PauseSchedule", Some("Bearer operator-a")),
        ("ResumeSchedule", Some("Bearer admin-a")),
        ("TriggerSchedule", Some("Bearer admin-a")),
        ("DeleteSchedule", Some("Bearer admin-a")),
        ("DeleteSchedule", Some("Bearer admin-a")),
    ] {
        let _ = call(&t.channel, rpc, auth, &run, &schedule).await;
    }
    let got: Vec<String> = records_for(&run).iter().map(summary).collect();
    assert_eq!(
        got,
        [
            "skip_step    refused UNAUTHENTICATED",
            "skip_step    refused UNAUTHENTICATED",
            "skip_step crm-a-user a crm refused PERMISSION_DENIED",
            "compensate_workflow operator-b-user b operator refused NOT_FOUND",
            "retry_workflow operator-a-user a operator accepted OK",
            // The retried run is running again: compensate does not fit.
            "compensate_workflow operator-a-user a operator refused FAILED_PRECONDITION",
            "cancel_workflow operator-a-user a operator accepted OK",
        ],
        "{:#?}",
        records_for(&run)
    );
    let got: Vec<String> = records_for(&schedule).iter().map(summary).collect();
    assert_eq!(
        got,
        [
            "pause_schedule operator-a-user a operator refused PERMISSION_DENIED",
            "resume_schedule admin-a-user a admin accepted OK",
            "trigger_schedule admin-a-user a admin accepted OK",
            "delete_schedule admin-a-user a admin accepted OK",
            "delete_schedule admin-a-user a admin refused NOT_FOUND",
        ]
    );
    let created: Vec<String> = records_for("audited").iter().map(summary).collect();
    assert_eq!(
        created,
        ["create_schedule admin-a-user a admin accepted OK"]
    );
    // Refusals say why; no record carries a token.
    let all = audit_log().lock().unwrap().clone();
    let denied = records_for(&run)
        .into_iter()
        .find(|r| r["code"] == "PERMISSION_DENIED")
        .unwrap();
    assert!(denied["detail"].contains("operator"), "{denied:?}");
    // The operator's reason is part of the record.
    let retried = records_for(&run)
        .into_iter()
        .find(|r| r["action"] == "retry_workflow")
        .unwrap();
    assert_eq!(retried["reason"], "ticket 7", "{retried:?}");
    for r in &all {
        for v in r.values() {
            for token in ["who-knows", "Bearer who", "Bearer crm", "Bearer operator"] {
                assert!(!v.contains(token), "a record carries {token:?}: {r:?}");
            }
        }
    }
    // The accepted run actions are in the run's history with the actor.
    let h = c
        .get_workflow_history(req(
            pb::GetWorkflowHistoryRequest { id: run.clone() },
            "crm-a",
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let ops: Vec<(String, String)> = h
        .iter()
        .filter(|e| e.r#type.starts_with("operator_"))
        .map(|e| (e.r#type.clone(), e.actor.clone()))
        .collect();
    assert_eq!(
        ops,
        [
            ("operator_retry".to_owned(), "operator-a-user".to_owned()),
            ("operator_cancel".to_owned(), "operator-a-user".to_owned()),
        ]
    );
    t.server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Secrets in logs and printed configuration.

const DB_PASSWORD: &str = "DbPassw0rd-never-logged";
const RADIUS_SECRET: &str = "RadiusShared-never-logged";
const RADIUS_DB_PASSWORD: &str = "RadiusDbPw-never-logged";
const ADAPTER_TOKEN: &str = "AdapterToken-never-logged";
const SIM_TOKEN: &str = "SimToken-never-logged";
const WEBHOOK_SECRET: &str = "WebhookSecret-never-logged";
const CLIENT_TOKEN: &str = "ClientToken-never-logged";
const UNKNOWN_TOKEN: &str = "UnknownToken-never-logged";

fn secrets() -> [&'static str; 8] {
    [
        DB_PASSWORD,
        RADIUS_SECRET,
        RADIUS_DB_PASSWORD,
        ADAPTER_TOKEN,
        SIM_TOKEN,
        WEBHOOK_SECRET,
        CLIENT_TOKEN,
        UNKNOWN_TOKEN,
    ]
}

/// A configuration file carrying every kind of secret the server knows.
fn secret_config(pool: &PgPool, dir: &std::path::Path, format: &str) -> std::path::PathBuf {
    let o = pool.connect_options();
    let url = |password: &str| {
        format!(
            "postgres://{}:{password}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("postgres")
        )
    };
    let workflows = dir.join("workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    std::fs::write(workflows.join("demo.toml"), DEMO).unwrap();
    let text = format!(
        r#"
[database]
url = "{db}"
max_connections = 4
[grpc]
addr = "127.0.0.1:0"
[http]
addr = "127.0.0.1:0"
[engine]
workflows = "{workflows}"
poll_ms = 50
shutdown_grace_ms = 100
[log]
format = "{format}"
[schedules]
enabled = false
[radius]
secret = "{RADIUS_SECRET}"
database_url = "{radius_db}"
[domain.billing]
base_url = "http://billing:{ADAPTER_TOKEN}@127.0.0.1:9"
token = "{ADAPTER_TOKEN}"
[domain.simulators]
enabled = true
token = "{SIM_TOKEN}"
[domain.notify]
secret = "{WEBHOOK_SECRET}"
[[auth.tokens]]
name = "crm-client"
tenant = "a"
role = "crm"
sha256 = "{hash}"
"#,
        db = url(DB_PASSWORD),
        radius_db = url(RADIUS_DB_PASSWORD),
        workflows = workflows.display(),
        hash = sagaflow_engine::api::auth::hash_token(CLIENT_TOKEN),
    );
    let path = dir.join("sagaflow.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_no_secret(what: &str, text: &str) {
    for s in secrets() {
        assert!(!text.contains(s), "{what} shows {s}:\n{text}");
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn secrets_never_reach_the_logs_or_config_print(pool: PgPool) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_sagaflow");

    // `config print` hides every secret and says so.
    let config = secret_config(&pool, dir.path(), "text");
    let out = std::process::Command::new(bin)
        .args(["config", "print", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_no_secret("config print", &printed);
    assert!(printed.matches("***").count() >= 7, "{printed}");

    // A store that cannot be reached: the error names the URL without its
    // password.
    let out = std::process::Command::new(bin)
        .args([
            "serve",
            "--database-url",
            &format!("postgres://u:{DB_PASSWORD}@127.0.0.1:1/x"),
        ])
        .env("SAGAFLOW_RADIUS_SECRET", "security-test-secret")
        .env("SAGAFLOW_SIMULATORS", "true")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert_no_secret("a failed start", &err);
    assert_no_secret(
        "a failed start (stdout)",
        &String::from_utf8_lossy(&out.stdout),
    );

    // The server at debug level, in both log formats, through accepted and
    // refused calls.
    for format in ["text", "json"] {
        let config = secret_config(&pool, dir.path(), format);
        let mut child = std::process::Command::new(bin)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(a) = line.trim().strip_prefix("gRPC") {
                    let _ = addr_tx.send(a.trim().to_owned());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let addr = match addr_rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill();
                panic!("no gRPC address ({e}):\n{}", reader.join().unwrap());
            }
        };
        let ch = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut w = WorkflowServiceClient::new(ch.clone());
        let ok = format!("Bearer {CLIENT_TOKEN}");
        let unknown = format!("Bearer {UNKNOWN_TOKEN}");
        let started = w
            .start_workflow(request(
                pb::StartWorkflowRequest {
                    workflow_name: "demo_saga".into(),
                    input: obj(json!({"demo": {"fail_step": "configure"}})),
                    ..Default::default()
                },
                Some(&ok),
            ))
            .await
            .unwrap()
            .into_inner();
        let id = started.workflow.unwrap().id;
        for (rpc, auth) in [
            ("GetWorkflow", Some(ok.as_str())),
            ("GetWorkflow", Some(unknown.as_str())),
            ("RetryWorkflow", Some(ok.as_str())),
            ("RetryWorkflow", Some(unknown.as_str())),
            ("CancelWorkflow", None),
            ("CreateSchedule", Some(ok.as_str())),
            ("ListPools", Some(unknown.as_str())),
        ] {
            let _ = call(&ch, rpc, auth, &id, RANDOM_ID).await;
        }
        drop((w, ch));
        // SIGTERM: the server drains and exits.
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > end {
                let _ = child.kill();
                panic!("no exit after SIGTERM:\n{}", reader.join().unwrap());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await; // poll interval
        };
        let log = reader.join().unwrap();
        assert!(status.success(), "{status:?}\n{log}");
        assert_no_secret(&format!("the {format} log"), &log);
        // The log did see the refusals and the principal, only not the
        // tokens.
        assert!(log.contains("sagaflow::audit"), "{log}");
        assert!(log.contains("crm-client"), "{log}");
        assert!(log.contains("PERMISSION_DENIED"), "{log}");
        assert!(log.contains("UNAUTHENTICATED"), "{log}");
    }
}
