//! IPAM's types: pool configuration, pool ranges (the n-th address or
//! prefix of a pool), pools, their usage and capacity levels, and the error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::lifecycle::repo::LifecycleError;
use crate::lifecycle::{Family, UnknownName};

/// Why an IPAM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("pool {name:?} of tenant {tenant:?} does not exist")]
    UnknownPool { tenant: String, name: String },
    #[error("tenant {tenant:?} has no {family} pool{}", prefix_length.map(|p| format!(" delegating /{p}")).unwrap_or_default())]
    NoPool {
        tenant: String,
        family: Family,
        prefix_length: Option<u8>,
    },
    #[error("pool {pool:?} is retired: it takes no new allocations")]
    Retired { pool: String },
    #[error("pool {name:?} of tenant {tenant:?} already exists")]
    PoolExists { tenant: String, name: String },
    #[error("pool {pool:?} is exhausted")]
    Exhausted { pool: String },
    #[error("{address} of pool {pool:?} is already held")]
    Taken { pool: String, address: String },
    #[error("{address:?} is not an address of pool {pool:?}")]
    NotInPool { pool: String, address: String },
    #[error("IPAM configuration: {0}")]
    Config(String),
    #[error(transparent)]
    External(#[from] crate::adapters::AdapterError),
    #[error("pool {name:?}: {reason}")]
    InvalidPool { name: String, reason: String },
    #[error(
        "pool {name:?} is stored with {stored} but configured with {configured}; a pool's range cannot change"
    )]
    PoolChanged {
        name: String,
        stored: String,
        configured: String,
    },
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("stored pool is corrupt: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<UnknownName> for IpamError {
    fn from(e: UnknownName) -> Self {
        IpamError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = IpamError> = std::result::Result<T, E>;

fn default_tenant() -> String {
    "default".into()
}

/// A pool as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub name: String,
    /// The range, e.g. `100.64.0.0/16` or `2001:db8:1000::/40`.
    pub cidr: IpNet,
    /// The length of what is handed out: 32 for IPv4 addresses (default),
    /// the delegated prefix length for IPv6 (default 56).
    #[serde(default)]
    pub prefix_length: Option<u8>,
    /// Utilization (percent) at which capacity checks warn (default 80).
    #[serde(default)]
    pub warning_percent: Option<u8>,
    /// Utilization (percent) at which capacity checks are critical (default 100).
    #[serde(default)]
    pub critical_percent: Option<u8>,
}

impl PoolConfig {
    pub fn new(tenant: &str, name: &str, cidr: IpNet) -> Self {
        Self {
            tenant: tenant.into(),
            name: name.into(),
            cidr,
            prefix_length: None,
            warning_percent: None,
            critical_percent: None,
        }
    }

    pub fn family(&self) -> Family {
        match self.cidr {
            IpNet::V4(_) => Family::Ipv4,
            IpNet::V6(_) => Family::Ipv6,
        }
    }

    /// The range with its defaults applied, checked.
    pub fn range(&self) -> Result<PoolRange> {
        let pl = self.prefix_length.unwrap_or(match self.family() {
            Family::Ipv4 => 32,
            Family::Ipv6 => 56,
        });
        PoolRange::new(self.cidr.trunc(), pl).map_err(|reason| IpamError::InvalidPool {
            name: self.name.clone(),
            reason,
        })
    }

    pub fn thresholds(&self) -> Result<(u8, u8)> {
        let w = self.warning_percent.unwrap_or(80);
        let c = self.critical_percent.unwrap_or(100);
        if w > c || c > 100 {
            return Err(IpamError::InvalidPool {
                name: self.name.clone(),
                reason: format!(
                    "thresholds need warning ≤ critical ≤ 100, got warning {w} and critical {c}"
                ),
            });
        }
        Ok((w, c))
    }
}

/// A pool's range and what it hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolRange {
    pub net: IpNet,
    pub prefix_length: u8,
}

impl PoolRange {
    pub fn new(net: IpNet, prefix_length: u8) -> Result<Self, String> {
        if prefix_length < net.prefix_len() || prefix_length > net.max_prefix_len() {
            return Err(format!(
                "prefix_length {prefix_length} must be between the range's /{} and /{}",
                net.prefix_len(),
                net.max_prefix_len()
            ));
        }
        if matches!(net, IpNet::V4(_)) && prefix_length != 32 {
            return Err("IPv4 pools hand out single addresses: prefix_length must be 32".into());
        }
        if matches!(net, IpNet::V6(_)) && prefix_length == 128 {
            return Err("IPv6 pools delegate prefixes: prefix_length must be below 128".into());
        }
        Ok(Self { net, prefix_length })
    }

