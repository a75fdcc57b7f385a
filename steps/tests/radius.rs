//! The RADIUS repository and handlers on PostgreSQL (a fresh database per
//! test) and SQLite, and the CoA / Disconnect client against NASes played by
//! UDP sockets in the test. The same behaviour against a real FreeRADIUS
//! server is in `freeradius.rs`.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod radius_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use radius::core::code::Code;
use radius::core::packet::Packet;
use radius::core::{rfc2865, rfc2866};
use radius_support::*;
use sagaflow_engine::handler::Registry;
use sagaflow_engine::ids::RunId;
use sagaflow_steps::Deps;
use sagaflow_steps::radius::{
    Account, DynAuthClient, DynAuthKind, DynAuthRequest, Error, ErrorCause, RadiusConfig,
    RadiusRepo, ReplyAttribute, Session, response_authenticator,
};
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Runs `$scenario(repo)` on PostgreSQL and on SQLite.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
            async fn postgres(pool: sqlx::PgPool) {
                super::$scenario(sagaflow_steps::radius::RadiusRepo::postgres(pool)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (pool, _dir) = super::radius_support::sqlite_pool().await;
                super::$scenario(sagaflow_steps::radius::RadiusRepo::sqlite(pool)).await;
            }
        }
    )*};
}

on_both_backends!(
    upsert_writes_one_row_of_each_and_replays_replace_them,
    set_group_moves_the_user_and_needs_an_account,
    group_reply_is_made_exactly_the_configured_rows,
    delete_removes_every_row_and_is_idempotent,
    concurrent_replays_leave_one_row_of_each,
    handlers_provision_suspend_resume_and_delete,
    handlers_refuse_invalid_context,
);

fn account(user: &str, ip: Option<&str>, prefix: Option<&str>, group: &str) -> Account {
    Account {
        username: user.into(),
        password: "pw-1".into(),
        framed_ip: ip.map(|s| s.parse().unwrap()),
        delegated_prefix: prefix.map(|s| s.parse().unwrap()),
        group: group.into(),
    }
}

async fn upsert_writes_one_row_of_each_and_replays_replace_them(repo: RadiusRepo) {
    let a = account("sub-1", Some("100.64.0.7"), Some("2001:db8:100::/56"), "gold");
    repo.upsert_account(&a).await.unwrap();
    repo.upsert_account(&a).await.unwrap();
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(
        rows.check,
        [ReplyAttribute::new("Cleartext-Password", ":=", "pw-1")]
    );
    assert_eq!(
        rows.reply,
        [
            ReplyAttribute::new("Framed-IP-Address", ":=", "100.64.0.7"),
            ReplyAttribute::new("Delegated-IPv6-Prefix", ":=", "2001:db8:100::/56"),
        ]
    );
    assert_eq!(rows.groups, [("gold".to_owned(), 1)]);

    // A changed account replaces the values; an address no longer given goes.
    let b = Account {
        password: "pw-2".into(),
        ..account("sub-1", Some("100.64.0.8"), None, "silver")
    };
    repo.upsert_account(&b).await.unwrap();
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.check_value("Cleartext-Password"), Some("pw-2"));
    assert_eq!(rows.reply_value("Framed-IP-Address"), Some("100.64.0.8"));
    assert_eq!(rows.reply_value("Delegated-IPv6-Prefix"), None);
    assert_eq!(rows.reply.len(), 1);
    assert_eq!(rows.groups, [("silver".to_owned(), 1)]);
    assert_eq!(repo.current_group("sub-1").await.unwrap().as_deref(), Some("silver"));
    assert_eq!(repo.account("nobody").await.unwrap(), None);
}

/// An operator's own `radreply` row for the subscriber, written before the
/// account by the caller, survives the account's writes.
async fn upsert_keeps_rows_it_does_not_own(repo: RadiusRepo) {
    for ip in ["100.64.0.7", "100.64.0.9"] {
        repo.upsert_account(&account("sub-1", Some(ip), None, "gold"))
            .await
            .unwrap();
    }
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.reply_value("Session-Timeout"), Some("3600"));
    assert_eq!(rows.reply_value("Framed-IP-Address"), Some("100.64.0.9"));
    assert_eq!(rows.reply.len(), 2);
    // Deleting the account removes it with the rest.
    repo.delete_account("sub-1").await.unwrap();
    assert_eq!(repo.account("sub-1").await.unwrap(), None);
}

