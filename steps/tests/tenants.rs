//! Tenant isolation of the subscriber sagas: two tenants provision,
//! suspend, reactivate and deprovision a subscriber of the same id, and run
//! provisionings that fail and are compensated, with the real RADIUS
//! handlers on the engine's database. Every domain row and every RADIUS row
//! of the other tenant is compared before and after each run. On PostgreSQL
//! and SQLite.
#![allow(clippy::unwrap_used)]

mod support;

use sagaflow_engine::state::RunState;
use sagaflow_steps::DomainDb;
use sagaflow_steps::radius::{NasSimulator, RadiusConfig, RadiusRepo};
use serde_json::{Value, json};
use support::{Options, TENANT, World, provision_input};

const OTHER: &str = "t2";
const SUB: &str = "alice";

/// The tables whose rows belong to one tenant (by `tenant_id`).
const TENANT_TABLES: [&str; 9] = [
    "ip_pools",
    "address_records",
    "customers",
    "subscribers",
    "network_profiles",
    "lifecycle_snapshots",
    "address_audit",
    "radius_accounts",
    "radius_nas",
];

/// FreeRADIUS's tables, whose rows belong to a user name.
const RADIUS_TABLES: [&str; 3] = ["radcheck", "radreply", "radusergroup"];

/// Every row of `table` matching `column = value`, as JSON text, sorted.
async fn rows(db: &DomainDb, table: &str, column: &str, value: &str) -> Vec<String> {
    match db {
        DomainDb::Postgres(pool) => {
            let sql =
                format!("SELECT to_jsonb(t)::text FROM {table} t WHERE {column} = $1 ORDER BY 1");
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .fetch_all(pool)
                .await
                .unwrap()
        }
        DomainDb::Sqlite(pool) => {
            let columns: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
            )))
            .fetch_all(pool)
            .await
            .unwrap();
            let sql = format!(
                "SELECT json_array({}) FROM {table} WHERE {column} = $1 ORDER BY 1",
                columns.join(", ")
            );
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(value)
                .fetch_all(pool)
                .await
                .unwrap()
        }
    }
}

/// Everything `tenant` has in the database: its domain rows, and the RADIUS
/// rows of its user name for [`SUB`].
async fn snapshot(w: &World, tenant: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for table in TENANT_TABLES {
        out.push((
            table.to_owned(),
            rows(&w.db, table, "tenant_id", tenant).await,
        ));
    }
    let user = RadiusConfig::default().username(tenant, SUB);
    for table in RADIUS_TABLES {
        out.push((
            format!("{table}/{user}"),
            rows(&w.db, table, "username", &user).await,
        ));
    }
    out
}

fn input(tenant: &str, nas: &NasSimulator) -> Value {
    let mut v = provision_input(SUB, true);
    v["onu_serial"] = json!(format!("ONU-{tenant}-{SUB}"));
    v["cpe_serial"] = json!(format!("CPE-{tenant}-{SUB}"));
    v["customer"]["id"] = json!(format!("cust-{SUB}"));
    v["nas"] = json!({"ip": "127.0.0.1", "coa_port": nas.addr().port()});
    v
}

fn radius(w: &World) -> RadiusRepo {
    match &w.db {
        DomainDb::Postgres(p) => RadiusRepo::postgres(p.clone()),
        DomainDb::Sqlite(p) => RadiusRepo::sqlite(p.clone()),
    }
}

/// Runs `workflow` for `tenant` and checks that `other`'s rows did not
/// change.
async fn run_isolated(
    w: &World,
    tenant: &str,
    other: &str,
    workflow: &str,
    input: Value,
    expect: RunState,
) {
    let before = snapshot(w, other).await;
    let run = w.run_as(tenant, workflow, input).await;
    assert_eq!(run.state, expect, "{tenant} {workflow}: {:?}", run.error);
    let after = snapshot(w, other).await;
    assert_eq!(after, before, "{tenant} {workflow} changed {other}'s rows");
}

