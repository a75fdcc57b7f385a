//! The `radius.*` step handlers. They read the run's context (the field
//! names are listed in `docs/radius.md`), call [`RadiusRepo`] and
//! [`DynAuthClient`], and are idempotent on the step's key: account writes
//! replace what a replay wrote, the generated password is derived from the
//! key, and CoA / Disconnect treat "no such session" as done.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use ipnet::{Ipv4Net, Ipv6Net};
use sagaflow_engine::handler::{
    CallKind, Registry, StepError, StepHandler, StepOutput, StepRequest,
};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    Account, DeleteScope, DynAuthClient, DynAuthKind, DynAuthRequest, Error, ErrorCause, Owner,
    RadiusConfig, RadiusRepo, RegisteredNas, Session,
};
use crate::handlers::{HANDLERS, Run};

/// The context fields the handlers read.
mod field {
    pub const SUBSCRIBER_ID: &str = "/subscriber_id";
    pub const RADIUS: &str = "/radius";
    pub const PASSWORD: &str = "/radius_password";
    pub const PLAN: &str = "/plan";
    pub const PLAN_NAME: &str = "/plan/name";
    pub const IPV4: &str = "/ipv4_address";
    pub const IPV6_PREFIX: &str = "/ipv6_prefix";
    pub const NAS_IP: &str = "/nas/ip";
    pub const NAS_NAME: &str = "/nas/name";
    pub const NAS_COA_PORT: &str = "/nas/coa_port";
    pub const ACCT_SESSION_ID: &str = "/acct_session_id";
}

/// The operation a registered handler performs (its name is in
/// [`HANDLERS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    CreateAccount,
    DeleteAccount,
    Suspend,
    Resume,
    Coa,
    Disconnect,
}

struct Shared {
    repo: RadiusRepo,
    config: RadiusConfig,
    client: DynAuthClient,
}

struct RadiusHandler {
    shared: Arc<Shared>,
    op: Op,
}

/// Registers `radius.create_account`, `radius.delete_account`,
/// `radius.suspend`, `radius.resume`, `radius.coa` and `radius.disconnect`
/// on `repo` with `config`.
pub fn register_with(registry: &mut Registry, repo: RadiusRepo, config: RadiusConfig) {
    let shared = Arc::new(Shared {
        client: config.client(),
        repo,
        config,
    });
    for handler in HANDLERS {
        if let Run::Radius(op) = handler.run {
            registry.register(
                handler.name,
                Arc::new(RadiusHandler {
                    shared: shared.clone(),
                    op,
                }),
            );
        }
    }
}

/// The password of a subscriber whose input has none: HMAC-SHA256 keyed
/// with the RADIUS secret over the subscriber id and the step's idempotency
/// key, so every replay of the step writes the same password and nobody
/// without the secret can compute it. 24 hex digits (96 bits).
pub fn derive_password(secret: &str, subscriber: &str, idempotency_key: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length.
        return String::new();
    };
    for part in ["sagaflow/radius-password", subscriber, idempotency_key] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    mac.finalize().into_bytes()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn invalid(pointer: &str, what: &str, value: &Value) -> StepError {
    StepError::fatal(
        "invalid_context",
        format!("{pointer} must be {what}, not {value}"),
    )
}

/// An optional string field: absent and null are `None`.
fn optional_str<'a>(req: &'a StepRequest, pointer: &str) -> Result<Option<&'a str>, StepError> {
    match req.context.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(pointer, "a string", other)),
    }
}

/// The subscriber's RADIUS user name in the tenant's namespace
/// (`radius.username_format`).
fn username(config: &RadiusConfig, req: &StepRequest) -> Result<String, StepError> {
    let sub = req.context_str(field::SUBSCRIBER_ID)?;
    Ok(config.username(req.tenant_id.as_str(), sub))
}

/// The key of the step's forward call, also when compensating: the
/// account's ownership record names it.
fn forward_key(req: &StepRequest) -> String {
    format!("{}:{}", req.run_id, req.step)
}

/// `/plan` as a string, or `/plan/name` when the plan is an object.
fn plan(req: &StepRequest) -> Result<&str, StepError> {
    match req.context.pointer(field::PLAN) {
        Some(Value::Object(_)) => req.context_str(field::PLAN_NAME),
        _ => req.context_str(field::PLAN),
    }
}

