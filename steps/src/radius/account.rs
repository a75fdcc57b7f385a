//! The account of one subscriber as the RADIUS repository writes it
//! (password, addresses, plan group), the `radgroupreply`-style attribute
//! rows, and everything FreeRADIUS would read for one user.

use std::net::Ipv4Addr;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// The attributes of `radcheck` / `radreply` this repository owns; rows of
/// other attributes an operator adds for a subscriber are left alone by
/// [`super::RadiusRepo::upsert_account`].
pub(super) const PASSWORD: &str = "Cleartext-Password";
pub(super) const FRAMED_IP: &str = "Framed-IP-Address";
pub(super) const DELEGATED_PREFIX: &str = "Delegated-IPv6-Prefix";

/// A row of `radgroupreply` (or `radreply`): `attribute op value`, e.g.
/// `Filter-Id := suspended`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyAttribute {
    pub attribute: String,
    #[serde(default = "ReplyAttribute::default_op")]
    pub op: String,
    pub value: String,
}

impl ReplyAttribute {
    pub fn new(attribute: &str, op: &str, value: &str) -> Self {
        Self {
            attribute: attribute.to_owned(),
            op: op.to_owned(),
            value: value.to_owned(),
        }
    }

    fn default_op() -> String {
        ":=".to_owned()
    }

    /// Checks the row against what FreeRADIUS accepts in a reply item.
    pub fn validate(&self) -> std::result::Result<(), String> {
        const OPS: [&str; 5] = ["=", ":=", "+=", "==", "!="];
        if self.attribute.trim().is_empty() || self.attribute.len() > 64 {
            return Err(format!(
                "attribute {:?} must be 1 to 64 characters",
                self.attribute
            ));
        }
        if !OPS.contains(&self.op.as_str()) {
            return Err(format!("operator {:?} must be one of {OPS:?}", self.op));
        }
        if self.value.len() > 253 {
            return Err(format!(
                "the value of {} is longer than 253 bytes",
                self.attribute
            ));
        }
        Ok(())
    }
}

/// What the provisioning system writes for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    /// Written as `Cleartext-Password := …` in `radcheck`.
    pub password: String,
    /// `Framed-IP-Address := …` in `radreply`.
    pub framed_ip: Option<Ipv4Addr>,
    /// `Delegated-IPv6-Prefix := …` in `radreply`.
    pub delegated_prefix: Option<Ipv6Net>,
    /// The plan group, in `radusergroup`.
    pub group: String,
}

impl Account {
    pub(super) fn validate(&self) -> Result<()> {
        validate_name("username", &self.username)?;
        validate_name("group", &self.group)?;
        if self.password.is_empty() || self.password.len() > 128 {
            return Err(Error::InvalidInput(format!(
                "the RADIUS password of {:?} must be 1 to 128 bytes",
                self.username
            )));
        }
        Ok(())
    }

    pub(super) fn reply_rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = Vec::new();
        if let Some(ip) = self.framed_ip {
            rows.push((FRAMED_IP, ip.to_string()));
        }
        if let Some(prefix) = self.delegated_prefix {
            rows.push((DELEGATED_PREFIX, prefix.trunc().to_string()));
        }
        rows
    }
}

pub(super) fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err(Error::InvalidInput(format!(
            "the RADIUS {what} {name:?} must be 1 to 64 bytes"
        )));
    }
    Ok(())
}

/// Every row FreeRADIUS would read for one user, for inspection and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountRows {
    /// `radcheck`: (attribute, op, value), in id order.
    pub check: Vec<ReplyAttribute>,
    /// `radreply`: (attribute, op, value), in id order.
    pub reply: Vec<ReplyAttribute>,
    /// `radusergroup`: (group, priority), by priority.
    pub groups: Vec<(String, i32)>,
}

impl AccountRows {
    /// The value of the first `radcheck` / `radreply` row of `attribute`.
    pub fn check_value(&self, attribute: &str) -> Option<&str> {
        find(&self.check, attribute)
    }
    pub fn reply_value(&self, attribute: &str) -> Option<&str> {
        find(&self.reply, attribute)
    }
}

fn find<'a>(rows: &'a [ReplyAttribute], attribute: &str) -> Option<&'a str> {
    rows.iter()
        .find(|r| r.attribute == attribute)
        .map(|r| r.value.as_str())
}
