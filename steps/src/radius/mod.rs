//! RADIUS: the subscriber's account in FreeRADIUS's own SQL schema, and
//! Dynamic Authorization (RFC 5176 CoA-Request and Disconnect-Request) sent
//! to the subscriber's NAS.
//!
//! - [`RadiusRepo`] writes `radcheck` (Cleartext-Password), `radreply`
//!   (Framed-IP-Address, Delegated-IPv6-Prefix) and `radusergroup` (the plan
//!   group, or the suspended group) in the engine's database or in a
//!   configured one, so a FreeRADIUS server running rlm_sql on that database
//!   authenticates the subscriber.
//! - [`DynAuthClient`] sends CoA-Request / Disconnect-Request over UDP with
//!   the request authenticator and Message-Authenticator of RFC 5176 and
//!   RFC 3579, retransmits with a growing timeout, verifies the response
//!   authenticator and reports a NAK with its Error-Cause.
//! - [`register`] puts the handlers `radius.create_account`,
//!   `radius.delete_account`, `radius.suspend`, `radius.resume`,
//!   `radius.coa` and `radius.disconnect` into a registry.
//!
//! The context fields the handlers read, the groups and the configuration
//! keys are described in `docs/radius.md`.

mod account;
mod dynauth;
mod handlers;
mod model;
mod nas;
mod nas_registry;
mod repo;

use sagaflow_engine::handler::Registry;

pub use account::{Account, AccountRows, ReplyAttribute};
pub use dynauth::{
    DynAuthClient, DynAuthKind, DynAuthOutcome, DynAuthRequest, ErrorCause, Session,
    encode_response, message_authenticator, request_authenticator, response_authenticator,
    sign_request, verify_request, verify_response,
};
pub(crate) use handlers::Op;
pub use handlers::{derive_password, register_with};
pub use model::*;
pub use nas::{NasBehaviour, NasReply, NasSimulator, ReceivedRequest};
pub use nas_registry::RegisteredNas;
pub use repo::{AccountOwner, DeleteScope, Owner, RadiusRepo};

/// Registers the RADIUS handlers on the database of `deps`: the configured
/// `radius.database_url`, else the engine's PostgreSQL or SQLite pool. With
/// none of them, or an invalid configuration (logged), nothing is registered.
pub fn register(registry: &mut Registry, deps: &crate::Deps) {
    let config = &deps.radius;
    if let Err(e) = config.validate() {
        tracing::error!(error = %e, "RADIUS handlers not registered");
        return;
    }
    let repo = match &config.database_url {
        Some(url) => match RadiusRepo::connect_lazy(url) {
            Ok(repo) => repo.with_schema_check(),
            Err(e) => {
                tracing::error!(error = %e, "RADIUS handlers not registered");
                return;
            }
        },
        None => match (&deps.postgres, &deps.sqlite) {
            (Some(pool), _) => RadiusRepo::postgres(pool.clone()),
            (None, Some(pool)) => RadiusRepo::sqlite(pool.clone()),
            (None, None) => {
                tracing::debug!("no database for the RADIUS handlers; not registered");
                return;
            }
        },
    };
    register_with(registry, repo, config.clone());
}
