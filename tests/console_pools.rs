//! The console's pools page over HTTP against an in-process server on
//! PostgreSQL: each pool's capacity forecast (growth per day and the date it
//! is full, from a synthetic snapshot history whose answer is known) and the
//! retired flag.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{Duration, Utc};
use common::console::Console;
use common::*;
use sagaflow_steps::DomainDb;
use sagaflow_steps::ipam::pools;
use sagaflow_steps::lifecycle::repo as lifecycle;
use serde_json::json;

/// The `div.pool` of `name` in the page.
fn pool_div<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .find(&format!("data-pool=\"{name}\""))
        .unwrap_or_else(|| panic!("no pool {name}: {page}"));
    let rest = &page[start..];
    let end = rest[1..].find("data-pool=").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn the_pools_page_shows_each_forecast_and_the_retired_flag(pg: sqlx::PgPool) {
    let t = start_with(&pg, &[("demo.toml", DEMO.to_string())], |c| {
        c.domain.pools = sagaflow_steps::DomainConfig::dev("a").pools;
    })
    .await;
    let db = DomainDb::Postgres(pg.clone());
    let now = Utc::now();
    // dev-v4 grew by 100 addresses a day over the last 30 days; none is in
    // use now, so it is full after 65534 / 100 = 655.34 days.
    for day in 0..=30 {
        lifecycle::insert_snapshot(
            &db,
            "a",
            &format!("snap-{day}"),
            now - Duration::days(30 - day),
            &json!([]),
            &json!([{ "pool": "dev-v4", "family": "IPV4", "in_use": 100 * day }]),
        )
        .await
        .unwrap();
    }
    pools::retire_pool(&db, "a", "dev-v6", "admin-a", now)
        .await
        .unwrap();

    let crm = Console::sign_in(t.server.http_addr, "crm-a").await;
    let page = crm.get("/ui/pools").await;
    assert_eq!(page.status, 200, "{}", page.text);

    let v4 = pool_div(&page.text, "dev-v4");
    assert!(v4.contains("growing 100.0 per day"), "{v4}");
    let full = now + Duration::minutes((655.34 * 24.0 * 60.0) as i64);
    // The day it is full, allowing for the page rendered a moment later.
    let days: Vec<String> = [full, full + Duration::minutes(1)]
        .iter()
        .map(|d| format!("full by {}", d.format("%Y-%m-%d")))
        .collect();
    assert!(days.iter().any(|d| v4.contains(d)), "{days:?} in {v4}");
    assert!(!v4.contains("RETIRED"), "{v4}");

    let v6 = pool_div(&page.text, "dev-v6");
    assert!(v6.contains("RETIRED"), "{v6}");
    assert!(v6.contains("not growing"), "{v6}");
}
