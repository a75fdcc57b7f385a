//! Shared by the end-to-end tests: an in-process server on 127.0.0.1:0
//! against a fresh PostgreSQL database, and gRPC helpers.
#![allow(dead_code, clippy::unwrap_used)]

pub mod console;
pub mod corpus;
pub mod http;
pub mod prom;
pub mod serve;

use std::time::{Duration, Instant};

use sagaflow::config::Config;
use sagaflow::server::Server;
use sagaflow_engine::api::auth::{Role, TokenEntry, hash_token};
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::workflow_service_client::WorkflowServiceClient;
use serde_json::Value;
use sqlx::PgPool;
use tonic::transport::Channel;

pub const DEMO: &str = include_str!("../../workflows/demo_saga.v1.toml");

/// A demo-saga variant whose subscriber id is a concurrency key with `policy`.
pub fn keyed_demo(name: &str, policy: &str) -> String {
    DEMO.replace(
        "name = \"demo_saga\"",
        &format!(
            "name = \"{name}\"\nconcurrency = {{ key = \"/subscriber_id\", policy = \"{policy}\" }}"
        ),
    )
}

pub fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("postgres")
    )
}

/// Tokens `<role>-<tenant>` for tenants `a` and `b`.
pub fn tokens() -> Vec<TokenEntry> {
    let mut out = Vec::new();
    for tenant in ["a", "b"] {
        for role in [Role::Crm, Role::Operator, Role::Admin] {
            let token = format!("{}-{tenant}", role.as_str());
            out.push(TokenEntry {
                name: format!("{token}-user"),
                tenant: tenant.into(),
                role,
                sha256: hash_token(&token),
            });
        }
    }
    out
}

pub struct TestServer {
    pub server: Server,
    pub client: WorkflowServiceClient<Channel>,
    pub channel: Channel,
    pub dir: tempfile::TempDir,
}

pub async fn start(pool: &PgPool, workflows: &[(&str, String)]) -> TestServer {
    start_with(pool, workflows, |_| {}).await
}

/// [`start`], with `tweak` applied to the configuration first.
pub async fn start_with(
    pool: &PgPool,
    workflows: &[(&str, String)],
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    start_on(&database_url(pool), workflows, tweak).await
}