const OPERATOR_ROW: &str = "INSERT INTO radreply (username, attribute, op, value) \
     VALUES ('sub-1', 'Session-Timeout', ':=', '3600')";

mod upsert_keeps_rows_it_does_not_own {
    use super::*;

    #[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
    async fn postgres(pool: sqlx::PgPool) {
        sqlx::query(OPERATOR_ROW).execute(&pool).await.unwrap();
        upsert_keeps_rows_it_does_not_own(RadiusRepo::postgres(pool)).await;
    }

    #[tokio::test]
    async fn sqlite() {
        let (pool, _dir) = sqlite_pool().await;
        sqlx::query(OPERATOR_ROW).execute(&pool).await.unwrap();
        upsert_keeps_rows_it_does_not_own(RadiusRepo::sqlite(pool)).await;
    }
}

async fn set_group_moves_the_user_and_needs_an_account(repo: RadiusRepo) {
    repo.upsert_account(&account("sub-1", None, None, "gold"))
        .await
        .unwrap();
    repo.set_group("sub-1", "suspended").await.unwrap();
    repo.set_group("sub-1", "suspended").await.unwrap();
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.groups, [("suspended".to_owned(), 1)]);
    repo.set_group("sub-1", "gold").await.unwrap();
    assert_eq!(repo.current_group("sub-1").await.unwrap().as_deref(), Some("gold"));

    let err = repo.set_group("ghost", "suspended").await.unwrap_err();
    assert!(matches!(err, Error::NoAccount(ref u) if u == "ghost"), "{err}");
    assert_eq!(repo.account("ghost").await.unwrap(), None);
}

async fn group_reply_is_made_exactly_the_configured_rows(repo: RadiusRepo) {
    let rows = vec![
        ReplyAttribute::new("Filter-Id", ":=", "suspended"),
        ReplyAttribute::new("Reply-Message", ":=", "Service suspended"),
    ];
    repo.ensure_group_reply("suspended", &rows).await.unwrap();
    repo.ensure_group_reply("suspended", &rows).await.unwrap();
    assert_eq!(repo.group_reply("suspended").await.unwrap(), rows);
    let fewer = vec![ReplyAttribute::new("Filter-Id", ":=", "walled-garden")];
    repo.ensure_group_reply("suspended", &fewer).await.unwrap();
    assert_eq!(repo.group_reply("suspended").await.unwrap(), fewer);
    let bad = [ReplyAttribute::new("Filter-Id", "<>", "x")];
    assert!(matches!(
        repo.ensure_group_reply("suspended", &bad).await,
        Err(Error::InvalidInput(_))
    ));
}

async fn delete_removes_every_row_and_is_idempotent(repo: RadiusRepo) {
    repo.upsert_account(&account("sub-1", Some("100.64.0.7"), Some("2001:db8::/56"), "gold"))
        .await
        .unwrap();
    repo.upsert_account(&account("sub-2", Some("100.64.0.8"), None, "gold"))
        .await
        .unwrap();
    assert!(repo.delete_account("sub-1").await.unwrap());
    assert_eq!(repo.account("sub-1").await.unwrap(), None);
    assert!(!repo.delete_account("sub-1").await.unwrap());
    // Other subscribers are untouched.
    assert!(repo.account("sub-2").await.unwrap().is_some());
}

