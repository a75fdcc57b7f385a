//! The operator console at `/ui` on the HTTP address: server-rendered HTML
//! (maud) with htmx for partial updates, its assets embedded in the binary.
//! Every read and every action calls the same API values as the gRPC server
//! and the JSON/HTTP API, with the signed-in token as the request's
//! `authorization`, so authentication, roles, audit and errors are theirs.
//!
//! Sign-in, sessions and CSRF are in `session.rs`; the page shell and
//! formatting in `layout.rs`; the runs list in `runs.rs`, the run page and
//! its live updates in `run.rs`, single and bulk actions in `actions.rs`,
//! schedules in `schedules.rs`, pools and subscribers in `lifecycle.rs`.

mod actions;
mod layout;
mod lifecycle;
mod run;
mod runs;
mod schedules;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sagaflow_engine::api::auth::Authenticator;

use crate::server::apis::Apis;
pub use session::{CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE};

/// What every console handler reads.
#[derive(Clone)]
pub struct UiState {
    apis: Apis,
    auth: Arc<Authenticator>,
    sessions: Arc<session::Sessions>,
}

/// The console's routes, under `/ui`.
pub fn router(apis: Apis, auth: Arc<Authenticator>) -> Router {
    let state = UiState {
        apis,
        auth,
        sessions: Arc::new(session::Sessions::default()),
    };
    let pages = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/runs", get(runs::page))
        .route("/ui/runs/counts", get(runs::counts))
        .route("/ui/runs/{id}", get(run::page))
        .route("/ui/runs/{id}/live", get(run::live))
        .route("/ui/runs/{id}/events", get(run::events))
        .route("/ui/runs/{id}/action", post(actions::act))
        .route("/ui/bulk", post(actions::bulk))
        .route("/ui/schedules", get(schedules::page))
        .route("/ui/schedules/{id}/{verb}", post(schedules::act))
        .route("/ui/pools", get(lifecycle::pools))
        .route("/ui/subscribers", get(lifecycle::subscriber))
        .layer(axum::middleware::map_response(page_headers))
        .with_state(state);
    Router::new()
        .route("/ui/assets/{name}", get(asset))
        .merge(pages)
}

/// Headers of every page: no caching of tenant data, no framing, scripts
/// and styles only from the console itself.
async fn page_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// htmx (0BSD, from the npm package `htmx.org`), the console's script and
/// style, with their version in the name so they can be cached for good.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx-2.0.11.min.js",
        "text/javascript",
        include_bytes!("assets/htmx-2.0.11.min.js"),
    ),
    (
        "console-1.js",
        "text/javascript",
        include_bytes!("assets/console.js"),
    ),
    (
        "console-1.css",
        "text/css",
        include_bytes!("assets/console.css"),
    ),
];

/// htmx as the package ships it gzipped (16 kB instead of 52 kB), for
/// browsers that accept gzip.
const HTMX_GZIP: &[u8] = include_bytes!("assets/htmx-2.0.11.min.js.gz");

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, mime, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let gzip = name.starts_with("htmx-")
        && headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut resp = (
        [
            (header::CONTENT_TYPE, *mime),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::VARY, "accept-encoding"),
        ],
        if gzip { HTMX_GZIP } else { *body },
    )
        .into_response();
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}