/// `/ipv4_address`, as an address (`10.0.0.7`) or a host prefix
/// (`10.0.0.7/32`).
fn ipv4(req: &StepRequest) -> Result<Option<Ipv4Addr>, StepError> {
    let Some(s) = optional_str(req, field::IPV4)? else {
        return Ok(None);
    };
    s.parse::<Ipv4Addr>()
        .or_else(|_| s.parse::<Ipv4Net>().map(|n| n.addr()))
        .map(Some)
        .map_err(|_| invalid(field::IPV4, "an IPv4 address", &json!(s)))
}

fn ipv6_prefix(req: &StepRequest) -> Result<Option<Ipv6Net>, StepError> {
    let Some(s) = optional_str(req, field::IPV6_PREFIX)? else {
        return Ok(None);
    };
    s.parse::<Ipv6Net>().map(Some).map_err(|_| {
        invalid(
            field::IPV6_PREFIX,
            "an IPv6 prefix such as 2001:db8::/56",
            &json!(s),
        )
    })
}

/// The NAS the run names (`/nas/name`, else `/nas/ip`), as registered for
/// the run's tenant in `radius_nas`: the request goes to the registered
/// address and port, never to one only the input gives. An unregistered NAS
/// fails the step for good.
async fn nas(repo: &RadiusRepo, req: &StepRequest) -> Result<RegisteredNas, StepError> {
    let name = optional_str(req, field::NAS_NAME)?;
    let ip = match optional_str(req, field::NAS_IP)? {
        None => None,
        Some(text) => Some(
            text.parse::<IpAddr>()
                .map_err(|_| invalid(field::NAS_IP, "an IP address", &json!(text)))?,
        ),
    };
    if name.is_none() && ip.is_none() {
        return Err(StepError::fatal(
            "invalid_context",
            format!(
                "the context has no string at {} or {}",
                field::NAS_NAME,
                field::NAS_IP
            ),
        ));
    }
    if let Some(v) = req.context.pointer(field::NAS_COA_PORT)
        && !v.is_null()
        && v.as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .is_none_or(|p| p == 0)
    {
        return Err(invalid(field::NAS_COA_PORT, "a UDP port number", v));
    }
    let tenant = req.tenant_id.as_str();
    repo.find_nas(tenant, name, ip).await?.ok_or_else(|| {
        let named = name.map_or_else(
            || ip.map(|i| i.to_string()).unwrap_or_default(),
            str::to_owned,
        );
        Error::UnknownNas(named).into()
    })
}