    /// How many IPv4 host addresses at the start of the range are skipped:
    /// the network address (and, at the end, the broadcast) of ranges
    /// longer than two addresses.
    pub(crate) fn v4_skips_edges(&self) -> bool {
        self.net.prefix_len() < 31
    }

    /// How many addresses or prefixes the pool holds (saturating at i64::MAX).
    pub fn capacity(&self) -> i64 {
        let bits = u32::from(self.prefix_length - self.net.prefix_len());
        // At most 127 bits: IPv6 pools delegate prefixes shorter than /128.
        let all: u128 = 1u128 << bits;
        let usable = if matches!(self.net, IpNet::V4(_)) && self.v4_skips_edges() {
            all - 2
        } else {
            all
        };
        i64::try_from(usable).unwrap_or(i64::MAX)
    }

    /// The address (IPv4) or prefix (IPv6, `addr/len`) at `ordinal`.
    pub fn nth(&self, ordinal: i64) -> Option<String> {
        if ordinal < 0 || ordinal >= self.capacity() {
            return None;
        }
        let n = ordinal as u128;
        match self.net {
            IpNet::V4(net) => {
                let base = u32::from(net.network()) as u128 + u128::from(self.v4_skips_edges());
                let a = u32::try_from(base + n).ok()?;
                Some(Ipv4Addr::from(a).to_string())
            }
            IpNet::V6(net) => {
                let shift = 128 - u32::from(self.prefix_length);
                let a = u128::from(net.network()) + (n << shift);
                Some(format!("{}/{}", Ipv6Addr::from(a), self.prefix_length))
            }
        }
    }

    /// The ordinal of `address` (as [`nth`](Self::nth) writes it), if it is
    /// one of the pool's.
    pub fn ordinal_of(&self, address: &str) -> Option<i64> {
        let ip: IpAddr = address.split('/').next()?.parse().ok()?;
        let n: u128 = match (self.net, ip) {
            (IpNet::V4(net), IpAddr::V4(a)) => {
                let base = u32::from(net.network()) as u128 + u128::from(self.v4_skips_edges());
                (u32::from(a) as u128).checked_sub(base)?
            }
            (IpNet::V6(net), IpAddr::V6(a)) => {
                let shift = 128 - u32::from(self.prefix_length);
                let off = u128::from(a).checked_sub(u128::from(net.network()))?;
                if off & ((1u128 << shift) - 1) != 0 {
                    return None;
                }
                off >> shift
            }
            _ => return None,
        };
        let n = i64::try_from(n).ok()?;
        (n < self.capacity()).then_some(n)
    }
}

/// A pool as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    pub id: i64,
    pub tenant_id: String,
    pub name: String,
    pub family: Family,
    pub cidr: IpNet,
    pub prefix_length: u8,
    pub capacity: i64,
    pub warning_percent: u8,
    pub critical_percent: u8,
    /// When it was retired: no new allocations since, records kept.
    pub retired_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Pool {
    pub fn range(&self) -> Result<PoolRange> {
        PoolRange::new(self.cidr, self.prefix_length).map_err(IpamError::Corrupt)
    }
}

/// A pool's use: in use counts ALLOCATED, ACTIVE, SUSPENDED and REVOKING
/// records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolUsage {
    pub pool: Pool,
    pub in_use: i64,
}

impl PoolUsage {
    pub fn capacity(&self) -> i64 {
        self.pool.capacity
    }

    /// In use as a percentage of capacity.
    pub fn percent(&self) -> f64 {
        if self.pool.capacity == 0 {
            return 100.0;
        }
        self.in_use as f64 * 100.0 / self.pool.capacity as f64
    }
}

/// Where a pool's utilization stands against its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CapacityLevel {
    /// Below the warning threshold.
    Ok,
    /// At or above the warning threshold, below the critical one.
    Warning,
    /// At or above the critical threshold.
    Critical,
}