async fn concurrent_replays_leave_one_row_of_each(repo: RadiusRepo) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let repo = repo.clone();
            tokio::spawn(async move {
                let a = account("sub-1", Some(&format!("100.64.0.{}", i % 2)), None, "gold");
                repo.upsert_account(&a).await.unwrap();
                if i % 4 == 0 {
                    repo.set_group("sub-1", "suspended").await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.check.len(), 1, "{rows:?}");
    assert_eq!(rows.reply.len(), 1, "{rows:?}");
    assert_eq!(rows.groups.len(), 1, "{rows:?}");
}

fn context() -> Value {
    json!({
        "subscriber_id": "sub-1",
        "plan": "gold",
        "ipv4_address": "100.64.0.7",
        "ipv6_prefix": "2001:db8:100::/56",
        "nas": {"ip": "127.0.0.1", "coa_port": 3799},
    })
}

async fn handlers_provision_suspend_resume_and_delete(repo: RadiusRepo) {
    let config = RadiusConfig::default();
    let r = registry(repo.clone(), config.clone());
    let run = RunId::new();
    let ctx = context();

    let out = call(&r, "radius.create_account", run, "create_radius_account", &ctx)
        .await
        .unwrap();
    let password = out["radius_password"].as_str().unwrap().to_owned();
    assert_eq!(out["radius_username"], json!("sub-1"));
    assert_eq!(out["radius_group"], json!("gold"));
    // A replay of the same step writes the same password and no new rows.
    let again = call(&r, "radius.create_account", run, "create_radius_account", &ctx)
        .await
        .unwrap();
    assert_eq!(again, out);
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.check_value("Cleartext-Password"), Some(password.as_str()));
    assert_eq!(rows.check.len(), 1);
    assert_eq!(rows.reply_value("Framed-IP-Address"), Some("100.64.0.7"));
    assert_eq!(
        rows.reply_value("Delegated-IPv6-Prefix"),
        Some("2001:db8:100::/56")
    );
    // A password in the input is used as given and not echoed.
    let mut given = ctx.clone();
    given["radius_password"] = json!("chosen-pw");
    let out = call(&r, "radius.create_account", run, "create_radius_account", &given)
        .await
        .unwrap();
    assert!(!out.contains_key("radius_password"));
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.check_value("Cleartext-Password"), Some("chosen-pw"));

    let out = call(&r, "radius.suspend", run, "suspend_radius", &ctx).await.unwrap();
    assert_eq!(out["radius_group"], json!("suspended"));
    assert_eq!(
        repo.current_group("sub-1").await.unwrap().as_deref(),
        Some("suspended")
    );
    assert_eq!(
        repo.group_reply("suspended").await.unwrap(),
        config.suspended_reply
    );
    let out = call(&r, "radius.resume", run, "resume_radius", &ctx).await.unwrap();
    assert_eq!(out["radius_group"], json!("gold"));
    assert_eq!(repo.current_group("sub-1").await.unwrap().as_deref(), Some("gold"));
    // A plan given as an object names its group by `name`.
    let mut object_plan = ctx.clone();
    object_plan["plan"] = json!({"name": "platinum", "down_mbps": 1000});
    call(&r, "radius.resume", run, "resume_radius", &object_plan)
        .await
        .unwrap();
    assert_eq!(
        repo.current_group("sub-1").await.unwrap().as_deref(),
        Some("platinum")
    );

    let out = call(&r, "radius.delete_account", run, "delete_radius_account", &ctx)
        .await
        .unwrap();
    assert_eq!(out["radius_account_deleted"], json!(true));
    assert_eq!(repo.account("sub-1").await.unwrap(), None);
    let out = call(&r, "radius.delete_account", run, "delete_radius_account", &ctx)
        .await
        .unwrap();
    assert_eq!(out["radius_account_deleted"], json!(false));
    // Suspending an account that no longer exists is an error, not retried.
    let err = call(&r, "radius.suspend", run, "suspend_radius", &ctx)
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.kind(), "radius_no_account");
}

