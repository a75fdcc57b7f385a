//! Capacity forecast: each pool's growth rate and projected exhaustion,
//! from the lifecycle snapshots (`lifecycle_metrics` stores each pool's
//! in-use count in every snapshot).
//!
//! The rate is the least-squares slope of in-use over time across the
//! window (the last [`WINDOW_DAYS`] days), in addresses per day; a pool
//! growing at that rate is full after `(capacity − in_use) / rate` days.
//! A pool that is not growing, or with fewer than two points in the window,
//! has no exhaustion date.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{PoolUsage, Result};
use crate::db::DomainDb;
use crate::lifecycle::repo as lifecycle;

/// The window the growth rate is measured over.
pub const WINDOW_DAYS: i64 = 30;

/// The most snapshots read per tenant (an hourly job over the window, with
/// room to spare).
const MAX_SNAPSHOTS: i64 = 5_000;

/// A pool's forecast.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Forecast {
    /// In-use change per day over the window.
    pub growth_per_day: f64,
    /// Days until full at that rate; `None` when not growing.
    pub days_to_exhaustion: Option<f64>,
    /// When it will be full at that rate.
    pub exhaustion_at: Option<DateTime<Utc>>,
}

impl Forecast {
    /// No growth known.
    pub const NONE: Forecast = Forecast {
        growth_per_day: 0.0,
        days_to_exhaustion: None,
        exhaustion_at: None,
    };

    /// The sentence of a capacity notification: "pool X: 82 %, full in ~41
    /// days at the last 30 days' rate".
    pub fn describe(&self, pool: &str, percent: f64) -> String {
        match self.days_to_exhaustion {
            Some(d) => format!(
                "pool {pool}: {percent:.0} %, full in ~{d:.0} days at the last {WINDOW_DAYS} days' rate"
            ),
            None => {
                format!("pool {pool}: {percent:.0} %, not growing over the last {WINDOW_DAYS} days")
            }
        }
    }
}

/// The forecast of a pool with `capacity` and `in_use` now, from its
/// history of (time, in use) points (any order; those before the window
/// are ignored).
pub fn forecast(
    history: &[(DateTime<Utc>, i64)],
    capacity: i64,
    in_use: i64,
    now: DateTime<Utc>,
) -> Forecast {
    let start = now - Duration::days(WINDOW_DAYS);
    let points: Vec<(f64, f64)> = history
        .iter()
        .filter(|(t, _)| *t >= start && *t <= now)
        .map(|(t, n)| ((*t - start).num_seconds() as f64 / 86_400.0, *n as f64))
        .collect();
    if points.len() < 2 {
        return Forecast::NONE;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return Forecast::NONE;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = sxy / sxx;
    if slope <= 0.0 || !slope.is_finite() {
        return Forecast {
            growth_per_day: slope.min(0.0),
            ..Forecast::NONE
        };
    }
    let days = ((capacity - in_use).max(0) as f64) / slope;
    let exhaustion_at = Duration::try_milliseconds((days * 86_400_000.0) as i64)
        .and_then(|d| now.checked_add_signed(d));
    Forecast {
        growth_per_day: slope,
        days_to_exhaustion: Some(days),
        exhaustion_at,
    }
}

/// Each pool's (time, in use) history in a tenant's snapshots over the
/// window, by pool name.
pub async fn history(
    db: &DomainDb,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, Vec<(DateTime<Utc>, i64)>>> {
    let start = now - Duration::days(WINDOW_DAYS);
    let mut out: BTreeMap<String, Vec<(DateTime<Utc>, i64)>> = BTreeMap::new();
    for s in lifecycle::snapshots(db, tenant, MAX_SNAPSHOTS).await? {
        if s.taken_at < start {
            break;
        }
        for p in s.pools.as_array().into_iter().flatten() {
            if let (Some(name), Some(in_use)) = (
                p.get("pool").and_then(|v| v.as_str()),
                p.get("in_use").and_then(|v| v.as_i64()),
            ) {
                out.entry(name.to_owned())
                    .or_default()
                    .push((s.taken_at, in_use));
            }
        }
    }
    Ok(out)
}

/// The forecast of each of `usage`'s pools (one tenant's), by pool id.
pub async fn forecasts(
    db: &DomainDb,
    tenant: &str,
    usage: &[PoolUsage],
    now: DateTime<Utc>,
) -> Result<BTreeMap<i64, Forecast>> {
    let history = history(db, tenant, now).await?;
    Ok(usage
        .iter()
        .map(|u| {
            let points = history.get(&u.pool.name).map(Vec::as_slice).unwrap_or(&[]);
            (u.pool.id, forecast(points, u.capacity(), u.in_use, now))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days_ago: i64, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::days(days_ago)
    }

    #[test]
    fn a_steady_growth_is_projected_to_its_known_end() {
        let now = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // 10 addresses a day for 30 days, from 500 to 800, of 1000.
        let history: Vec<_> = (0..=30).map(|d| (at(30 - d, now), 500 + 10 * d)).collect();
        let f = forecast(&history, 1000, 800, now);
        assert!((f.growth_per_day - 10.0).abs() < 1e-9, "{f:?}");
        assert_eq!(f.days_to_exhaustion.map(|d| d.round()), Some(20.0));
        let end = DateTime::parse_from_rfc3339("2026-06-21T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(
            (f.exhaustion_at.unwrap() - end).num_seconds().abs() < 60,
            "{f:?}"
        );
        assert_eq!(
            f.describe("v4", 80.0),
            "pool v4: 80 %, full in ~20 days at the last 30 days' rate"
        );
        // Points older than the window do not count.
        let mut old = history.clone();
        old.push((at(90, now), 0));
        assert_eq!(forecast(&old, 1000, 800, now), f);
    }

    #[test]
    fn a_flat_or_shrinking_pool_has_no_end() {
        let now = Utc::now();
        let flat: Vec<_> = (0..10).map(|d| (at(d, now), 300)).collect();
        assert_eq!(forecast(&flat, 1000, 300, now).days_to_exhaustion, None);
        let shrinking: Vec<_> = (0..10).map(|d| (at(d, now), 300 + d * 5)).collect();
        let f = forecast(&shrinking, 1000, 300, now);
        assert!(f.growth_per_day < 0.0);
        assert_eq!(f.exhaustion_at, None);
        assert_eq!(forecast(&[(now, 5)], 10, 5, now), Forecast::NONE);
    }
}
