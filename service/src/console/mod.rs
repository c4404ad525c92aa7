//! The operator console at `/ui` (docs/console.md): pages rendered here from the store, plain
//! forms for every action (each the same code path as its API call, in `crate::actions`), our
//! own stylesheet and one small script, all inside the binary.
//!
//! Login: a cookie that never holds the token: `ROLE.EXPIRES.MAC`, the MAC keyed by the
//! configured tokens themselves, so every replica sharing them honours it and changing a token
//! ends every login. A state-changing request needs that cookie, the page's CSRF token (a MAC of
//! the cookie) and no cross-site `Sec-Fetch-Site` or `Origin`.

mod html;
mod pages;

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bankconnect_webhook_verify::WebhookSecret;
use base64::Engine as _;

use crate::api::{App, Role};

/// How long a login lasts.
const LOGIN_FOR: Duration = Duration::from_secs(12 * 3600);
/// The login cookie's name.
const COOKIE: &str = "bc_console";
/// Largest form body read.
const MAX_FORM: usize = 16 * 1024;

/// What signs the console's logins and CSRF tokens.
pub(crate) struct ConsoleKeys {
    /// Always present (its material is never empty).
    key: Option<WebhookSecret>,
    /// Whether a token is configured (otherwise every visitor is admin, on loopback).
    login_needed: bool,
    /// The cookie is `Secure` (the public URL is https).
    secure: bool,
}

impl std::fmt::Debug for ConsoleKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleKeys").finish_non_exhaustive()
    }
}

impl ConsoleKeys {
    /// Keys from the tokens (so that every replica sharing them agrees), or random ones when
    /// there is no token.
    pub(crate) fn new(admin: Option<&str>, read: Option<&str>, public_https: bool) -> Self {
        let material = match admin {
            Some(admin) => {
                format!("bankconnect console\0{admin}\0{}", read.unwrap_or_default()).into_bytes()
            }
            None => random_bytes(),
        };
        let key = WebhookSecret::raw(material).ok();
        Self {
            key,
            login_needed: admin.is_some(),
            secure: public_https,
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        let mac = self
            .key
            .as_ref()
            .map(|key| key.hmac(parts))
            .unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
    }

    /// A login cookie's value for `role` until `expires` (Unix seconds).
    fn cookie(&self, role: Role, expires: u64) -> String {
        let role = role_char(role);
        let expires = expires.to_string();
        let mac = self.mac(&[b"login|", role.as_bytes(), b"|", expires.as_bytes()]);
        format!("{role}.{expires}.{mac}")
    }

    /// The login a cookie value names, if it is ours and not expired.
    fn login(&self, value: &str, now: SystemTime) -> Option<Login> {
        let mut parts = value.splitn(3, '.');
        let (role, expires, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let expires_at: u64 = expires.parse().ok()?;
        let role = match role {
            "a" => Role::Admin,
            "r" => Role::ReadOnly,
            _ => return None,
        };
        let expected = self.mac(&[
            b"login|",
            role_char(role).as_bytes(),
            b"|",
            expires.as_bytes(),
        ]);
        let same = WebhookSecret::raw(expected.into_bytes())
            .ok()?
            .matches(mac.as_bytes());
        let now_secs = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        (same && now_secs < expires_at).then(|| Login {
            role,
            csrf: self.mac(&[b"csrf|", value.as_bytes()]),
        })
    }
}

fn role_char(role: Role) -> &'static str {
    match role {
        Role::Admin => "a",
        Role::ReadOnly => "r",
    }
}

/// 32 bytes from the system's random source (only for a console without a token, on
/// loopback); the clock and process id if it cannot be read.
fn random_bytes() -> Vec<u8> {
    use std::io::Read;
    let mut bytes = vec![0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let seed = bankconnect_core::ClientSettings::seed_from(SystemTime::now())
            ^ u64::from(std::process::id());
        bytes = seed.to_le_bytes().repeat(4);
    }
    bytes
}

/// Who is looking, and the CSRF token of their pages.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) role: Role,
    pub(crate) csrf: String,
}

impl Login {
    pub(crate) fn can_act(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The console's routes, under `/ui`.
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/", get(pages::overview))
        .route("/ui/sessions", get(pages::sessions))
        .route("/ui/sessions/{id}", get(pages::session))
        .route("/ui/sessions/{id}/{action}", post(pages::session_action))
        .route("/ui/delivery", get(pages::delivery))
        .route("/ui/delivery/{action}", post(pages::delivery_action))
        .route("/ui/login", get(pages::login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/console.css", get(css))
        .route("/ui/assets/console.js", get(js))
        .layer(axum::middleware::from_fn(security_headers))
}

/// The headers of every response under `/ui`.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn css() -> Response {
    asset(
        include_str!("assets/console.css"),
        "text/css; charset=utf-8",
    )
}

async fn js() -> Response {
    asset(
        include_str!("assets/console.js"),
        "text/javascript; charset=utf-8",
    )
}

fn asset(text: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        text,
    )
        .into_response()
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The visitor's login: from the cookie, or (with no token configured) an admin login made
/// now, its cookie to set.
pub(crate) fn login_of(app: &App, headers: &HeaderMap) -> (Option<Login>, Option<String>) {
    let now = SystemTime::now();
    let keys = &app.console;
    if let Some(login) = cookie_value(headers).and_then(|value| keys.login(&value, now)) {
        return (Some(login), None);
    }
    if keys.login_needed {
        return (None, None);
    }
    let (cookie, set) = new_login(app, headers, Role::Admin);
    (keys.login(&cookie, now), Some(set))
}

/// A fresh login cookie for `role`: its value and its `Set-Cookie` header.
fn new_login(app: &App, headers: &HeaderMap, role: Role) -> (String, String) {
    let expires = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + LOGIN_FOR.as_secs();
    let value = app.console.cookie(role, expires);
    let header = format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LOGIN_FOR.as_secs(),
        if secure(app, headers) { "; Secure" } else { "" }
    );
    (value, header)
}

fn secure(app: &App, headers: &HeaderMap) -> bool {
    app.console.secure
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A form body's fields (bounded); the first value of each name wins.
pub(crate) async fn form(body: Body) -> Result<Vec<(String, String)>, Box<Response>> {
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        Box::new((StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response())
    })?;
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes).map_err(|_| {
        Box::new((StatusCode::BAD_REQUEST, "the form could not be read").into_response())
    })
}