fn output(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> StepOutput {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl RadiusHandler {
    async fn create_account(&self, req: &StepRequest) -> Result<StepOutput, StepError> {
        let s = &self.shared;
        let username = username(&s.config, req)?;
        let given = optional_str(req, field::PASSWORD)?;
        let password = match given {
            Some(p) => p.to_owned(),
            None => derive_password(&s.config.secret, &username, &req.idempotency_key),
        };
        let account = Account {
            username,
            password,
            framed_ip: ipv4(req)?,
            delegated_prefix: ipv6_prefix(req)?,
            group: plan(req)?.to_owned(),
        };
        let created_by = forward_key(req);
        let owner = Owner {
            tenant_id: req.tenant_id.as_str(),
            subscriber_id: req.context_str(field::SUBSCRIBER_ID)?,
            created_by: &created_by,
        };
        s.repo.upsert_account(&account, &owner).await?;
        // `/radius/username` is what later steps (the CPE's PPPoE login)
        // read: the namespaced name, whatever the input said.
        let mut radius = match req.context.pointer(field::RADIUS) {
            Some(Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        };
        radius.insert("username".into(), json!(account.username));
        let mut out = output([
            ("radius_username", json!(account.username)),
            ("radius_group", json!(account.group)),
            ("radius", Value::Object(radius)),
        ]);
        if given.is_none() {
            out.insert("radius_password".into(), json!(account.password));
        }
        Ok(out)
    }

    /// Forward (deprovisioning): deletes the tenant's account. As the undo
    /// of `create_account`: deletes only the account that step created.
    async fn delete_account(&self, req: &StepRequest) -> Result<StepOutput, StepError> {
        let s = &self.shared;
        let tenant = req.tenant_id.as_str();
        let created_by = forward_key(req);
        let scope = match req.kind {
            CallKind::Forward => DeleteScope::Tenant(tenant),
            CallKind::Compensate => DeleteScope::CreatedBy {
                tenant_id: tenant,
                created_by: &created_by,
            },
        };
        let deleted = s
            .repo
            .delete_account(&username(&s.config, req)?, scope)
            .await?;
        Ok(output([("radius_account_deleted", json!(deleted))]))
    }

    async fn suspend(&self, req: &StepRequest) -> Result<StepOutput, StepError> {
        let s = &self.shared;
        let group = &s.config.suspended_group;
        s.repo
            .ensure_group_reply(group, &s.config.suspended_reply)
            .await?;
        s.repo
            .set_group(req.tenant_id.as_str(), &username(&s.config, req)?, group)
            .await?;
        Ok(output([("radius_group", json!(group))]))
    }

    async fn resume(&self, req: &StepRequest) -> Result<StepOutput, StepError> {
        let s = &self.shared;
        let group = plan(req)?;
        s.repo
            .set_group(req.tenant_id.as_str(), &username(&s.config, req)?, group)
            .await?;
        Ok(output([("radius_group", json!(group))]))
    }

    /// Sends a CoA-Request or Disconnect-Request for the subscriber's
    /// session. A NAK with Error-Cause 503 (Session-Context-Not-Found) means
    /// the subscriber has no session (or a replay already ended it): there
    /// is nothing to change, and the step is done.
    async fn dynauth(&self, req: &StepRequest, kind: DynAuthKind) -> Result<StepOutput, StepError> {
        let s = &self.shared;
        let username = username(&s.config, req)?;
        let registered = nas(&s.repo, req).await?;
        let nas = registered.coa_addr();
        let client = match &registered.secret {
            Some(secret) => {
                DynAuthClient::new(secret.as_bytes(), s.config.timeout(), s.config.retries)
            }
            None => s.client.clone(),
        };
        let filter_id = match kind {
            DynAuthKind::Coa => s.repo.current_group(&username).await?,
            DynAuthKind::Disconnect => None,
        };
        let request = DynAuthRequest {
            kind,
            session: Session {
                user_name: username.clone(),
                framed_ip: ipv4(req)?,
                acct_session_id: optional_str(req, field::ACCT_SESSION_ID)?.map(str::to_owned),
            },
            filter_id,
        };
        let result = match client.send(nas, &request, &req.cancel).await {
            Ok(_) => "ack",
            Err(Error::Nak {
                error_cause: Some(ErrorCause::SESSION_CONTEXT_NOT_FOUND),
                ..
            }) => "no_session",
            Err(e) => return Err(e.into()),
        };
        tracing::info!(%nas, %kind, user = %username, result, "dynamic authorization");
        let key = match kind {
            DynAuthKind::Coa => "radius_coa",
            DynAuthKind::Disconnect => "radius_disconnect",
        };
        Ok(output([(key, json!(result))]))
    }
}

#[async_trait]
impl StepHandler for RadiusHandler {
    async fn call(&self, req: StepRequest) -> Result<StepOutput, StepError> {
        match self.op {
            Op::CreateAccount => self.create_account(&req).await,
            Op::DeleteAccount => self.delete_account(&req).await,
            Op::Suspend => self.suspend(&req).await,
            Op::Resume => self.resume(&req).await,
            Op::Coa => self.dynauth(&req, DynAuthKind::Coa).await,
            Op::Disconnect => self.dynauth(&req, DynAuthKind::Disconnect).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_passwords_are_stable_per_key_and_differ_otherwise() {
        let a = derive_password("s", "sub-1", "run:create_radius_account");
        assert_eq!(a.len(), 24);
        assert_eq!(
            a,
            derive_password("s", "sub-1", "run:create_radius_account")
        );
        assert_ne!(
            a,
            derive_password("s", "sub-2", "run:create_radius_account")
        );
        assert_ne!(
            a,
            derive_password("s", "sub-1", "other:create_radius_account")
        );
        assert_ne!(
            a,
            derive_password("t", "sub-1", "run:create_radius_account")
        );
    }

    #[test]
    fn handler_names_are_the_documented_ones() {
        let names: Vec<_> = crate::handlers::names(crate::handlers::Domain::Radius).collect();
        assert_eq!(
            names,
            [
                "radius.create_account",
                "radius.delete_account",
                "radius.suspend",
                "radius.resume",
                "radius.coa",
                "radius.disconnect"
            ]
        );
    }
}
