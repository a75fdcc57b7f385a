//! The RADIUS repository and handlers on PostgreSQL (a fresh database per
//! test) and SQLite, and the CoA / Disconnect client against NASes played by
//! UDP sockets in the test. The same behaviour against a real FreeRADIUS
//! server is in `freeradius.rs`.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod radius_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use radius::core::packet::Packet;
use radius_support::*;
use sagaflow_engine::handler::{Registry, StepError};
use sagaflow_engine::ids::RunId;
use sagaflow_steps::Deps;
use sagaflow_steps::radius::{
    Account, DeleteScope, DynAuthClient, DynAuthKind, Error, ErrorCause, NasBehaviour, NasReply,
    NasSimulator, Owner, RadiusConfig, RadiusRepo, ReplyAttribute,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Runs `$scenario(repo)` on PostgreSQL and on SQLite.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
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

/// The owner of the accounts the repository tests write.
const OWNER: Owner<'static> = Owner {
    tenant_id: "t1",
    subscriber_id: "sub-1",
    created_by: "run-1:create_radius_account",
};

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
    let a = account(
        "sub-1",
        Some("100.64.0.7"),
        Some("2001:db8:100::/56"),
        "gold",
    );
    repo.upsert_account(&a, &OWNER).await.unwrap();
    repo.upsert_account(&a, &OWNER).await.unwrap();
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
    repo.upsert_account(&b, &OWNER).await.unwrap();
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.check_value("Cleartext-Password"), Some("pw-2"));
    assert_eq!(rows.reply_value("Framed-IP-Address"), Some("100.64.0.8"));
    assert_eq!(rows.reply_value("Delegated-IPv6-Prefix"), None);
    assert_eq!(rows.reply.len(), 1);
    assert_eq!(rows.groups, [("silver".to_owned(), 1)]);
    assert_eq!(
        repo.current_group("sub-1").await.unwrap().as_deref(),
        Some("silver")
    );
    assert_eq!(repo.account("nobody").await.unwrap(), None);
}

/// An operator's own `radreply` row for the subscriber, written before the
/// account by the caller, survives the account's writes.
async fn upsert_keeps_rows_it_does_not_own(repo: RadiusRepo) {
    for ip in ["100.64.0.7", "100.64.0.9"] {
        repo.upsert_account(&account("sub-1", Some(ip), None, "gold"), &OWNER)
            .await
            .unwrap();
    }
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.reply_value("Session-Timeout"), Some("3600"));
    assert_eq!(rows.reply_value("Framed-IP-Address"), Some("100.64.0.9"));
    assert_eq!(rows.reply.len(), 2);
    // Deleting the account removes it with the rest.
    repo.delete_account("sub-1", DeleteScope::Tenant("t1"))
        .await
        .unwrap();
    assert_eq!(repo.account("sub-1").await.unwrap(), None);
}

const OPERATOR_ROW: &str = "INSERT INTO radreply (username, attribute, op, value) \
     VALUES ('sub-1', 'Session-Timeout', ':=', '3600')";

mod upsert_keeps_rows_it_does_not_own {
    use super::*;

    #[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
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
    repo.upsert_account(&account("sub-1", None, None, "gold"), &OWNER)
        .await
        .unwrap();
    repo.set_group("t1", "sub-1", "suspended").await.unwrap();
    repo.set_group("t1", "sub-1", "suspended").await.unwrap();
    let rows = repo.account("sub-1").await.unwrap().unwrap();
    assert_eq!(rows.groups, [("suspended".to_owned(), 1)]);
    repo.set_group("t1", "sub-1", "gold").await.unwrap();
    assert_eq!(
        repo.current_group("sub-1").await.unwrap().as_deref(),
        Some("gold")
    );