pub(crate) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Whether a request comes from another site: `Sec-Fetch-Site: cross-site`, or an `Origin`
/// (other than `null`, which same-origin forms send under `no-referrer`) naming another host.
pub(crate) fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return true;
    }
    let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| *o != "null")
    else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    !origin_host.eq_ignore_ascii_case(host)
}

/// Whether the form carries this login's CSRF token (compared in constant time).
pub(crate) fn csrf_matches(login: &Login, fields: &[(String, String)]) -> bool {
    let given = field(fields, "csrf").unwrap_or_default();
    WebhookSecret::raw(login.csrf.clone().into_bytes())
        .is_ok_and(|expected| expected.matches(given.as_bytes()))
}

/// The checks of a state-changing request: a login that may act, the page's CSRF token, not
/// cross-site. Refusals are 403 and change nothing.
pub(crate) fn may_act(
    app: &App,
    headers: &HeaderMap,
    fields: &[(String, String)],
) -> Result<Login, Box<Response>> {
    let forbidden = |why: &str| Box::new((StatusCode::FORBIDDEN, why.to_owned()).into_response());
    if cross_site(headers) {
        return Err(forbidden("refused: a cross-site request"));
    }
    let now = SystemTime::now();
    let Some(login) = cookie_value(headers).and_then(|value| app.console.login(&value, now)) else {
        return Err(forbidden("refused: log in first"));
    };
    if !csrf_matches(&login, fields) {
        return Err(forbidden(
            "refused: the form's CSRF token is missing or wrong",
        ));
    }
    if !login.can_act() {
        return Err(forbidden(
            "refused: the read-only login may not change anything",
        ));
    }
    Ok(login)
}

async fn login(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    if cross_site(&headers) {
        return (StatusCode::FORBIDDEN, "refused: a cross-site request").into_response();
    }
    let fields = match form(body).await {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    let token = field(&fields, "token").unwrap_or_default().trim();
    match Role::of(&app, token).filter(|_| app.console.login_needed) {
        Some(role) => {
            let (_, set) = new_login(&app, &headers, role);
            tracing::info!(role = role_char(role), "console login");
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/ui".to_owned()),
                    (header::SET_COOKIE, set),
                ],
            )
                .into_response()
        }
        None => pages::login_page(StatusCode::UNAUTHORIZED, Some("That token is not valid.")),
    }
}

async fn logout(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let fields = match form(body).await {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    // A read-only login may log out too: only the CSRF token and the site are checked.
    let now = SystemTime::now();
    let login = cookie_value(&headers).and_then(|value| app.console.login(&value, now));
    let csrf_ok = login
        .as_ref()
        .is_some_and(|login| csrf_matches(login, &fields));
    if cross_site(&headers) || !csrf_ok {
        return (StatusCode::FORBIDDEN, "refused").into_response();
    }
    let clear = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/ui/login".to_owned()),
            (header::SET_COOKIE, clear),
        ],
    )
        .into_response()
}

/// A page for a visitor: rendered with their login, or sent to log in.
pub(crate) async fn with_login<F, Fut>(app: &App, headers: &HeaderMap, render: F) -> Response
where
    F: FnOnce(Login) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    match login_of(app, headers) {
        (Some(login), set) => {
            let mut response = render(login).await;
            if let Some(set) = set.and_then(|s| HeaderValue::from_str(&s).ok()) {
                response.headers_mut().append(header::SET_COOKIE, set);
            }
            response
        }
        (None, _) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/login")]).into_response(),
    }
}

/// The session id of a console path (percent-decoded by the router).
pub(crate) fn path_id(
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Option<bankconnect_core::SessionId> {
    path.ok()
        .and_then(|Path(id)| bankconnect_core::SessionId::new(&id).ok())
}

/// The query string's pairs.
pub(crate) fn query_pairs(query: &RawQuery) -> Vec<(String, String)> {
    query
        .0
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_login_is_signed_by_the_tokens_and_expires() {
        let keys = ConsoleKeys::new(Some("admin-token"), Some("reader"), false);
        let now = SystemTime::now();
        let later = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let cookie = keys.cookie(Role::ReadOnly, later);
        assert!(!cookie.contains("admin-token") && !cookie.contains("reader"));
        let login = keys.login(&cookie, now).unwrap();
        assert_eq!(login.role, Role::ReadOnly);
        // Another replica with the same tokens agrees; another token does not.
        assert!(ConsoleKeys::new(Some("admin-token"), Some("reader"), false)
            .login(&cookie, now)
            .is_some());
        assert!(ConsoleKeys::new(Some("rotated"), Some("reader"), false)
            .login(&cookie, now)
            .is_none());
        // Promoting oneself, or outliving the login, fails.
        let forged = cookie.replacen("r.", "a.", 1);
        assert!(keys.login(&forged, now).is_none());
        assert!(keys
            .login(&cookie, now + Duration::from_secs(120))
            .is_none());
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(!cross_site(&headers));
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!cross_site(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(!cross_site(&headers));
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(cross_site(&headers));
        let mut headers = HeaderMap::new();
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(cross_site(&headers));
    }
}
