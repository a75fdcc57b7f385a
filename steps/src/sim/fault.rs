//! The faults an operation can be given ([`Fault`]) and the fate they draw
//! for an applied request's answer ([`AfterApply`]).

use serde::{Deserialize, Serialize};

/// Misbehaviour of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fault {
    /// The share of requests (0 to 1) answered 503 without any effect.
    pub failure_rate: f64,
    /// Added to every request, in milliseconds.
    pub latency_ms: u64,
    /// The share of requests (0 to 1) whose effect is applied at once and
    /// whose answer comes `stall_ms` later: a caller with a shorter timeout
    /// gives up without knowing.
    pub stall_rate: f64,
    pub stall_ms: u64,
    /// The share of requests (0 to 1) whose effect is applied and whose
    /// answer is then lost: 504. A repeat of the key gets the real answer.
    pub lost_ack_rate: f64,
    /// The share of requests (0 to 1) whose effect is applied and which are
    /// then answered 500. A repeat of the key gets the real answer.
    pub applied_then_500_rate: f64,
    /// The share of requests (0 to 1) whose effect is applied and whose
    /// connection is then reset without any answer. A repeat of the key
    /// gets the real answer.
    pub applied_then_reset_rate: f64,
}

impl Fault {
    /// Every request fails.
    pub fn always() -> Self {
        Self::rate(1.0)
    }

    pub fn rate(failure_rate: f64) -> Self {
        Self {
            failure_rate,
            ..Self::default()
        }
    }
}

/// What happens to a request's answer after its effect was applied.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterApply {
    Answer,
    Stall,
    LoseAck,
    Error500,
    Reset,
}

impl AfterApply {
    /// Draws one outcome from the fault's rates (at most one fires).
    pub(super) fn draw(fault: &Fault) -> Self {
        let hit = |rate: f64| rate > 0.0 && fastrand::f64() < rate;
        if hit(fault.applied_then_reset_rate) {
            AfterApply::Reset
        } else if hit(fault.applied_then_500_rate) {
            AfterApply::Error500
        } else if hit(fault.lost_ack_rate) {
            AfterApply::LoseAck
        } else if hit(fault.stall_rate) {
            AfterApply::Stall
        } else {
            AfterApply::Answer
        }
    }
}
