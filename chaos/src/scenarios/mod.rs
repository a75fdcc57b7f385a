//! The scenarios. Each builds its world (a fresh database, engines,
//! simulators), does its damage, waits for the runs to settle, runs the
//! invariant checker and returns its [`Report`](crate::Report).

pub mod faults;
pub mod kill;
pub mod pause;
pub mod pg_restart;
pub mod poison;
pub mod races;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sagaflow_steps::DomainConfig;
use sagaflow_steps::ipam::PoolConfig;
use sagaflow_steps::sim::{GrpcInform, SimHandle, SimSnapshot};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::check::{self, Effect, Findings};
use crate::client::Codes;
use crate::db::{self, ScratchDb};
use crate::process::TENANT;
use crate::{ChaosError, Options, Report, Result};

/// A scenario's database, directories and status-code tally.
#[derive(Debug)]
pub struct Stage {
    pub dir: PathBuf,
    pub db: ScratchDb,
    pub pool: PgPool,
    pub codes: Codes,
}

impl Stage {
    /// A fresh database and directory for `scenario`, with the workflow
    /// files `workflows` (name, text) in its workflows directory.
    pub async fn new(opts: &Options, scenario: &str, workflows: &[(&str, String)]) -> Result<Self> {
        let dir = opts.work_dir.join(scenario);
        crate::workflows::write(&dir.join("workflows"), workflows)?;
        let db = ScratchDb::create(&opts.database_url, scenario).await?;
        let pool = db::connect(&db.url).await?;
        Ok(Self {
            dir,
            db,
            pool,
            codes: Codes::default(),
        })
    }

