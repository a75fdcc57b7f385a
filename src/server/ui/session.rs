//! Console sessions: sign-in with a token (checked by the API's own
//! authenticator), the session cookie (HttpOnly, SameSite=Strict, Secure
//! when the request came over TLS), the CSRF token every form carries, and
//! sign-out. Sessions live in this process's memory: a replica restart or
//! a different replica behind a balancer asks for the token again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use sagaflow_engine::api::auth::{Principal, Role};
use tonic::metadata::MetadataValue;

use super::UiState;
use super::layout;

/// The session cookie.
pub const SESSION_COOKIE: &str = "sagaflow_session";
/// The sign-in form's CSRF cookie (before there is a session).
pub const LOGIN_COOKIE: &str = "sagaflow_login";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// A session unused this long is gone.
const IDLE: Duration = Duration::from_secs(8 * 3600);
/// At most this many sessions per process; past it the oldest go first.
const MAX_SESSIONS: usize = 10_000;
/// The largest form the console accepts.
const MAX_FORM_BYTES: usize = 1 << 20;

struct Entry {
    token: String,
    principal: Principal,
    csrf: String,
    last_seen: Instant,
}

/// The signed-in sessions of this process.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
}

impl Sessions {
    fn insert(&self, token: String, principal: Principal) -> String {
        let id = random();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| e.last_seen.elapsed() < IDLE);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Entry {
                token,
                principal,
                csrf: random(),
                last_seen: Instant::now(),
            },
        );
        id
    }

    fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.get_mut(id)?;
        if entry.last_seen.elapsed() >= IDLE {
            map.remove(id);
            return None;
        }
        entry.last_seen = Instant::now();
        Some(Session {
            id: id.to_owned(),
            token: entry.token.clone(),
            principal: entry.principal.clone(),
            csrf: entry.csrf.clone(),
        })
    }

    fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// 244 random bits as hex.
fn random() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Equality that takes the same time wherever the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A signed-in operator.
#[derive(Clone)]
pub struct Session {
    id: String,
    token: String,
    pub principal: Principal,
    pub csrf: String,
}

impl Session {
    /// `msg` as an API request carrying this session's token, as the gRPC
    /// and JSON/HTTP transports carry theirs.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Ok(v) = MetadataValue::try_from(format!("Bearer {}", self.token)) {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    /// Whether to show run actions (the API decides whether they go through).
    pub fn can_act(&self) -> bool {
        self.principal.role >= Role::Operator
    }

    /// Whether to show schedule management.
    pub fn can_admin(&self) -> bool {
        self.principal.role >= Role::Admin
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached us over TLS (directly or through a proxy
/// that terminates it and says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if over_tls(headers) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Where an unsigned-in request goes: the sign-in page (htmx follows
/// `HX-Redirect`, an event stream gets a 401).
fn to_login(parts: &Parts) -> Response {
    if parts.headers.contains_key("hx-request") {
        return (
            StatusCode::UNAUTHORIZED,
            [("hx-redirect", "/ui/login")],
            "signed out",
        )
            .into_response();
    }
    if parts.uri.path().ends_with("/events") {
        return (StatusCode::UNAUTHORIZED, "signed out").into_response();
    }
    Redirect::to("/ui/login").into_response()
}

impl FromRequestParts<UiState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, Response> {
        cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|id| state.sessions.get(id))
            .ok_or_else(|| to_login(parts))
    }
}

/// A form's fields, in order.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// A POSTed console form from a signed-in session, its CSRF token checked:
/// a form without the session's token is refused with 403 before anything
/// else happens.
pub struct Posted {
    pub session: Session,
    pub fields: Fields,
}

impl FromRequest<UiState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &UiState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let body = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response())?;
        let fields = Fields::parse(&body);
        if !same(fields.get(CSRF_FIELD), &session.csrf) {
            return Err(csrf_refused(Some(&session)));
        }
        Ok(Self { session, fields })
    }
}

fn csrf_refused(session: Option<&Session>) -> Response {
    layout::message(
        session,
        StatusCode::FORBIDDEN,
        "Refused",
        "This form did not come from a console page of your session (its CSRF token is missing or wrong). Reload the page and try again.",
    )
}

/// `GET /ui/login`.
pub async fn login_page(headers: HeaderMap) -> Response {
    login_form(&headers, StatusCode::OK, None)
}

fn login_form(headers: &HeaderMap, status: StatusCode, error: Option<&str>) -> Response {
    let nonce = random();
    let body = html! {
        section.signin {
            h1 { "Sign in" }
            p.muted { "Use the API token you were given; its role decides what you can do here." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/ui/login" {
                input type="hidden" name=(CSRF_FIELD) value=(nonce);
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    let mut resp = layout::page(None, "Sign in", "", body);
    *resp.status_mut() = status;
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, LOGIN_COOKIE, &nonce, Some(600)),
    );
    resp
}

/// `POST /ui/login`: the token is checked by the API's authenticator; a
/// session starts and its cookie is set.
pub async fn login(State(state): State<UiState>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same(fields.get(CSRF_FIELD), expected) {
        return csrf_refused(None);
    }
    let token = fields.get("token");
    let mut meta = tonic::metadata::MetadataMap::new();
    let Ok(value) = MetadataValue::try_from(format!("Bearer {token}")) else {
        return login_form(&headers, StatusCode::UNAUTHORIZED, Some("unknown token"));
    };
    meta.insert("authorization", value);
    let principal = match state.auth.identify(&meta) {
        Ok(p) => p,
        Err(status) => {
            return login_form(&headers, StatusCode::UNAUTHORIZED, Some(status.message()));
        }
    };
    tracing::info!(actor = %principal.name, role = %principal.role, "console sign-in");
    let id = state.sessions.insert(token.to_owned(), principal);
    let mut resp = Redirect::to("/ui/runs").into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, &id, None),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, LOGIN_COOKIE, "", Some(0)),
    );
    resp
}

/// `POST /ui/logout`.
pub async fn logout(State(state): State<UiState>, headers: HeaderMap, posted: Posted) -> Response {
    state.sessions.remove(&posted.session.id);
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", Some(0)),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_and_compared_fully() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sagaflow_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
        assert_eq!(random().len(), 64);
    }
}