async fn handlers_refuse_invalid_context(repo: RadiusRepo) {
    let r = registry(repo.clone(), RadiusConfig::default());
    let run = RunId::new();
    for (pointer, value) in [
        ("/subscriber_id", Value::Null),
        ("/plan", Value::Null),
        ("/ipv4_address", json!("not-an-ip")),
        ("/ipv6_prefix", json!("2001:db8::1")),
    ] {
        let mut ctx = context();
        *ctx.pointer_mut(pointer).unwrap() = value;
        let err = call(&r, "radius.create_account", run, "create", &ctx)
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{pointer}: {err}");
        assert_eq!(err.kind(), "invalid_context", "{pointer}: {err}");
        assert!(err.to_string().contains(pointer), "{err}");
    }
    let mut ctx = context();
    ctx["nas"]["coa_port"] = json!(70000);
    let err = call(&r, "radius.coa", run, "coa", &ctx).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_context");
    assert!(err.to_string().contains("/nas/coa_port"));
    // Null IPv6 prefix (IPv6 not asked for) writes no prefix row.
    let mut ctx = context();
    ctx["ipv6_prefix"] = Value::Null;
    call(&r, "radius.create_account", run, "create", &ctx)
        .await
        .unwrap();
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.reply_value("Delegated-IPv6-Prefix"), None);
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn register_uses_the_engine_database_or_the_configured_one(pool: sqlx::PgPool) {
    let names = [
        "radius.create_account",
        "radius.delete_account",
        "radius.suspend",
        "radius.resume",
        "radius.coa",
        "radius.disconnect",
    ];
    // No database at all: nothing registered.
    let mut r = Registry::new();
    sagaflow_steps::register(&mut r, &Deps::default());
    assert!(names.iter().all(|n| !r.contains(n)));
    // An invalid configuration: nothing registered.
    let mut r = Registry::new();
    let deps = Deps {
        postgres: Some(pool.clone()),
        radius: RadiusConfig {
            secret: String::new(),
            ..RadiusConfig::default()
        },
        ..Deps::default()
    };
    sagaflow_steps::register(&mut r, &deps);
    assert!(names.iter().all(|n| !r.contains(n)));
    // The engine's PostgreSQL.
    let mut r = Registry::new();
    sagaflow_steps::register(
        &mut r,
        &Deps {
            postgres: Some(pool.clone()),
            ..Deps::default()
        },
    );
    assert!(names.iter().all(|n| r.contains(n)));

    // A separate database given by URL, without FreeRADIUS's tables yet:
    // the first use creates them there, and nothing lands in the engine's.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("freeradius.db").display());
    let mut r = Registry::new();
    let deps = Deps {
        postgres: Some(pool.clone()),
        radius: RadiusConfig {
            database_url: Some(url.clone()),
            ..RadiusConfig::default()
        },
        ..Deps::default()
    };
    sagaflow_steps::register(&mut r, &deps);
    call(&r, "radius.create_account", RunId::new(), "create", &context())
        .await
        .unwrap();
    let external = RadiusRepo::connect_lazy(&url).unwrap();
    let rows = external.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.reply_value("Framed-IP-Address"), Some("100.64.0.7"));
    let engine_db = RadiusRepo::postgres(pool);
    assert_eq!(engine_db.account("sub-1").await.unwrap(), None);
}

