//! The console at `/ui` through the router (docs/console.md): markup a person and a browser
//! rely on, status codes, logins, the 403s, the security headers, and hostile values rendered
//! as text.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bankconnect_service::ServiceConfig;
use bankconnect_sim::SessionScript;
use serde_json::Value;

mod support;
use support::*;

const ADMIN: &str = "console-admin-token-1";
const READER: &str = "console-reader-token-1";
const HOSTILE: &str = "\"><script>alert(1)</script>";

fn page_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn with_cookie(mut request: http::Request<Body>, cookie: &str) -> http::Request<Body> {
    request
        .headers_mut()
        .insert(http::header::COOKIE, cookie.parse().unwrap());
    request
}

fn form(path: &str, body: &str) -> http::Request<Body> {
    http::Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "console.test")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// The `name=value` of a response's login cookie.
fn cookie_of(headers: &http::HeaderMap) -> String {
    let set = headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("bc_console="))
        .expect("a login cookie");
    set.split(';').next().unwrap().to_owned()
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

async fn login(r: &Router, token: &str) -> String {
    let (status, headers, _) = call(r, form("/ui/login", &format!("token={token}"))).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/ui");
    cookie_of(&headers)
}

async fn wait_authorized(r: &Router, bearer: &str, id: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut request = get(&format!("/v1/sessions/{id}"));
        request
            .headers_mut()
            .insert("authorization", bearer.parse().unwrap());
        let (_, _, record) = call(r, request).await;
        if record["state"] == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never {want}: {record}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_page(r: &Router, path: &str, cookie: &str) -> (u16, http::HeaderMap, String) {
    let (status, headers, body) = call(r, with_cookie(get(path), cookie)).await;
    (status, headers, page_text(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_sees_the_pages_and_acts_through_forms() {
    let config = ServiceConfig {
        api_token: Some(ADMIN.into()),
        read_token: Some(READER.into()),
        ..fast()
    };
    let sessions = vec![
        SessionScript::new("c-done").complete_after(Duration::from_millis(100)),
        SessionScript::new("c-slow").complete_after(Duration::from_secs(600)),
    ];
    let run = start("console", sessions, config).await;
    let r = &run.router;
    let bearer = format!("Bearer {ADMIN}");
    for (id, reference) in [("c-done", HOSTILE), ("c-slow", "loan-7")] {
        let body = serde_json::json!({"session_id": id, "reference": reference}).to_string();
        let mut request = post("/v1/sessions", &body);
        request
            .headers_mut()
            .insert("authorization", bearer.parse().unwrap());
        let (status, _, _) = call(r, request).await;
        assert_eq!(status, 202);
    }

    // No login: sent to log in, no data.
    let (status, headers, body) = call(r, get("/ui/sessions")).await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (303, "/ui/login")
    );
    assert!(!page_text(&body).contains("c-slow"));
    let (status, headers, body) = call(r, get("/ui/login")).await;
    let body = page_text(&body);
    assert_eq!(status, 200);
    assert!(
        body.contains("<label for=\"token\">Token</label>") && body.contains(">Log in</button>")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let (status, _, _) = call(r, form("/ui/login", "token=wrong")).await;
    assert_eq!(status, 401);

    // The admin's login: a cookie that is not the token.
    let cookie = login(r, ADMIN).await;
    assert!(!cookie.contains(ADMIN));
    let (status, headers, _) = call(r, form("/ui/login", &format!("token={ADMIN}"))).await;
    assert_eq!(status, 303);
    let set = headers[http::header::SET_COOKIE].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(set.contains(part), "{set}");
    }

    let (status, headers, overview) = get_page(r, "/ui", &cookie).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(overview.matches("<h1>").count(), 1);
    for link in [
        ">Overview</a>",
        ">Sessions</a>",
        ">Delivery</a>",
        ">Log out</button>",
    ] {
        assert!(overview.contains(link), "{link}");
    }
    // The replicas with their last heartbeat (this one beat at start).
    assert!(overview.contains("(this one)"), "{overview}");
    assert!(overview.contains("heartbeat <time"), "{overview}");
    wait_authorized(r, &bearer, "c-done", "finished").await;

    // The sessions page: a table with its headers; the hostile reference is text.
    let (status, _, list) = get_page(r, "/ui/sessions", &cookie).await;
    assert_eq!(status, 200);
    for header in [
        "Session",
        "Reference",
        "State",
        "Outcome",
        "Delivery",
        "Added",
        "Updated",
    ] {
        assert!(
            list.contains(&format!("<th scope=\"col\">{header}</th>")),
            "{header}"
        );
    }
    for label in ["State", "Delivery", "Outcome", "Error code", "Search"] {
        assert!(list.contains(&format!("\">{label}</label>")), "{label}");
    }
    assert!(list.contains(">Filter</button>"));
    assert!(!list.contains("<script>alert(1)"), "unescaped: {list}");
    assert!(list.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(list.contains("<a href=\"/ui/sessions/c-slow\">c-slow</a>"));
    let (_, _, filtered) = get_page(r, "/ui/sessions?state=tracking", &cookie).await;
    assert!(filtered.contains("c-slow") && !filtered.contains("/ui/sessions/c-done\""));
    let (_, _, searched) = get_page(r, "/ui/sessions?q=loan-", &cookie).await;
    assert!(searched.contains("c-slow") && !searched.contains("/ui/sessions/c-done\""));
    let (status, _, _) = get_page(r, "/ui/sessions?state=bogus", &cookie).await;
    assert_eq!(status, 400);

    // A session's page: its sections and its buttons.
    let (status, _, done) = get_page(r, "/ui/sessions/c-done", &cookie).await;
    assert_eq!(status, 200);
    for heading in ["<h2>Outcome</h2>", "<h2>Delivery</h2>", "<h2>History</h2>"] {
        assert!(done.contains(heading), "{heading}");
    }
    assert!(
        done.contains("class=\"kind\">added</span>")
            && done.contains("class=\"kind\">outcome</span>")
    );
    assert!(!done.contains(">Poll now</button>"));
    let (_, _, slow) = get_page(r, "/ui/sessions/c-slow", &cookie).await;
    assert!(slow.contains(">Poll now</button>") && slow.contains(">Cancel</button>"));
    let csrf = csrf_of(&slow);

    // Poll now; then Cancel, which asks first.
    let (status, headers, _) = call(
        r,
        with_cookie(
            form("/ui/sessions/c-slow/poll", &format!("csrf={csrf}")),
            &cookie,
        ),
    )
    .await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (303, "/ui/sessions/c-slow?done=poll")
    );
    let (_, _, after) = get_page(r, "/ui/sessions/c-slow?done=poll", &cookie).await;
    assert!(after.contains("role=\"status\"") && after.contains("Poll asked for"));
    let (status, _, confirm) = call(
        r,
        with_cookie(
            form("/ui/sessions/c-slow/cancel", &format!("csrf={csrf}")),
            &cookie,
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(page_text(&confirm).contains(">Confirm</button>"));
    let (_, _, record) = call(r, {
        let mut request = get("/v1/sessions/c-slow");
        request
            .headers_mut()
            .insert("authorization", bearer.parse().unwrap());
        request
    })
    .await;
    assert_eq!(record["state"], "tracking", "asking is not cancelling");

    // Refusals: no CSRF token, a cross-site origin, no login.
    for (request, why) in [
        (
            with_cookie(form("/ui/sessions/c-slow/cancel", "confirm=1"), &cookie),
            "no csrf",
        ),
        (
            with_cookie(
                {
                    let mut request = form(
                        "/ui/sessions/c-slow/cancel",
                        &format!("csrf={csrf}&confirm=1"),
                    );
                    request
                        .headers_mut()
                        .insert("origin", "https://evil.example".parse().unwrap());
                    request
                },
                &cookie,
            ),
            "cross-site origin",
        ),
        (
            form(
                "/ui/sessions/c-slow/cancel",
                &format!("csrf={csrf}&confirm=1"),
            ),
            "no login",
        ),
    ] {
        let (status, _, _) = call(r, request).await;
        assert_eq!(status, 403, "{why}");
    }
    let (status, _, _) = call(
        r,
        with_cookie(
            form(
                "/ui/sessions/c-slow/cancel",
                &format!("csrf={csrf}&confirm=1"),
            ),
            &cookie,
        ),
    )
    .await;
    assert_eq!(status, 303);
    wait_authorized(r, &bearer, "c-slow", "cancelled").await;

    // The delivery page: the switch and a recovery preview.
    let (_, _, delivery) = get_page(r, "/ui/delivery", &cookie).await;
    for name in [
        ">Pause deliveries</button>",
        ">Preview</button>",
        ">Requeue</button>",
        ">Since</label>",
        ">Until</label>",
        "<legend>States</legend>",
    ] {
        assert!(delivery.contains(name), "{name}");
    }
    let csrf = csrf_of(&delivery);
    let (status, _, _) = call(
        r,
        with_cookie(form("/ui/delivery/pause", &format!("csrf={csrf}")), &cookie),
    )
    .await;
    assert_eq!(status, 303);
    let (_, _, paused) = get_page(r, "/ui/delivery?done=pause", &cookie).await;
    assert!(paused.contains(">Resume deliveries</button>") && paused.contains("Deliveries paused"));
    let (status, _, _) = call(
        r,
        with_cookie(
            form("/ui/delivery/resume", &format!("csrf={csrf}")),
            &cookie,
        ),
    )
    .await;
    assert_eq!(status, 303);

    // The read-only login: every page, no action button, and a forged action refused.
    let reader = login(r, READER).await;
    let (_, _, slow_ro) = get_page(r, "/ui/sessions/c-done", &reader).await;
    assert!(!slow_ro.contains(">Redeliver</button>") && !slow_ro.contains(">Cancel</button>"));
    let (_, _, delivery_ro) = get_page(r, "/ui/delivery", &reader).await;
    assert!(
        !delivery_ro.contains(">Pause deliveries</button>")
            && !delivery_ro.contains(">Requeue</button>")
    );
    assert!(delivery_ro.contains(">Preview</button>"));
    let reader_csrf = csrf_of(&delivery_ro);
    let (status, _, _) = call(
        r,
        with_cookie(
            form("/ui/delivery/pause", &format!("csrf={reader_csrf}")),
            &reader,
        ),
    )
    .await;
    assert_eq!(status, 403);
    let since =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(3600));
    let (status, _, preview) = call(
        r,
        with_cookie(
            form(
                "/ui/delivery/recover",
                &format!("csrf={reader_csrf}&since={since}&states=given_up&do=preview"),
            ),
            &reader,
        ),
    )
    .await;
    // No --deliver-to here: the preview says why nothing matches, and changes nothing.
    assert_eq!(status, 200);
    assert!(page_text(&preview).contains("role=\"status\""));

    // Log out ends the login in the browser.
    let (status, headers, _) = call(
        r,
        with_cookie(form("/ui/logout", &format!("csrf={csrf}")), &cookie),
    )
    .await;
    assert_eq!(status, 303);
    assert!(headers[http::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    // The assets come from the binary, with the same headers.
    let (status, headers, css) = call(r, get("/ui/assets/console.css")).await;
    assert_eq!(status, 200);
    assert!(page_text(&css).contains("prefers-color-scheme: dark"));
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_every_visitor_is_admin_on_loopback() {
    let run = start("console_open", vec![], fast()).await;
    let r = &run.router;
    let (status, headers, body) = call(r, get("/ui")).await;
    assert_eq!(status, 200);
    let cookie = cookie_of(&headers);
    let body = page_text(&body);
    assert!(body.contains("<h1>Overview</h1>"));
    let csrf = csrf_of(&body);
    let (status, _, _) = call(
        r,
        with_cookie(form("/ui/delivery/pause", &format!("csrf={csrf}")), &cookie),
    )
    .await;
    assert_eq!(status, 303);
    // Still no action without the page's CSRF token.
    let (status, _, _) = call(
        r,
        with_cookie(form("/ui/delivery/resume", "csrf=x"), &cookie),
    )
    .await;
    assert_eq!(status, 403);
    let (status, headers, _) = call(r, get("/ui/login")).await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (303, "/ui")
    );
    run.stop().await;
}
