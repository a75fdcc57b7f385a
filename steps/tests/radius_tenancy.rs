//! Whose RADIUS account is whose: each tenant's user names live in their
//! own namespace (`radius.username_format`), the `radius_accounts` table
//! records which tenant and which step created each account, and the undo
//! of a creation removes only the account its own forward step created.
//! CoA and Disconnect-Request go only to a NAS registered for the run's
//! tenant. On PostgreSQL and SQLite.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod radius_support;

use std::collections::BTreeMap;

use radius_support::*;
use sagaflow_engine::handler::CallKind;
use sagaflow_engine::ids::RunId;
use sagaflow_steps::radius::{
    Account, DeleteScope, Error, NasSimulator, Owner, RadiusConfig, RadiusRepo,
};
use serde_json::{Value, json};

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
    the_repository_refuses_foreign_and_unowned_accounts,
    a_compensation_removes_only_its_own_forward_account,
    colliding_formats_are_refused_not_shared,
    dynamic_authorization_goes_only_to_the_tenants_registered_nas,
);

const ACME_A: Owner<'static> = Owner {
    tenant_id: "acme",
    subscriber_id: "alice",
    created_by: "run-a:create_radius_account",
};

fn account(user: &str) -> Account {
    Account {
        username: user.into(),
        password: "pw".into(),
        framed_ip: Some("100.64.0.7".parse().unwrap()),
        delegated_prefix: None,
        group: "gold".into(),
    }
}

async fn the_repository_refuses_foreign_and_unowned_accounts(repo: RadiusRepo) {
    let user = "alice";
    repo.upsert_account(&account(user), &ACME_A).await.unwrap();
    let before = repo.account(user).await.unwrap().unwrap();
    let globex = Owner {
        tenant_id: "globex",
        created_by: "run-g:create_radius_account",
        ..ACME_A
    };
    let mut other = account(user);
    other.password = "globex-pw".into();
    let err = repo.upsert_account(&other, &globex).await.unwrap_err();
    assert!(matches!(err, Error::ForeignAccount(_)), "{err}");
    // Another run of the same tenant did not create it either.
    let acme_b = Owner {
        created_by: "run-b:create_radius_account",
        ..ACME_A
    };
    let err = repo.upsert_account(&other, &acme_b).await.unwrap_err();
    assert!(
        matches!(err, Error::AccountExists { created_by: Some(ref k), .. } if k == ACME_A.created_by),
        "{err}"
    );
    let err = repo
        .set_group("globex", user, "suspended")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ForeignAccount(_)), "{err}");
    let err = repo
        .delete_account(user, DeleteScope::Tenant("globex"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ForeignAccount(_)), "{err}");
    assert_eq!(repo.account(user).await.unwrap().unwrap(), before);
    // The owning step's replay is allowed.
    repo.upsert_account(&account(user), &ACME_A).await.unwrap();
    assert_eq!(repo.account(user).await.unwrap().unwrap(), before);
}

/// An account sagaflow did not create (no ownership record: an operator's,
/// or an older release's) is neither taken over nor, by an undo, removed.
async fn unowned_accounts_are_left_alone(repo: RadiusRepo) {
    let before = repo.account("legacy").await.unwrap().unwrap();
    let err = repo
        .upsert_account(&account("legacy"), &ACME_A)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::AccountExists {
                created_by: None,
                ..
            }
        ),
        "{err}"
    );
    let scope = DeleteScope::CreatedBy {
        tenant_id: "acme",
        created_by: ACME_A.created_by,
    };
    assert!(!repo.delete_account("legacy", scope).await.unwrap());
    assert_eq!(repo.account("legacy").await.unwrap().unwrap(), before);
}

const LEGACY_ROW: &str = "INSERT INTO radcheck (username, attribute, op, value) \
     VALUES ('legacy', 'Cleartext-Password', ':=', 'old')";

mod unowned_accounts_are_left_alone {
    use super::*;

    #[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
    async fn postgres(pool: sqlx::PgPool) {
        sqlx::query(LEGACY_ROW).execute(&pool).await.unwrap();
        unowned_accounts_are_left_alone(RadiusRepo::postgres(pool)).await;
    }

    #[tokio::test]
    async fn sqlite() {
        let (pool, _dir) = sqlite_pool().await;
        sqlx::query(LEGACY_ROW).execute(&pool).await.unwrap();
        unowned_accounts_are_left_alone(RadiusRepo::sqlite(pool)).await;
    }
}

