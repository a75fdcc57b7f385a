//! The keys of the server's own sections: `[database]`, `[grpc]`, `[http]`,
//! `[engine]`, `[auth]`, `[log]` and `[schedules]`.

use super::{Config, Hide, Key, invalid, k, num};

/// The keys of the server sections, in the order of the file.
pub(super) const KEYS: &[Key] = &[
    k("database.url")
        .env("SAGAFLOW_DATABASE_URL")
        .text(text!(database.url))
        .secret(Hide::Password, |c| Some(&mut c.database.url)),
    k("database.password")
        .env("SAGAFLOW_DATABASE_PASSWORD")
        .text(|c, _, v| {
            c.database.password = Some(v.into());
            Ok(())
        })
        .secret(Hide::Whole, |c| c.database.password.as_mut()),
    k("database.max_connections")
        .env("SAGAFLOW_DATABASE_MAX_CONNECTIONS")
        .text(number!(database.max_connections)),
    k("database.hot_connections").text(number!(database.hot_connections)),
    k("database.acquire_timeout_ms").text(number!(database.acquire_timeout_ms)),
    k("database.statement_timeout_ms").text(number!(database.statement_timeout_ms)),
    k("database.hot_statement_timeout_ms").text(number!(database.hot_statement_timeout_ms)),
    k("database.api_connections").text(number!(database.api_connections)),
    k("database.api_statement_timeout_ms").text(number!(database.api_statement_timeout_ms)),
    k("grpc.addr")
        .env("SAGAFLOW_GRPC_ADDR")
        .text(text!(grpc.addr)),
    k("grpc.max_payload_bytes")
        .env("SAGAFLOW_GRPC_MAX_PAYLOAD_BYTES")
        .text(number!(grpc.max_payload_bytes)),
    k("grpc.max_watch_streams"),
    k("grpc.watch_poll_ms"),
    k("grpc.bulk_actions_per_second"),
    k("grpc.tls.cert"),
    k("grpc.tls.key"),
    k("grpc.tls.client_ca"),
    k("http.addr")
        .env("SAGAFLOW_HTTP_ADDR")
        .text(text!(http.addr)),
    k("http.gauge_refresh_ms"),
    k("engine.workflows")
        .env("SAGAFLOW_WORKFLOWS")
        .text(text!(engine.workflows)),
    k("engine.owner")
        .env("SAGAFLOW_OWNER")
        .text(text!(engine.owner)),
    k("engine.lease_ms")
        .env("SAGAFLOW_LEASE_MS")
        .text(number!(engine.lease_ms)),
    k("engine.poll_ms")
        .env("SAGAFLOW_POLL_MS")
        .text(number!(engine.poll_ms)),
    k("engine.max_in_flight")
        .env("SAGAFLOW_MAX_IN_FLIGHT")
        .text(number!(engine.max_in_flight)),
    k("engine.claim_batch"),
    k("engine.shutdown_grace_ms")
        .env("SAGAFLOW_SHUTDOWN_GRACE_MS")
        .text(number!(engine.shutdown_grace_ms)),
    k("auth.tokens")
        .env("SAGAFLOW_AUTH_TOKENS")
        .text(|c, key, v| {
            c.auth.tokens = serde_json::from_str(v).map_err(|e| {
                invalid(
                    key,
                    format!("a JSON array of {{name, tenant, role, sha256}} entries: {e}"),
                )
            })?;
            Ok(())
        }),
    k("log.format")
        .env("SAGAFLOW_LOG_FORMAT")
        .text(text!(log.format)),
    k("schedules.enabled"),
    k("schedules.tenant"),
    k("schedules.poll_ms"),
];