    let err = repo
        .set_group("t1", "ghost", "suspended")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NoAccount(ref u) if u == "ghost"),
        "{err}"
    );
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
    repo.upsert_account(
        &account("sub-1", Some("100.64.0.7"), Some("2001:db8::/56"), "gold"),
        &OWNER,
    )
    .await
    .unwrap();
    repo.upsert_account(&account("sub-2", Some("100.64.0.8"), None, "gold"), &OWNER)
        .await
        .unwrap();
    assert!(
        repo.delete_account("sub-1", DeleteScope::Tenant("t1"))
            .await
            .unwrap()
    );
    assert_eq!(repo.account("sub-1").await.unwrap(), None);
    assert!(
        !repo
            .delete_account("sub-1", DeleteScope::Tenant("t1"))
            .await
            .unwrap()
    );
    // Other subscribers are untouched.
    assert!(repo.account("sub-2").await.unwrap().is_some());
}

async fn concurrent_replays_leave_one_row_of_each(repo: RadiusRepo) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let repo = repo.clone();
            tokio::spawn(async move {
                let a = account("sub-1", Some(&format!("100.64.0.{}", i % 2)), None, "gold");
                repo.upsert_account(&a, &OWNER).await.unwrap();
                if i % 4 == 0 {
                    repo.set_group("t1", "sub-1", "suspended").await.unwrap();
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

    let out = call(&r, "radius.create_account", run, "create", &ctx)
        .await
        .unwrap();
    let password = out["radius_password"].as_str().unwrap().to_owned();
    assert_eq!(out["radius_username"], json!("sub-1@t1"));
    assert_eq!(out["radius_group"], json!("gold"));
    // A replay of the same step writes the same password and no new rows.
    let again = call(&r, "radius.create_account", run, "create", &ctx)
        .await
        .unwrap();
    assert_eq!(again, out);
    let rows = repo.account("sub-1@t1").await.unwrap().unwrap();
    assert_eq!(
        rows.check_value("Cleartext-Password"),
        Some(password.as_str())
    );
    assert_eq!(rows.check.len(), 1);
    assert_eq!(rows.reply_value("Framed-IP-Address"), Some("100.64.0.7"));
    assert_eq!(
        rows.reply_value("Delegated-IPv6-Prefix"),
        Some("2001:db8:100::/56")
    );
    // A password in the input is used as given and not echoed.
    let mut given = ctx.clone();
    given["radius_password"] = json!("chosen-pw");
    let out = call(&r, "radius.create_account", run, "create", &given)
        .await
        .unwrap();
    assert!(!out.contains_key("radius_password"));
    let rows = repo.account("sub-1@t1").await.unwrap().unwrap();
    assert_eq!(rows.check_value("Cleartext-Password"), Some("chosen-pw"));

    let out = call(&r, "radius.suspend", run, "suspend_radius", &ctx)
        .await
        .unwrap();
    assert_eq!(out["radius_group"], json!("suspended"));
    assert_eq!(
        repo.current_group("sub-1@t1").await.unwrap().as_deref(),
        Some("suspended")
    );
    assert_eq!(
        repo.group_reply("suspended").await.unwrap(),
        config.suspended_reply
    );
    let out = call(&r, "radius.resume", run, "resume_radius", &ctx)
        .await
        .unwrap();
    assert_eq!(out["radius_group"], json!("gold"));
    assert_eq!(
        repo.current_group("sub-1@t1").await.unwrap().as_deref(),
        Some("gold")
    );
    // A plan given as an object names its group by `name`.
    let mut object_plan = ctx.clone();
    object_plan["plan"] = json!({"name": "platinum", "down_mbps": 1000});
    call(&r, "radius.resume", run, "resume_radius", &object_plan)
        .await
        .unwrap();
    assert_eq!(
        repo.current_group("sub-1@t1").await.unwrap().as_deref(),
        Some("platinum")
    );

    // Deleting twice: the second finds nothing, and succeeds.
    for existed in [true, false] {
        let out = call(&r, "radius.delete_account", run, "delete", &ctx)
            .await
            .unwrap();
        assert_eq!(out["radius_account_deleted"], json!(existed));
        assert_eq!(repo.account("sub-1@t1").await.unwrap(), None);
    }
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
    let rows = repo.account("sub-1@t1").await.unwrap().unwrap();
    assert_eq!(rows.reply_value("Delegated-IPv6-Prefix"), None);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
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
    call(
        &r,
        "radius.create_account",
        RunId::new(),
        "create",
        &context(),
    )
    .await
    .unwrap();
    let external = RadiusRepo::connect_lazy(&url).unwrap();
    let rows = external.account("sub-1@t1").await.unwrap().unwrap();
    assert_eq!(rows.reply_value("Framed-IP-Address"), Some("100.64.0.7"));
    let engine_db = RadiusRepo::postgres(pool);
    assert_eq!(engine_db.account("sub-1@t1").await.unwrap(), None);
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
    assert_eq!(
        parsed.suspended_reply,
        [ReplyAttribute::new("Filter-Id", ":=", "garden")]
    );
    assert_eq!(parsed.timeout_ms, RadiusConfig::default().timeout_ms);
}

// ---------------------------------------------------------------------------
// CoA and Disconnect-Request against the NAS simulator (a real UDP server).

const SECRET: &str = "nas-secret";

fn client(timeout_ms: u64, retries: u32) -> DynAuthClient {
    DynAuthClient::new(
        SECRET.as_bytes(),
        Duration::from_millis(timeout_ms),
        retries,
    )
}

async fn nas(behaviour: NasBehaviour) -> NasSimulator {
    NasSimulator::start(SECRET.as_bytes(), behaviour)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lost_request_is_retransmitted_unchanged_until_answered() {
    let nas = nas(Box::new(|n, _| {
        if n >= 2 {
            NasReply::Ack
        } else {
            NasReply::Silent
        }
    }))
    .await;
    let outcome = send(&client(100, 3), nas.addr(), DynAuthKind::Coa)
        .await
        .0
        .unwrap();
    assert_eq!(outcome.attempts, 2);
    let seen = nas.received();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].raw, seen[1].raw,
        "a retransmission is the same packet"
    );
    assert!(seen[0].authentic);
    assert_eq!(seen[0].kind, Some(DynAuthKind::Coa));
}

#[tokio::test]
async fn an_answer_with_another_secret_is_reported_at_once_and_not_retried() {
    let nas = nas(Box::new(|_, _| {
        NasReply::AckSignedWith(b"the-nas-other-secret".to_vec())
    }))
    .await;
    let c = client(200, 5);
    let (result, elapsed) = send(&c, nas.addr(), DynAuthKind::Disconnect).await;
    let err = result.unwrap_err();
    assert!(elapsed < c.max_wait());
    assert!(matches!(err, Error::WrongSecret { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("response authenticator mismatch in the Disconnect response"),
        "{err}"
    );
    assert!(err.to_string().contains("wrong shared secret?"), "{err}");
    let step: StepError = err.into();
    assert!(!step.is_retryable());
    assert_eq!(step.kind(), "radius_wrong_secret");
    assert_eq!(nas.received().len(), 1, "sent once, never retransmitted");
}

#[tokio::test]
async fn a_silent_nas_gives_up_after_the_bounded_retransmissions() {
    let nas = nas(Box::new(|_, _| NasReply::Silent)).await;
    let c = client(50, 2);
    let (result, elapsed) = send(&c, nas.addr(), DynAuthKind::Coa).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, Error::NoResponse { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("wrong shared secret?"), "{err}");
    assert!(elapsed >= c.max_wait(), "{elapsed:?}");
    assert!(
        elapsed < c.max_wait() + Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(nas.received().len(), 3);
}

/// A NAS with another secret drops the request silently, as RFC 5176 says
/// (and as FreeRADIUS does): the client reports the likely wrong secret.
#[tokio::test]
async fn a_request_with_another_secret_is_dropped_by_the_nas() {
    let nas = NasSimulator::acking(b"the-nas-secret").await.unwrap();
    let err = send(&client(50, 1), nas.addr(), DynAuthKind::Coa)
        .await
        .0
        .unwrap_err();
    assert!(
        matches!(err, Error::NoResponse { attempts: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("wrong shared secret?"), "{err}");
    let seen = nas.received();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| !r.authentic));
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let err = send(&client(50, 1), addr, DynAuthKind::Coa)
        .await
        .0
        .unwrap_err();
    assert!(
        matches!(err, Error::Unreachable { attempts: 2, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn cancellation_stops_the_wait() {
    let nas = nas(Box::new(|_, _| NasReply::Silent)).await;
    let cancel = CancellationToken::new();
    let c = client(10_000, 3);
    let started = Instant::now();
    let request = dynauth_request(DynAuthKind::Coa);
    let send = c.send(nas.addr(), &request, &cancel);
    let canceller = async {
        // Cancel once the NAS has the request.
        while nas.received().is_empty() {
            tokio::task::yield_now().await;
        }
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(send, canceller);
    assert!(matches!(result, Err(Error::Cancelled { .. })));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Registers `addr` as tenant `t1`'s NAS `bras-1`.
async fn register_nas(repo: &RadiusRepo, addr: SocketAddr) {
    repo.register_nas("t1", "bras-1", addr.ip(), addr.port(), None)
        .await
        .unwrap();
}

fn nas_config() -> RadiusConfig {
    RadiusConfig {
        secret: SECRET.into(),
        timeout_ms: 200,
        ..RadiusConfig::default()
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn coa_handler_identifies_the_session_and_sends_the_current_group(pool: sqlx::PgPool) {
    let nas = NasSimulator::acking(SECRET.as_bytes()).await.unwrap();
    let repo = RadiusRepo::postgres(pool);
    register_nas(&repo, nas.addr()).await;
    let r = registry(repo, nas_config());
    let mut ctx = context();
    ctx["nas"] = json!({"ip": "127.0.0.1", "coa_port": nas.addr().port()});
    ctx["acct_session_id"] = json!("sess-77");
    let run = RunId::new();
    create_and_suspend(&r, run, &ctx).await;
    let out = call(&r, "radius.coa", run, "coa", &ctx).await.unwrap();
    assert_eq!(out["radius_coa"], json!("ack"));
    let out = call(&r, "radius.disconnect", run, "disconnect", &ctx)
        .await
        .unwrap();
    assert_eq!(out["radius_disconnect"], json!("ack"));

    let seen = nas.received();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.authentic));
    assert!(Packet::is_authentic_request(
        &seen[0].raw,
        SECRET.as_bytes()
    ));
    let coa = &seen[0];
    assert_eq!(coa.kind, Some(DynAuthKind::Coa));
    assert_eq!(coa.user_name.as_deref(), Some("sub-1@t1"));
    assert_eq!(coa.framed_ip, Some(Ipv4Addr::new(100, 64, 0, 7)));
    assert_eq!(coa.acct_session_id.as_deref(), Some("sess-77"));
    assert_eq!(coa.filter_id.as_deref(), Some("suspended"));
    let disconnect = &seen[1];
    assert_eq!(disconnect.kind, Some(DynAuthKind::Disconnect));
    assert_eq!(disconnect.user_name.as_deref(), Some("sub-1@t1"));
    assert_eq!(disconnect.filter_id, None);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn naks_fail_the_step_except_for_a_session_that_is_gone(pool: sqlx::PgPool) {
    // A Disconnect-Request gets 503 (no such session), a CoA-Request 501
    // (administratively prohibited).
    let nas = nas(Box::new(|_, req| match req.kind {
        Some(DynAuthKind::Disconnect) => NasReply::Nak(Some(ErrorCause::SESSION_CONTEXT_NOT_FOUND)),
        _ => NasReply::Nak(Some(ErrorCause::ADMINISTRATIVELY_PROHIBITED)),
    }))
    .await;
    let repo = RadiusRepo::postgres(pool);
    register_nas(&repo, nas.addr()).await;
    let r = registry(repo, nas_config());
    let mut ctx = context();
    ctx["nas"] = json!({"ip": "127.0.0.1", "coa_port": nas.addr().port()});
    let run = RunId::new();
    let out = call(&r, "radius.disconnect", run, "disconnect", &ctx)
        .await
        .unwrap();
    assert_eq!(out["radius_disconnect"], json!("no_session"));
    let err = call(&r, "radius.coa", run, "coa", &ctx).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.kind(), "radius_nak");
    let text = err.to_string();
    assert!(text.contains("CoA-NAK from NAS 127.0.0.1:"), "{text}");
    assert!(
        text.contains("Error-Cause 501 (Administratively-Prohibited)"),
        "{text}"
    );
}
