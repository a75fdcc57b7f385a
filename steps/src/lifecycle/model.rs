//! The address lifecycle's types: the states and their transition table
//! ([`AddressState::check`]), the address families.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of one address or prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AddressState {
    /// Held but not yet handed out (a reservation, or an allocation in flight).
    Pending,
    Allocated,
    Active,
    Suspended,
    /// Being taken back: sessions are torn down, then it becomes REVOKED.
    Revoking,
    /// Terminal: the address is free again.
    Revoked,
    Failed,
}

impl AddressState {
    pub const ALL: [AddressState; 7] = [
        AddressState::Pending,
        AddressState::Allocated,
        AddressState::Active,
        AddressState::Suspended,
        AddressState::Revoking,
        AddressState::Revoked,
        AddressState::Failed,
    ];

    /// States that count as "in use" in pool utilization.
    pub const IN_USE: [AddressState; 4] = [
        AddressState::Allocated,
        AddressState::Active,
        AddressState::Suspended,
        AddressState::Revoking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AddressState::Pending => "PENDING",
            AddressState::Allocated => "ALLOCATED",
            AddressState::Active => "ACTIVE",
            AddressState::Suspended => "SUSPENDED",
            AddressState::Revoking => "REVOKING",
            AddressState::Revoked => "REVOKED",
            AddressState::Failed => "FAILED",
        }
    }

    /// The states this one may move to.
    pub fn successors(self) -> &'static [AddressState] {
        use AddressState::*;
        match self {
            Pending => &[Allocated, Failed],
            Allocated => &[Active, Revoking, Failed],
            Active => &[Suspended, Revoking, Failed],
            Suspended => &[Active, Revoking, Failed],
            Revoking => &[Revoked, Failed],
            Revoked => &[],
            Failed => &[Pending],
        }
    }

    /// Checks the move `self → to`.
    pub fn check(self, to: AddressState) -> Result<(), InvalidTransition> {
        if self.successors().contains(&to) {
            Ok(())
        } else {
            Err(InvalidTransition { from: self, to })
        }
    }

    pub fn is_terminal(self) -> bool {
        self.successors().is_empty()
    }

    /// Whether a record in this state holds its address.
    pub fn holds_address(self) -> bool {
        !matches!(self, AddressState::Revoked | AddressState::Failed)
    }

    /// The record's column that keeps the time it entered this state.
    pub(crate) fn timestamp_column(self) -> &'static str {
        match self {
            AddressState::Pending => "pending_at",
            AddressState::Allocated => "allocated_at",
            AddressState::Active => "activated_at",
            AddressState::Suspended => "suspended_at",
            AddressState::Revoking => "revoking_at",
            AddressState::Revoked => "revoked_at",
            AddressState::Failed => "failed_at",
        }
    }
}

impl fmt::Display for AddressState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state or family name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for AddressState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AddressState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "address state",
                value: s.to_owned(),
            })
    }
}

/// A move the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an address cannot go from {from} to {to}")]
pub struct InvalidTransition {
    pub from: AddressState,
    pub to: AddressState,
}

/// IPv4 address or IPv6 delegated prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "IPV4",
            Family::Ipv6 => "IPV6",
        }
    }

    /// `ipv4` or `ipv6`: the suffix of allocation keys and context fields.
    pub fn lower(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Family {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Family::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "address family",
                value: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::AddressState::{self, *};

    /// The table from the specification, written out pair by pair.
    fn allowed(from: AddressState, to: AddressState) -> bool {
        matches!(
            (from, to),
            (Pending, Allocated | Failed)
                | (Allocated, Active | Revoking | Failed)
                | (Active, Suspended | Revoking | Failed)
                | (Suspended, Active | Revoking | Failed)
                | (Revoking, Revoked | Failed)
                | (Failed, Pending)
        )
    }

    #[test]
    fn every_pair_follows_the_table() {
        let mut allowed_count = 0;
        for from in AddressState::ALL {
            for to in AddressState::ALL {
                let got = from.check(to);
                if allowed(from, to) {
                    allowed_count += 1;
                    assert_eq!(got, Ok(()), "{from} → {to} must be allowed");
                } else {
                    let e = got.expect_err("must be refused");
                    assert_eq!((e.from, e.to), (from, to));
                    assert_eq!(
                        e.to_string(),
                        format!("an address cannot go from {from} to {to}")
                    );
                }
            }
        }
        assert_eq!(allowed_count, 14);
    }

    #[test]
    fn revoked_is_the_only_terminal_state_and_names_round_trip() {
        for s in AddressState::ALL {
            assert_eq!(s.is_terminal(), s == Revoked);
            assert_eq!(s.as_str().parse::<AddressState>(), Ok(s));
        }
        assert!("ACTIVATED".parse::<AddressState>().is_err());
        assert!(AddressState::IN_USE.iter().all(|s| s.holds_address()));
        assert!(Pending.holds_address() && !Failed.holds_address());
        for f in super::Family::ALL {
            assert_eq!(f.as_str().parse::<super::Family>(), Ok(f));
        }
    }
}