async fn two_tenants_with_the_same_subscriber_id(w: World) {
    let nas = NasSimulator::acking(RadiusConfig::default().secret.as_bytes())
        .await
        .unwrap();
    let repo = radius(&w);
    for t in [TENANT, OTHER] {
        repo.register_nas(t, "bras-1", nas.addr().ip(), nas.addr().port(), None)
            .await
            .unwrap();
    }
    let sub = json!({ "subscriber_id": SUB });
    use RunState::{Compensated, Completed};

    // The first tenant's subscriber is live.
    run_isolated(
        &w,
        TENANT,
        OTHER,
        "provision_subscriber",
        input(TENANT, &nas),
        Completed,
    )
    .await;
    // The snapshot covers real rows, not empty tables.
    for (table, rows) in snapshot(&w, TENANT).await {
        let empty_until_maintenance = ["lifecycle_snapshots", "address_audit"];
        if !empty_until_maintenance.contains(&table.as_str()) {
            assert!(!rows.is_empty(), "{table} has no row of {TENANT}");
        }
    }
    let own = repo
        .account(&format!("{SUB}@{TENANT}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own.groups, [("fiber-500".to_owned(), 1)]);

    // The other tenant's provisioning of its own alice fails at its last
    // step and is compensated: the first tenant's alice is untouched.
    w.set_broken("billing.create_service", true);
    run_isolated(
        &w,
        OTHER,
        TENANT,
        "provision_subscriber",
        input(OTHER, &nas),
        Compensated,
    )
    .await;
    w.set_broken("billing.create_service", false);
    assert_eq!(repo.account(&format!("{SUB}@{OTHER}")).await.unwrap(), None);
    assert_eq!(
        repo.account(&format!("{SUB}@{TENANT}"))
            .await
            .unwrap()
            .unwrap(),
        own
    );

    // Both live; each tenant's suspend and reactivate touch only its own.
    run_isolated(
        &w,
        OTHER,
        TENANT,
        "provision_subscriber",
        input(OTHER, &nas),
        Completed,
    )
    .await;
    for (tenant, other) in [(TENANT, OTHER), (OTHER, TENANT)] {
        for workflow in ["suspend_subscriber", "reactivate_subscriber"] {
            run_isolated(&w, tenant, other, workflow, sub.clone(), Completed).await;
        }
    }
    // A second provisioning of a live subscriber fails and is compensated.
    run_isolated(
        &w,
        TENANT,
        OTHER,
        "provision_subscriber",
        input(TENANT, &nas),
        Compensated,
    )
    .await;

    // The other tenant deprovisions its alice; the first one's stays.
    run_isolated(
        &w,
        OTHER,
        TENANT,
        "deprovision_subscriber",
        sub.clone(),
        Completed,
    )
    .await;
    assert_eq!(repo.account(&format!("{SUB}@{OTHER}")).await.unwrap(), None);
    assert_eq!(
        repo.account(&format!("{SUB}@{TENANT}"))
            .await
            .unwrap()
            .unwrap(),
        own
    );
    run_isolated(&w, TENANT, OTHER, "deprovision_subscriber", sub, Completed).await;
    assert_eq!(
        repo.account(&format!("{SUB}@{TENANT}")).await.unwrap(),
        None
    );
    // The CoA and Disconnect-Requests named each tenant's own user.
    let users: std::collections::BTreeSet<_> = nas
        .received()
        .into_iter()
        .filter_map(|r| r.user_name)
        .collect();
    assert_eq!(
        users,
        [format!("{SUB}@{TENANT}"), format!("{SUB}@{OTHER}")]
            .into_iter()
            .collect()
    );
    w.shutdown().await;
}

fn options() -> Options {
    Options {
        other_tenants: vec![OTHER],
        real_radius: true,
        ..Options::default()
    }
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn two_tenants_with_the_same_subscriber_id_postgres(pool: sqlx::PgPool) {
    two_tenants_with_the_same_subscriber_id(World::postgres(pool, options()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_with_the_same_subscriber_id_sqlite() {
    two_tenants_with_the_same_subscriber_id(World::sqlite(options()).await).await;
}