#[test]
fn config_validation_names_the_key() {
    assert!(RadiusConfig::default().validate().is_ok());
    let cases = [
        (
            RadiusConfig {
                secret: String::new(),
                ..RadiusConfig::default()
            },
            "radius.secret",
        ),
        (
            RadiusConfig {
                timeout_ms: 0,
                ..RadiusConfig::default()
            },
            "radius.timeout_ms",
        ),
        (
            RadiusConfig {
                database_url: Some("mysql://x".into()),
                ..RadiusConfig::default()
            },
            "radius.database_url",
        ),
        (
            RadiusConfig {
                suspended_reply: vec![ReplyAttribute::new("", ":=", "x")],
                ..RadiusConfig::default()
            },
            "radius.suspended_reply",
        ),
    ];
    for (config, key) in cases {
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
    // The secret never shows in debug output.
    let debug = format!("{:?}", RadiusConfig::default());
    assert!(!debug.contains("testing123"), "{debug}");
    let parsed: RadiusConfig = serde_json::from_value(json!({
        "secret": "s3cret",
        "suspended_reply": [{"attribute": "Filter-Id", "value": "garden"}],
    }))
    .unwrap();
    assert_eq!(parsed.suspended_reply, [ReplyAttribute::new("Filter-Id", ":=", "garden")]);
    assert_eq!(parsed.timeout_ms, RadiusConfig::default().timeout_ms);
}

// ---------------------------------------------------------------------------
// CoA and Disconnect-Request against NASes played by UDP sockets.

/// What the NAS does with the n-th datagram (from 1).
type Behaviour = Box<dyn Fn(usize, &[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// A NAS on a loopback UDP port that records every datagram and answers
/// as `behaviour` says.
struct Nas {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Nas {
    async fn start(behaviour: Behaviour) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, from) = socket.recv_from(&mut buf).await.unwrap();
                let datagram = buf[..n].to_vec();
                let count = {
                    let mut log = log.lock().unwrap();
                    log.push(datagram.clone());
                    log.len()
                };
                if let Some(answer) = behaviour(count, &datagram) {
                    socket.send_to(&answer, from).await.unwrap();
                }
            }
        });
        Self { addr, seen, task }
    }

    fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Nas {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The NAS's answer to `request`: `code`, an optional Error-Cause, signed
/// with `secret`.
fn answer(request: &[u8], code: Code, cause: Option<u32>, secret: &[u8]) -> Vec<u8> {
    let mut attrs = Vec::new();
    if let Some(c) = cause {
        attrs.extend([101, 6]);
        attrs.extend(c.to_be_bytes());
    }
    let mut p = vec![code as u8, request[1]];
    p.extend(((20 + attrs.len()) as u16).to_be_bytes());
    p.extend([0; 16]);
    p.extend(attrs);
    let auth = response_authenticator(&p, request[4..20].try_into().unwrap(), secret);
    p[4..20].copy_from_slice(&auth);
    p
}

fn coa(kind: DynAuthKind) -> DynAuthRequest {
    DynAuthRequest {
        kind,
        session: Session {
            user_name: "sub-1".into(),
            framed_ip: Some(Ipv4Addr::new(100, 64, 0, 7)),
            acct_session_id: None,
        },
        filter_id: None,
    }
}

const SECRET: &[u8] = b"nas-secret";

fn client(timeout_ms: u64, retries: u32) -> DynAuthClient {
    DynAuthClient::new(SECRET, Duration::from_millis(timeout_ms), retries)
}

#[tokio::test]
async fn a_lost_request_is_retransmitted_unchanged_until_answered() {
    let nas = Nas::start(Box::new(|n, req| {
        (n >= 2).then(|| answer(req, Code::CoAACK, None, SECRET))
    }))
    .await;
    let outcome = client(100, 3)
        .send(nas.addr, &coa(DynAuthKind::Coa), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.attempts, 2);
    let seen = nas.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "a retransmission is the same packet");
    assert!(Packet::is_authentic_request(&seen[0], SECRET));
}

