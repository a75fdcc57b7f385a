//! Decoding the rows a claim returned, one by one: a row that cannot be
//! decoded (corrupt `steps` text, an unknown state name) is logged with its
//! run id, counted, and parked (its lease given back, not due for
//! [`PARK_UNDECODABLE`]) instead of failing the whole claim.

use std::time::Duration;

use tracing::warn;

use super::{Result, RunRecord};
use crate::ids::{LeaseToken, RunId};
use crate::telemetry;

/// How long a run whose row cannot be decoded is left alone before a claim
/// tries it again (it is logged and counted each time).
pub const PARK_UNDECODABLE: Duration = Duration::from_secs(3600);

/// The decoded runs of `rows`, and the leases of those that could not be
/// decoded, to be given back for [`PARK_UNDECODABLE`].
pub(crate) fn decode_each<R>(
    rows: &[R],
    token: LeaseToken,
    decode: impl Fn(&R) -> Result<RunRecord>,
    id_of: impl Fn(&R) -> Option<RunId>,
) -> (Vec<RunRecord>, Vec<(RunId, LeaseToken)>) {
    let mut runs = Vec::with_capacity(rows.len());
    let mut parked = Vec::new();
    for row in rows {
        match decode(row) {
            Ok(run) => runs.push(run),
            Err(e) => {
                let id = id_of(row);
                warn!(run_id = ?id.map(|i| i.to_string()), error = %e,
                    "a claimed run cannot be decoded; parking it and driving the others");
                telemetry::undecodable_run();
                parked.extend(id.map(|id| (id, token)));
            }
        }
    }
    (runs, parked)
}