    pub fn workflows(&self) -> PathBuf {
        self.dir.join("workflows")
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Runs the checker, sets the standard bars, counts panics, and drops
    /// the database.
    pub async fn finish(self, report: &mut Report, effects: &[Effect]) -> Result<Findings> {
        let findings = check::check(&self.pool, TENANT, effects).await?;
        finish_report(report, &findings, &self.dir, &self.codes);
        self.pool.close().await;
        self.db.drop_db().await?;
        Ok(findings)
    }
}

/// The bars and figures every scenario reports.
pub fn finish_report(report: &mut Report, findings: &Findings, dir: &Path, codes: &Codes) {
    report.standard_bars(findings);
    report.add_codes(&codes.snapshot());
    let (panics, planned) = crate::process::panics_in_logs(dir, "poison step");
    report.panics = panics;
    if planned > 0 {
        report.fact("poison-step panics caught (planned)", planned);
    }
    report.engine_bars();
}

/// The input of a provisioning run for subscriber `i`.
pub fn subscriber(tag: &str, i: usize) -> (String, Value) {
    let sub = format!("{tag}-sub-{i:05}");
    let input = json!({
        "subscriber_id": sub,
        "customer": {"id": format!("{tag}-cust-{i:05}"), "name": "Chaos Customer", "email": "chaos@example.net"},
        "plan": "fiber-100",
        "nas": {"ip": "192.0.2.1"},
        "onu_serial": format!("{tag}-ONU-{i:05}"),
        "cpe_serial": format!("{tag}-CPE-{i:05}"),
        "ipv4_pool": "chaos-v4",
    });
    (sub, input)
}

/// The domain configuration of an engine whose ONU, CPE and billing are
/// the harness's simulators (which outlive the engines), with requests
/// timing out after `timeout_ms`.
pub fn domain(sims: &SimHandle, timeout_ms: u64) -> Result<DomainConfig> {
    let (mut onu, mut cpe, mut billing) = sims.endpoints();
    for e in [&mut onu, &mut cpe, &mut billing] {
        e.timeout_ms = timeout_ms;
    }
    let cidr = "100.64.0.0/16"
        .parse()
        .map_err(|e| ChaosError::Setup(format!("pool range: {e}")))?;
    Ok(DomainConfig {
        pools: vec![PoolConfig::new(TENANT, "chaos-v4", cidr)],
        onu: Some(onu),
        cpe: Some(cpe),
        billing: Some(billing),
        onu_online_poll_ms: 200,
        ..DomainConfig::default()
    })
}

/// Makes the ACS simulator signal CPE informs to the engine at `grpc`, as
/// the harness's crm; the hook follows a restarted engine (`set_url`).
pub fn informs_to(sims: &SimHandle, grpc: &str) -> Result<Arc<GrpcInform>> {
    let tokens = BTreeMap::from([(TENANT.to_owned(), "chaos-crm".to_owned())]);
    let hook = Arc::new(GrpcInform::new(grpc, tokens).map_err(ChaosError::Setup)?);
    sims.set_inform_hook(hook.clone());
    Ok(hook)
}

/// Gives subscriber `sub` a billing service before its run starts, so that
/// the run's last step meets a conflict and the run compensates.
pub async fn preexisting_service(sims: &SimHandle, sub: &str) -> Result<()> {
    let body =
        json!({"subscriber_id": sub, "customer_id": "preexisting", "plan": "legacy"}).to_string();
    let request = format!(
        "POST /billing/tenants/{TENANT}/services HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        sims.addr(),
        body.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sims.addr())
        .await
        .map_err(ChaosError::io("billing simulator"))?;
    s.write_all(request.as_bytes())
        .await
        .map_err(ChaosError::io("billing simulator"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(ChaosError::io("billing simulator"))?;
    let text = String::from_utf8_lossy(&buf);
    if text.starts_with("HTTP/1.0 201") || text.starts_with("HTTP/1.1 201") {
        Ok(())
    } else {
        Err(ChaosError::Setup(format!(
            "pre-creating a billing service: {}",
            text.lines().next().unwrap_or_default()
        )))
    }
}

/// Checks the simulated systems against how the provisioning runs ended:
/// a completed run left an active ONU, a configured CPE and its billing
/// service; a compensated one left none of its own. Returns the mismatches.
pub fn provisioning_state(
    snap: &SimSnapshot,
    ended: &HashMap<String, String>,
    tag: &str,
    n: usize,
) -> Vec<String> {
    let mut bad = Vec::new();
    let records = snap.tenant(TENANT);
    for i in 0..n {
        let (sub, input) = subscriber(tag, i);
        let Some(state) = ended.get(&sub) else {
            bad.push(format!("{sub}: no run"));
            continue;
        };
        let onu = input["onu_serial"].as_str().unwrap_or_default();
        let cpe = input["cpe_serial"].as_str().unwrap_or_default();
        let has_onu = records
            .onus
            .get(onu)
            .is_some_and(|o| o.activation.subscriber_id == sub);
        let has_cpe = records.cpes.contains_key(cpe);
        let own_service = records
            .services
            .get(&sub)
            .is_some_and(|s| s.customer_id != "preexisting");
        let expect = match state.as_str() {
            "COMPLETED" => true,
            "COMPENSATED" | "CANCELLED" => false,
            _ => {
                bad.push(format!("{sub}: run ended {state}"));
                continue;
            }
        };
        if (has_onu, has_cpe, own_service) != (expect, expect, expect) {
            bad.push(format!(
                "{sub} ({state}): ONU {has_onu}, CPE {has_cpe}, billing {own_service}"
            ));
        }
    }
    bad
}

/// Sets the bar "the simulated systems match every run's end"; returns
/// how each subscriber's run ended.
pub async fn provisioning_bar(
    report: &mut Report,
    pool: &PgPool,
    snap: &SimSnapshot,
    tag: &str,
    n: usize,
) -> Result<HashMap<String, String>> {
    let ended = provisioning_ends(pool).await?;
    let mismatches = provisioning_state(snap, &ended, tag, n);
    report.bar_list(
        "ONU, CPE and billing state match every run's end",
        &mismatches,
    );
    let held = held_in_database(pool).await?;
    let mismatches = database_state(&held, &ended, tag, n);
    report.bar_list(
        "RADIUS accounts and held addresses match every run's end",
        &mismatches,
    );
    Ok(ended)
}

/// What the database-side systems hold: the RADIUS user names FreeRADIUS
/// would authenticate (its `radcheck` table) and the subscribers holding an
/// address.
#[derive(Debug, Default)]
pub struct Held {
    pub radius_users: HashSet<String>,
    pub addresses: HashSet<String>,
}

/// Reads [`Held`] from the scenario's database.
pub async fn held_in_database(pool: &PgPool) -> Result<Held> {
    let radius_users: Vec<String> = sqlx::query_scalar("SELECT DISTINCT username FROM radcheck")
        .fetch_all(pool)
        .await?;
    let addresses: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT subscriber_id FROM address_records WHERE tenant_id = $1 \
         AND state IN ('PENDING', 'ALLOCATED', 'ACTIVE', 'SUSPENDED', 'REVOKING')",
    )
    .bind(TENANT)
    .fetch_all(pool)
    .await?;
    Ok(Held {
        radius_users: radius_users.into_iter().collect(),
        addresses: addresses.into_iter().collect(),
    })
}

/// The RADIUS user name of subscriber `sub` of the harness's tenant (the
/// default per-tenant namespace, `{subscriber_id}@{tenant}`).
pub fn radius_user(sub: &str) -> String {
    format!("{sub}@{TENANT}")
}

/// Checks the RADIUS accounts and held addresses against how the
/// provisioning runs ended: a completed run left its account and an
/// address; a compensated one left neither. Returns the mismatches.
pub fn database_state(
    held: &Held,
    ended: &HashMap<String, String>,
    tag: &str,
    n: usize,
) -> Vec<String> {
    let mut bad = Vec::new();
    for i in 0..n {
        let (sub, _) = subscriber(tag, i);
        let expect = match ended.get(&sub).map(String::as_str) {
            Some("COMPLETED") => true,
            Some("COMPENSATED" | "CANCELLED") => false,
            // Reported by provisioning_state.
            _ => continue,
        };
        let account = held.radius_users.contains(&radius_user(&sub));
        let address = held.addresses.contains(&sub);
        if (account, address) != (expect, expect) {
            bad.push(format!(
                "{sub} ({}): RADIUS account {account}, address {address}",
                ended.get(&sub).map(String::as_str).unwrap_or_default()
            ));
        }
    }
    bad
}

/// How each subscriber's run ended: subscriber id → state.
pub async fn provisioning_ends(pool: &PgPool) -> Result<HashMap<String, String>> {
    let rows: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT input->>'subscriber_id', state FROM runs WHERE tenant_id = $1")
            .bind(TENANT)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(s, st)| s.map(|s| (s, st)))
        .collect())
}

/// The number of history events of the tenant's runs.
pub async fn event_count(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM run_events e JOIN runs r ON r.id = e.run_id WHERE r.tenant_id = $1",
    )
    .bind(TENANT)
    .fetch_one(pool)
    .await?)
}

/// Counts events of `kind`.
pub async fn events_of_kind(pool: &PgPool, kind: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM run_events WHERE kind = $1")
            .bind(kind)
            .fetch_one(pool)
            .await?,
    )
}

/// A random pause in `lo..=hi` milliseconds: the harness's own timing
/// (when to strike next), not a wait for something to happen.
pub async fn random_pause(lo: u64, hi: u64) {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(lo..=hi))).await;
}