async fn a_compensation_removes_only_its_own_forward_account(repo: RadiusRepo) {
    let r = registry(repo.clone(), RadiusConfig::default());
    let ctx = json!({"subscriber_id": "alice", "plan": "gold", "ipv4_address": "100.64.0.7"});
    let acme = RunId::new();
    let out = call_as(
        &r,
        "radius.create_account",
        "acme",
        (acme, "create_radius_account", CallKind::Forward),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(out["radius_username"], json!("alice@acme"));
    assert_eq!(out["radius"]["username"], json!("alice@acme"));
    let acme_rows = repo.account("alice@acme").await.unwrap().unwrap();

    // globex's provisioning of its own alice fails later; its compensation
    // removes alice@globex and nothing of acme's.
    let globex = RunId::new();
    let step = (globex, "create_radius_account", CallKind::Forward);
    call_as(&r, "radius.create_account", "globex", step, &ctx)
        .await
        .unwrap();
    assert!(repo.account("alice@globex").await.unwrap().is_some());
    let undo = (globex, "create_radius_account", CallKind::Compensate);
    let out = call_as(&r, "radius.delete_account", "globex", undo, &ctx)
        .await
        .unwrap();
    assert_eq!(out["radius_account_deleted"], json!(true));
    assert_eq!(repo.account("alice@globex").await.unwrap(), None);
    assert_eq!(
        repo.account("alice@acme").await.unwrap().unwrap(),
        acme_rows
    );

    // The forward outcome of another acme run is unknown (it timed out
    // before or after its commit): its undo finds acme's account created by
    // another run, and leaves it alone.
    let other = RunId::new();
    for (tenant, run) in [("acme", other), ("globex", acme)] {
        let undo = (run, "create_radius_account", CallKind::Compensate);
        let out = call_as(&r, "radius.delete_account", tenant, undo, &ctx)
            .await
            .unwrap();
        assert_eq!(out["radius_account_deleted"], json!(false), "{tenant}");
    }
    // A forward create of another acme run for the same subscriber is
    // refused, not merged into acme's account.
    let step = (other, "create_radius_account", CallKind::Forward);
    let err = call_as(&r, "radius.create_account", "acme", step, &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "radius_account_exists");
    assert!(!err.is_retryable());
    assert_eq!(
        repo.account("alice@acme").await.unwrap().unwrap(),
        acme_rows
    );

    // The undo of acme's own step removes it.
    let undo = (acme, "create_radius_account", CallKind::Compensate);
    let out = call_as(&r, "radius.delete_account", "acme", undo, &ctx)
        .await
        .unwrap();
    assert_eq!(out["radius_account_deleted"], json!(true));
    assert_eq!(repo.account("alice@acme").await.unwrap(), None);
    assert_eq!(repo.owner("alice@acme").await.unwrap(), None);
}

/// Two tenants configured into the same namespace: the second tenant's
/// create is refused and its undo leaves the first tenant's account alone.
async fn colliding_formats_are_refused_not_shared(repo: RadiusRepo) {
    let config = RadiusConfig {
        tenant_username_formats: BTreeMap::from([
            ("acme".to_owned(), "{subscriber_id}".to_owned()),
            ("globex".to_owned(), "{subscriber_id}".to_owned()),
        ]),
        ..RadiusConfig::default()
    };
    let r = registry(repo.clone(), config);
    let ctx = json!({"subscriber_id": "alice", "plan": "gold"});
    let acme = RunId::new();
    call_as(
        &r,
        "radius.create_account",
        "acme",
        (acme, "create_radius_account", CallKind::Forward),
        &ctx,
    )
    .await
    .unwrap();
    let rows = repo.account("alice").await.unwrap().unwrap();
    let globex = RunId::new();
    let err = call_as(
        &r,
        "radius.create_account",
        "globex",
        (globex, "create_radius_account", CallKind::Forward),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "radius_foreign_account");
    for (name, kind) in [
        ("radius.delete_account", CallKind::Compensate),
        ("radius.suspend", CallKind::Forward),
        ("radius.delete_account", CallKind::Forward),
    ] {
        let step = (globex, "create_radius_account", kind);
        let result = call_as(&r, name, "globex", step, &ctx).await;
        if kind == CallKind::Forward {
            assert_eq!(result.unwrap_err().kind(), "radius_foreign_account");
        } else {
            assert_eq!(result.unwrap()["radius_account_deleted"], json!(false));
        }
    }
    assert_eq!(repo.account("alice").await.unwrap().unwrap(), rows);
    assert_eq!(
        repo.owner("alice").await.unwrap().unwrap().tenant_id,
        "acme"
    );
}

#[test]
fn user_names_follow_the_tenant_format_and_formats_are_checked() {
    let mut config = RadiusConfig::default();
    assert_eq!(config.username("acme", "alice"), "alice@acme");
    config
        .tenant_username_formats
        .insert("globex".into(), "gx-{subscriber_id}".into());
    assert_eq!(config.username("globex", "alice"), "gx-alice");
    assert_eq!(config.username("acme", "alice"), "alice@acme");
    assert!(config.validate().is_ok());
    for (format, tenant_override) in [
        ("{tenant}", false),
        ("{subscriber_id}@{realm}", false),
        ("alice", true),
    ] {
        let mut c = RadiusConfig::default();
        let key = if tenant_override {
            c.tenant_username_formats
                .insert("acme".into(), format.into());
            "radius.tenant_username_formats.acme"
        } else {
            c.username_format = format.into();
            "radius.username_format"
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(key), "{format}: {err}");
    }
    let parsed: RadiusConfig = serde_json::from_value(json!({
        "username_format": "{subscriber_id}.{tenant}",
        "tenant_username_formats": {"acme": "{subscriber_id}@acme.example"},
    }))
    .unwrap();
    assert_eq!(parsed.username("acme", "a"), "a@acme.example");
    assert_eq!(parsed.username("b2", "a"), "a.b2");
}

async fn dynamic_authorization_goes_only_to_the_tenants_registered_nas(repo: RadiusRepo) {
    let config = RadiusConfig {
        timeout_ms: 200,
        retries: 0,
        ..RadiusConfig::default()
    };
    let secret = config.secret.clone();
    let registered = NasSimulator::acking(secret.as_bytes()).await.unwrap();
    let stranger = NasSimulator::acking(secret.as_bytes()).await.unwrap();
    repo.register_nas(
        "acme",
        "bras-1",
        registered.addr().ip(),
        registered.addr().port(),
        None,
    )
    .await
    .unwrap();
    let r = registry(repo.clone(), config);
    let ctx = |nas: Value| json!({"subscriber_id": "alice", "plan": "gold", "nas": nas});
    let step = |kind| (RunId::new(), "send_coa", kind);
    let addr = |n: &NasSimulator| n.addr().ip().to_string();

    // An address only the input names, a name not registered, or another
    // tenant's NAS, is refused for good and nothing is sent.
    for (tenant, nas) in [
        (
            "acme",
            json!({"ip": "192.0.2.55", "coa_port": stranger.addr().port()}),
        ),
        ("acme", json!({"name": "bras-9"})),
        (
            "globex",
            json!({"ip": addr(&registered), "coa_port": registered.addr().port()}),
        ),
        ("globex", json!({"name": "bras-1"})),
    ] {
        for handler in ["radius.coa", "radius.disconnect"] {
            let err = call_as(
                &r,
                handler,
                tenant,
                step(CallKind::Forward),
                &ctx(nas.clone()),
            )
            .await
            .unwrap_err();
            assert_eq!(err.kind(), "radius_unknown_nas", "{tenant} {nas}: {err}");
            assert!(!err.is_retryable());
            assert!(err.to_string().contains("radius_nas"), "{err}");
        }
    }
    assert!(stranger.received().is_empty());
    assert!(registered.received().is_empty());

    // The registered NAS, by address or by name: the request goes to the
    // registered port, whatever port the input says.
    for nas in [
        json!({"ip": addr(&registered), "coa_port": stranger.addr().port()}),
        json!({"name": "bras-1", "ip": addr(&stranger)}),
    ] {
        let out = call_as(
            &r,
            "radius.disconnect",
            "acme",
            step(CallKind::Forward),
            &ctx(nas),
        )
        .await
        .unwrap();
        assert_eq!(out["radius_disconnect"], json!("ack"));
    }
    assert_eq!(registered.received().len(), 2);
    assert!(stranger.received().is_empty());
    assert!(
        registered
            .received()
            .iter()
            .all(|p| p.user_name.as_deref() == Some("alice@acme"))
    );
}