impl CapacityLevel {
    pub const ALL: [CapacityLevel; 3] = [
        CapacityLevel::Ok,
        CapacityLevel::Warning,
        CapacityLevel::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CapacityLevel::Ok => "OK",
            CapacityLevel::Warning => "WARNING",
            CapacityLevel::Critical => "CRITICAL",
        }
    }

    /// The level of `percent` against `warning` and `critical` (percent).
    pub fn of(percent: f64, warning: u8, critical: u8) -> Self {
        if percent >= f64::from(critical) {
            CapacityLevel::Critical
        } else if percent >= f64::from(warning) {
            CapacityLevel::Warning
        } else {
            CapacityLevel::Ok
        }
    }
}

impl std::fmt::Display for CapacityLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CapacityLevel {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CapacityLevel::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "capacity level",
                value: s.to_owned(),
            })
    }
}

impl PoolUsage {
    /// The pool's level against its own thresholds.
    pub fn level(&self) -> CapacityLevel {
        CapacityLevel::of(
            self.percent(),
            self.pool.warning_percent,
            self.pool.critical_percent,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(cidr: &str, pl: u8) -> PoolRange {
        PoolRange::new(cidr.parse().unwrap(), pl).unwrap()
    }

    #[test]
    fn ipv4_pools_skip_network_and_broadcast() {
        let r = range("10.0.0.0/24", 32);
        assert_eq!(r.capacity(), 254);
        assert_eq!(r.nth(0).as_deref(), Some("10.0.0.1"));
        assert_eq!(r.nth(253).as_deref(), Some("10.0.0.254"));
        assert_eq!(r.nth(254), None);
        assert_eq!(r.ordinal_of("10.0.0.254"), Some(253));
        assert_eq!(r.ordinal_of("10.0.0.255"), None);
        assert_eq!(r.ordinal_of("10.0.1.1"), None);
        let p2p = range("10.0.0.8/31", 32);
        assert_eq!(p2p.capacity(), 2);
        assert_eq!(p2p.nth(0).as_deref(), Some("10.0.0.8"));
    }

    #[test]
    fn ipv6_prefixes_are_computed_not_enumerated() {
        let r = range("2001:db8:1000::/40", 56);
        assert_eq!(r.capacity(), 65_536);
        assert_eq!(r.nth(0).as_deref(), Some("2001:db8:1000::/56"));
        assert_eq!(r.nth(1).as_deref(), Some("2001:db8:1000:100::/56"));
        assert_eq!(r.nth(65_535).as_deref(), Some("2001:db8:10ff:ff00::/56"));
        assert_eq!(r.ordinal_of("2001:db8:1000:100::/56"), Some(1));
        assert_eq!(r.ordinal_of("2001:db8:1000:101::/56"), None);
        // The same as ipnet's enumeration, for the first few.
        let net: ipnet::Ipv6Net = "2001:db8:1000::/40".parse().unwrap();
        for (i, sub) in net.subnets(56).unwrap().take(5).enumerate() {
            assert_eq!(r.nth(i as i64).unwrap(), sub.to_string());
        }
        // A huge pool: capacity saturates, the far end is still computed.
        let big = range("::/0", 64);
        assert_eq!(big.capacity(), i64::MAX);
        assert!(big.nth(i64::MAX - 1).is_some());
    }

    #[test]
    fn capacity_levels_follow_the_thresholds() {
        assert_eq!(CapacityLevel::of(79.9, 80, 100), CapacityLevel::Ok);
        assert_eq!(CapacityLevel::of(80.0, 80, 100), CapacityLevel::Warning);
        assert_eq!(CapacityLevel::of(99.9, 80, 100), CapacityLevel::Warning);
        assert_eq!(CapacityLevel::of(100.0, 80, 100), CapacityLevel::Critical);
        assert_eq!(CapacityLevel::of(95.0, 70, 95), CapacityLevel::Critical);
        for l in CapacityLevel::ALL {
            assert_eq!(l.as_str().parse::<CapacityLevel>(), Ok(l));
        }
        assert!("FULL".parse::<CapacityLevel>().is_err());
    }

    #[test]
    fn bad_ranges_are_refused_with_the_reason() {
        assert!(PoolRange::new("10.0.0.0/24".parse().unwrap(), 30).is_err());
        assert!(PoolRange::new("2001:db8::/56".parse().unwrap(), 48).is_err());
        let mut c = PoolConfig::new("t", "p", "10.0.0.0/24".parse().unwrap());
        c.warning_percent = Some(90);
        c.critical_percent = Some(85);
        let e = c.thresholds().unwrap_err().to_string();
        assert!(e.contains("\"p\"") && e.contains("warning 90"), "{e}");
    }
}
