//! Deliveries to an `https://` target speak TLS and verify the receiver's certificate: a
//! receiver with a certificate no bundled root vouches for (self-signed, made here by
//! `openssl`) sees handshakes begin and never complete, and the attempts are recorded as
//! failed connections, never as delivered. Skipped, saying so, where `openssl` is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bankconnect_service::{DeliveryConfig, DeliverySchedule, ServiceConfig};
use bankconnect_sim::SessionScript;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS receiver: counts handshakes begun and completed; answers 200 to what completes.
struct TlsReceiver {
    url: String,
    begun: Arc<AtomicUsize>,
    completed: Arc<AtomicUsize>,
}

async fn tls_receiver(dir: &std::path::Path) -> Option<TlsReceiver> {
    let made = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .output();
    match made {
        Ok(output) if output.status.success() => {}
        _ => return None,
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/in", listener.local_addr().unwrap());
    let (begun, completed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (b, c) = (Arc::clone(&begun), Arc::clone(&completed));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, b, c) = (acceptor.clone(), Arc::clone(&b), Arc::clone(&c));
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                // A TLS record starts with 0x16 (handshake): counted once the client speaks.
                if socket.peek(&mut first).await.is_ok() && first[0] == 0x16 {
                    b.fetch_add(1, Ordering::SeqCst);
                }
                if let Ok(mut tls) = acceptor.accept(socket).await {
                    c.fetch_add(1, Ordering::SeqCst);
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    Some(TlsReceiver {
        url,
        begun,
        completed,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_target_is_spoken_tls_and_an_untrusted_certificate_is_refused() {
    let dir = bankconnect_testkit::temp_dir("service_delivery_tls_certs");
    let Some(receiver) = tls_receiver(&dir).await else {
        eprintln!("skipped: openssl is not installed (it makes the receiver's certificate)");
        return;
    };
    let config = ServiceConfig {
        delivery: Some(DeliveryConfig {
            url: receiver.url.clone(),
            secrets: vec![KEY.into()],
        }),
        delivery_schedule: DeliverySchedule::parse("0s,100ms,100ms").unwrap(),
        ..fast()
    };
    let sessions = vec![SessionScript::new("tls1").complete_after(Duration::from_millis(100))];
    let run = start("delivery_tls", sessions, config).await;
    let r = &run.router;
    let (status, _, _) = call(r, post("/v1/sessions", r#"{"session_id": "tls1"}"#)).await;
    assert_eq!(status, 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let record = loop {
        let (_, _, record) = call(r, get("/v1/sessions/tls1")).await;
        if record["delivery"]["state"] == "given_up" || std::time::Instant::now() > deadline {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record["delivery"]["state"], "given_up", "{record}");
    assert_eq!(record["delivery"]["attempts"], 3, "{record}");
    assert!(
        receiver.begun.load(Ordering::SeqCst) >= 3,
        "each attempt begins a TLS handshake"
    );
    assert_eq!(receiver.completed.load(Ordering::SeqCst), 0);
    let (_, _, page) = call(r, get("/v1/sessions/tls1/events?limit=100")).await;
    let attempts: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "delivery_attempt")
        .collect();
    assert_eq!(attempts.len(), 3, "{page}");
    for attempt in attempts {
        assert_eq!(attempt["error"], "connect", "{attempt}");
        assert!(attempt["status"].is_null(), "{attempt}");
    }
    run.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