#[tokio::test]
async fn an_answer_with_another_secret_is_reported_at_once_and_not_retried() {
    let nas = Nas::start(Box::new(|_, req| {
        Some(answer(req, Code::DisconnectACK, None, b"the-nas-other-secret"))
    }))
    .await;
    let c = client(200, 5);
    let started = Instant::now();
    let err = c
        .send(nas.addr, &coa(DynAuthKind::Disconnect), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(started.elapsed() < c.max_wait());
    assert!(matches!(err, Error::WrongSecret { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("response authenticator mismatch in the Disconnect response"),
        "{err}"
    );
    assert!(err.to_string().contains("wrong shared secret?"), "{err}");
    let step: sagaflow_engine::handler::StepError = err.into();
    assert!(!step.is_retryable());
    assert_eq!(step.kind(), "radius_wrong_secret");
    assert_eq!(nas.seen().len(), 1, "sent once, never retransmitted");
}

#[tokio::test]
async fn a_silent_nas_gives_up_after_the_bounded_retransmissions() {
    let nas = Nas::start(Box::new(|_, _| None)).await;
    let c = client(50, 2);
    let started = Instant::now();
    let err = c
        .send(nas.addr, &coa(DynAuthKind::Coa), &CancellationToken::new())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        Error::NoResponse { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("expected no response, got {other}"),
    }
    assert!(err.to_string().contains("wrong shared secret?"), "{err}");
    assert!(elapsed >= c.max_wait(), "{elapsed:?}");
    assert!(elapsed < c.max_wait() + Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(nas.seen().len(), 3);
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let err = client(50, 1)
        .send(addr, &coa(DynAuthKind::Coa), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { attempts: 2, .. }), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn cancellation_stops_the_wait() {
    let nas = Nas::start(Box::new(|_, _| None)).await;
    let cancel = CancellationToken::new();
    let c = client(10_000, 3);
    let started = Instant::now();
    let request = coa(DynAuthKind::Coa);
    let send = c.send(nas.addr, &request, &cancel);
    let canceller = async {
        // Cancel once the NAS has the request.
        while nas.seen().is_empty() {
            tokio::task::yield_now().await;
        }
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(send, canceller);
    assert!(matches!(result, Err(Error::Cancelled { .. })));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn coa_handler_identifies_the_session_and_sends_the_current_group(pool: sqlx::PgPool) {
    let repo = RadiusRepo::postgres(pool);
    // ACK (request code + 1) to whatever arrives.
    let nas = Nas::start(Box::new(|_, req| {
        Some(answer(req, Code::from(req[0] + 1), None, SECRET))
    }))
    .await;
    let config = RadiusConfig {
        secret: String::from_utf8(SECRET.to_vec()).unwrap(),
        timeout_ms: 200,
        ..RadiusConfig::default()
    };
    let r = registry(repo, config);
    let mut ctx = context();
    ctx["nas"] = json!({"ip": "127.0.0.1", "coa_port": nas.addr.port()});
    ctx["acct_session_id"] = json!("sess-77");
    let run = RunId::new();
    call(&r, "radius.create_account", run, "create", &ctx).await.unwrap();
    call(&r, "radius.suspend", run, "suspend", &ctx).await.unwrap();
    let out = call(&r, "radius.coa", run, "coa", &ctx).await.unwrap();
    assert_eq!(out["radius_coa"], json!("ack"));

    let seen = nas.seen();
    assert_eq!(seen.len(), 1);
    assert!(Packet::is_authentic_request(&seen[0], SECRET));
    let p = Packet::decode(&seen[0], SECRET).unwrap();
    assert_eq!(p.get_code(), Code::CoARequest);
    assert_eq!(rfc2865::lookup_user_name(&p).unwrap().unwrap(), "sub-1");
    assert_eq!(
        rfc2865::lookup_framed_ip_address(&p).unwrap().unwrap(),
        Ipv4Addr::new(100, 64, 0, 7)
    );
    assert_eq!(rfc2866::lookup_acct_session_id(&p).unwrap().unwrap(), "sess-77");
    assert_eq!(rfc2865::lookup_filter_id(&p).unwrap().unwrap(), "suspended");

    let out = call(&r, "radius.disconnect", run, "disconnect", &ctx).await.unwrap();
    assert_eq!(out["radius_disconnect"], json!("ack"));
    let p = Packet::decode(&nas.seen()[1], SECRET).unwrap();
    assert_eq!(p.get_code(), Code::DisconnectRequest);
    assert!(rfc2865::lookup_filter_id(&p).is_none());
}

#[sqlx::test(migrator = "sagaflow_engine::store::postgres::MIGRATOR")]
async fn naks_fail_the_step_except_for_a_session_that_is_gone(pool: sqlx::PgPool) {
    let repo = RadiusRepo::postgres(pool);
    // The NAS answers a Disconnect-Request with 503 (no such session) and a
    // CoA-Request with 501 (administratively prohibited).
    let nas = Nas::start(Box::new(|_, req| {
        Some(if req[0] == Code::DisconnectRequest as u8 {
            answer(req, Code::DisconnectNAK, Some(503), SECRET)
        } else {
            answer(req, Code::CoANAK, Some(501), SECRET)
        })
    }))
    .await;
    let config = RadiusConfig {
        secret: String::from_utf8(SECRET.to_vec()).unwrap(),
        timeout_ms: 200,
        ..RadiusConfig::default()
    };
    let r = registry(repo, config);
    let mut ctx = context();
    ctx["nas"] = json!({"ip": "127.0.0.1", "coa_port": nas.addr.port()});
    let run = RunId::new();
    let out = call(&r, "radius.disconnect", run, "disconnect", &ctx).await.unwrap();
    assert_eq!(out["radius_disconnect"], json!("no_session"));
    let err = call(&r, "radius.coa", run, "coa", &ctx).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.kind(), "radius_nak");
    assert!(
        err.to_string()
            .contains("CoA-NAK from NAS 127.0.0.1:") && err.to_string().contains("Error-Cause 501 (Administratively-Prohibited)"),
        "{err}"
    );
    assert_eq!(ErrorCause(503), ErrorCause::SESSION_CONTEXT_NOT_FOUND);
}