/// An in-process server on the database at `url` (PostgreSQL or SQLite,
/// migrated on start), with `tweak` applied to the configuration first.
pub async fn start_on(
    url: &str,
    workflows: &[(&str, String)],
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in workflows {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let mut c = Config::default();
    c.database.url = url.to_owned();
    c.database.max_connections = 8;
    c.grpc.addr = "127.0.0.1:0".into();
    c.http.addr = "127.0.0.1:0".into();
    c.engine.workflows = dir.path().to_owned();
    c.engine.poll_ms = 50;
    c.auth.tokens = tokens();
    tweak(&mut c);
    let server = Server::start(&c, false).await.unwrap();
    // Lazily: a TLS server refuses this plaintext channel, and tests of
    // TLS make their own.
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect_lazy();
    TestServer {
        client: WorkflowServiceClient::new(channel.clone()),
        channel,
        server,
        dir,
    }
}

pub fn req<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

pub fn obj(v: Value) -> Option<prost_types::Struct> {
    Some(sagaflow_proto::json::json_to_struct(&v))
}

pub fn state(w: &pb::Workflow) -> pb::WorkflowState {
    pb::WorkflowState::try_from(w.state).unwrap()
}

/// Polls GetWorkflow until the run is in `want` (deadline 20 s).
pub async fn wait_state(
    c: &mut WorkflowServiceClient<Channel>,
    token: &str,
    id: &str,
    want: pb::WorkflowState,
) -> pb::Workflow {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let w = c
            .get_workflow(req(pb::GetWorkflowRequest { id: id.into() }, token))
            .await
            .unwrap()
            .into_inner();
        if state(&w) == want {
            return w;
        }
        assert!(
            Instant::now() < end,
            "run {id} stuck in {:?}, wanted {want:?}",
            state(&w)
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
}

pub async fn start_run(
    c: &mut WorkflowServiceClient<Channel>,
    token: &str,
    workflow: &str,
    input: Value,
    key: &str,
) -> Result<pb::StartWorkflowResponse, tonic::Status> {
    c.start_workflow(req(
        pb::StartWorkflowRequest {
            workflow_name: workflow.into(),
            input: obj(input),
            idempotency_key: key.into(),
            workflow_version: 0,
        },
        token,
    ))
    .await
    .map(|r| r.into_inner())
}

/// Starts a demo saga whose `configure` step fails and waits until the run
/// is FAILED (waiting for an operator); returns its id.
pub async fn failed_run(c: &mut WorkflowServiceClient<Channel>, token: &str) -> String {
    failed_run_at(c, token, "configure").await
}

/// [`failed_run`], failing at `step`.
pub async fn failed_run_at(
    c: &mut WorkflowServiceClient<Channel>,
    token: &str,
    step: &str,
) -> String {
    let id = start_run(
        c,
        token,
        "demo_saga",
        serde_json::json!({"demo": {"fail_step": step}}),
        "",
    )
    .await
    .unwrap()
    .workflow
    .unwrap()
    .id;
    wait_state(c, token, &id, pb::WorkflowState::Failed).await;
    id
}

pub async fn count_rows(pool: &PgPool) -> (i64, i64) {
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(pool)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM run_events")
        .fetch_one(pool)
        .await
        .unwrap();
    (runs, events)
}

/// Rows of every table the API writes (runs, signals, schedules, pools,
/// reservations), to show that a refused call stored nothing.
pub async fn table_rows(pool: &PgPool) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for table in [
        "runs",
        "run_events",
        "run_signals",
        "schedules",
        "schedule_fires",
        "ip_pools",
        "pool_audit",
        "address_records",
        "address_audit",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(pool)
                .await
                .unwrap();
        out.push((table, n));
    }
    out
}

/// A `sagaflow dev` process on free ports, killed on drop.
pub struct DevProcess {
    pub child: std::process::Child,
    pub server: String,
    /// The HTTP address, `http://host:port`.
    pub http: String,
    pub dir: tempfile::TempDir,
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DevProcess {
    /// Starts `sagaflow dev` on a fresh SQLite file with the repository's
    /// workflows, and waits (with a deadline) until it prints its address.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// `start` with these extra environment variables.
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("dev.db").display());
        let workflows = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sagaflow"))
            .args([
                "dev",
                "--database-url",
                &db,
                "--workflows",
                workflows,
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--poll-ms",
                "50",
            ])
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let line = line.trim();
                if let Some(addr) = line.strip_prefix("gRPC") {
                    let _ = tx.send((true, addr.trim().to_owned()));
                } else if let Some(rest) = line.strip_prefix("HTTP") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send((false, url.to_owned()));
                }
            }
        });
        let (mut grpc, mut http) = (None, None);
        while grpc.is_none() || http.is_none() {
            let (is_grpc, addr) = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("sagaflow dev printed its gRPC and HTTP addresses");
            if is_grpc {
                grpc = Some(addr);
            } else {
                http = Some(addr);
            }
        }
        Self {
            child,
            server: format!("http://{}", grpc.unwrap()),
            http: http.unwrap(),
            dir,
        }
    }

    /// Runs the CLI against this server; returns (exit code, stdout, stderr).
    pub fn cli(&self, token: &str, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sagaflow"))
            .args(args)
            .env("SAGAFLOW_SERVER", &self.server)
            .env("SAGAFLOW_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `cli` with `-o json`, parsed; panics unless it exits 0.
    pub fn json(&self, token: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let (code, out, err) = self.cli(token, &a);
        assert_eq!(code, 0, "sagaflow {args:?} failed: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    }

    /// Polls `workflow get` until the run is in `state` (deadline 20 s).
    pub fn wait_state(&self, id: &str, state: &str) -> Value {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let w = self.json("dev-crm", &["workflow", "get", id]);
            if w["state"] == state {
                return w;
            }
            assert!(
                Instant::now() < end,
                "run {id} is {} , wanted {state}",
                w["state"]
            );
            std::thread::sleep(Duration::from_millis(50)); // poll interval
        }
    }
}

/// `sagaflow serve` on a PostgreSQL URL nothing listens on, on free ports,
/// with no configuration file, none of the variables a check reads, and
/// logs off: the start-up checks run, then the database is unreachable.
pub fn serve_unreachable() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sagaflow"));
    cmd.args([
        "serve",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/nothing",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    for var in [
        "SAGAFLOW_CONFIG",
        "SAGAFLOW_RADIUS_SECRET",
        "SAGAFLOW_SIMULATORS",
        "SAGAFLOW_ONU_URL",
        "SAGAFLOW_CPE_URL",
        "SAGAFLOW_BILLING_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "off");
    cmd
}

/// Starts a run of `workflow` with `input` and waits until it is in
/// `want`; returns its id.
pub async fn run_until(
    c: &mut WorkflowServiceClient<Channel>,
    token: &str,
    workflow: &str,
    input: Value,
    want: pb::WorkflowState,
) -> String {
    let started = start_run(c, token, workflow, input, "").await.unwrap();
    let id = started.workflow.unwrap().id;
    wait_state(c, token, &id, want).await;
    id
}

/// The run `id` as GetWorkflow answers it.
pub async fn get_run(
    c: &mut WorkflowServiceClient<Channel>,
    token: &str,
    id: &str,
) -> pb::Workflow {
    let r = req(pb::GetWorkflowRequest { id: id.into() }, token);
    c.get_workflow(r).await.unwrap().into_inner()
}

/// The history of run `id`.
pub async fn history_of(
    c: &mut WorkflowServiceClient<Channel>,
    token: &str,
    id: &str,
) -> Vec<pb::WorkflowEvent> {
    let r = req(pb::GetWorkflowHistoryRequest { id: id.into() }, token);
    c.get_workflow_history(r).await.unwrap().into_inner().events
}
