//! Bearer tokens → principals. Tokens are kept as SHA-256 hashes; the
//! token itself is never stored or logged.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::ids::TenantId;

/// What a caller may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Start runs and read them.
    Crm,
    /// Also retry, compensate, skip and cancel runs.
    Operator,
    /// Also manage schedules.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Crm => "crm",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "crm" => Ok(Role::Crm),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: use crm, operator or admin"
            )),
        }
    }
}

/// Who is calling: from the token only, never from request fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub tenant: TenantId,
    pub role: Role,
}

/// One configured token, as its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The principal's name, recorded as the actor of its actions.
    pub name: String,
    pub tenant: String,
    pub role: Role,
    /// Hex SHA-256 of the token (`printf %s TOKEN | sha256sum`).
    pub sha256: String,
}

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Maps token hashes to principals.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    by_hash: HashMap<String, Principal>,
}

impl Authenticator {
    /// Builds the table; refuses malformed hashes and duplicates, naming them.
    pub fn new(entries: &[TokenEntry]) -> Result<Self, String> {
        let mut by_hash = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let h = e.sha256.to_ascii_lowercase();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "auth.tokens[{i}] ({}): sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)",
                    e.name
                ));
            }
            if e.tenant.is_empty() || e.name.is_empty() {
                return Err(format!(
                    "auth.tokens[{i}]: name and tenant must not be empty"
                ));
            }
            let p = Principal {
                name: e.name.clone(),
                tenant: TenantId::new(&e.tenant),
                role: e.role,
            };
            if by_hash.insert(h, p).is_some() {
                return Err(format!(
                    "auth.tokens[{i}] ({}): the same token is configured twice",
                    e.name
                ));
            }
        }
        Ok(Self { by_hash })
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Authenticates a request's metadata and checks the role.
    pub fn authorize(
        &self,
        meta: &tonic::metadata::MetadataMap,
        need: Role,
    ) -> Result<Principal, Status> {
        let principal = self.identify(meta)?;
        if principal.role < need {
            return Err(Status::permission_denied(format!(
                "role {} may not do this; it needs the {} role",
                principal.role, need
            )));
        }
        Ok(principal)
    }

    /// Who the request's token names, whatever the call needs.
    pub fn identify(&self, meta: &tonic::metadata::MetadataMap) -> Result<Principal, Status> {
        let header = meta.get("authorization").ok_or_else(|| {
            Status::unauthenticated(
                "missing authorization metadata: send `authorization: Bearer <token>`",
            )
        })?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization metadata is not valid text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("the authorization metadata must be `Bearer <token>`")
            })?
            .trim();
        let principal = self
            .by_hash
            .get(&hash_token(token))
            .ok_or_else(|| Status::unauthenticated("unknown token"))?;
        // The RPC's span (see the server's gRPC layer) names the tenant.
        tracing::Span::current().record("tenant", principal.tenant.as_str());
        Ok(principal.clone())
    }
}

/// The fixed tokens of `sagaflow dev`, for tenant `demo`.
pub fn dev_tokens() -> Vec<TokenEntry> {
    [
        ("dev-crm", Role::Crm),
        ("dev-operator", Role::Operator),
        ("dev-admin", Role::Admin),
    ]
    .into_iter()
    .map(|(t, role)| TokenEntry {
        name: t.to_owned(),
        tenant: "demo".into(),
        role,
        sha256: hash_token(t),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    fn meta(v: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", v.parse().unwrap());
        m
    }

    #[test]
    fn tokens_map_to_principals_and_roles_nest() {
        let auth = Authenticator::new(&dev_tokens()).unwrap();
        let p = auth
            .authorize(&meta("Bearer dev-operator"), Role::Crm)
            .unwrap();
        assert_eq!(
            (p.name.as_str(), p.tenant.as_str(), p.role),
            ("dev-operator", "demo", Role::Operator)
        );
        assert_eq!(
            auth.authorize(&meta("Bearer dev-crm"), Role::Operator)
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            auth.authorize(&meta("Bearer nope"), Role::Crm)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            auth.authorize(&meta("dev-crm"), Role::Crm)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            auth.authorize(&MetadataMap::new(), Role::Crm)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn malformed_hashes_are_refused() {
        let mut t = dev_tokens();
        t[0].sha256 = "abc".into();
        assert!(
            Authenticator::new(&t)
                .unwrap_err()
                .contains("auth.tokens[0]")
        );
    }
}
