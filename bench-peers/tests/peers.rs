//! The stand-in and both pollers over loopback: every session takes exactly three polls, and
//! wrong credentials end in an error, not a hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use bankconnect_bench_peers::standin::{self, Credentials, API_PATH};
use bankconnect_bench_peers::{poll_async, poll_blocking, Ended, Target};

fn start_standin() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let credentials = Credentials {
        api_key: "k".into(),
        server_hash: "h".into(),
    };
    std::thread::spawn(move || standin::serve(listener, credentials));
    format!("http://{addr}{API_PATH}")
}

fn target(base: &str, api_key: &str) -> Target {
    Target {
        base: base.to_owned(),
        api_key: api_key.to_owned(),
        server_hash: "h".into(),
        interval: Duration::from_millis(5),
    }
}

fn sessions(prefix: &str) -> Vec<String> {
    (0..20).map(|n| format!("{prefix}-{n}")).collect()
}

fn check_completed(mut ended: Vec<Ended>, expected: &[String]) {
    ended.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(ended.len(), expected.len());
    for (ended, id) in ended.iter().zip(&expected) {
        assert_eq!(&ended.session_id, id);
        assert_eq!(ended.outcome, "completed", "{ended:?}");
        assert_eq!(ended.polls, 3, "{ended:?}");
        assert!(ended.line().contains(r#""outcome":"completed""#));
    }
}

#[test]
fn blocking_poller_takes_three_polls_per_session() {
    let base = start_standin();
    let ids = sessions("blocking");
    let mut ended = Vec::new();
    poll_blocking(&target(&base, "k"), ids.clone(), 4, |e| ended.push(e));
    check_completed(ended, &ids);
}

#[test]
fn async_poller_takes_three_polls_per_session() {
    let base = start_standin();
    let ids = sessions("async");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ended = Vec::new();
    runtime.block_on(poll_async(
        Arc::new(target(&base, "k")),
        ids.clone(),
        8,
        |e| ended.push(e),
    ));
    check_completed(ended, &ids);
}

#[test]
fn wrong_credentials_end_in_an_error() {
    let base = start_standin();
    let mut ended = Vec::new();
    poll_blocking(&target(&base, "wrong"), vec!["s".into()], 1, |e| {
        ended.push(e)
    });
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].outcome, "error");
    assert_eq!(ended[0].error.as_deref(), Some("http 403"));
}
