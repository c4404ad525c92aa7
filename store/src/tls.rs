//! TLS to PostgreSQL with rustls, with libpq's `sslmode` and `sslrootcert` meanings:
//! `disable` (no TLS), `prefer` (the default: TLS when the server offers it, not verified),
//! `require` (TLS, not verified; verified against `sslrootcert` when one is given, as libpq
//! does), `verify-ca` (the chain verified against `sslrootcert`, or the bundled Mozilla roots)
//! and `verify-full` (that, and the host name). tokio-postgres itself knows only the first
//! three, so the URL's TLS options are read here and the rest handed to it.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::StoreError;

/// What is verified of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Nothing (`prefer`, `require`): encrypted, not authenticated.
    Nothing,
    /// The chain (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndHost,
}

/// A `postgres://` URL split into what tokio-postgres takes and the TLS settings.
pub(crate) struct PostgresUrl {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: MakeRustls,
}

fn bad(why: &str) -> StoreError {
    StoreError::BadUrl(format!("the postgres:// URL does not parse: {why}"))
}

/// `%XX` decoding of a query value.
fn decode(text: &str) -> Result<String, StoreError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(if b == b'+' { b' ' } else { b });
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("a value that is not UTF-8"))
}

impl PostgresUrl {
    /// Reads the URL: its `sslmode` and `sslrootcert` here (the certificate file read now), the
    /// rest by tokio-postgres; a password from `PGPASSWORD` when the URL has none.
    pub(crate) fn parse(url: &str, pgpassword: Option<String>) -> Result<Self, StoreError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = "prefer".to_owned();
        let mut root: Option<PathBuf> = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode = decode(value)?,
                "sslrootcert" => root = Some(PathBuf::from(decode(value)?)),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|_| bad("see libpq's postgres://USER[:PASSWORD]@HOST[:PORT]/DB?OPTIONS"))?;
        if config.get_password().is_none() {
            if let Some(password) = pgpassword.filter(|p| !p.is_empty()) {
                config.password(password);
            }
        }
        let (ssl, verify) = match mode.as_str() {
            "disable" => (SslMode::Disable, Verify::Nothing),
            "prefer" | "allow" => (SslMode::Prefer, Verify::Nothing),
            // libpq: with a root certificate, require verifies the chain.
            "require" if root.is_some() => (SslMode::Require, Verify::Chain),
            "require" => (SslMode::Require, Verify::Nothing),
            "verify-ca" => (SslMode::Require, Verify::Chain),
            "verify-full" => (SslMode::Require, Verify::ChainAndHost),
            _ => {
                return Err(StoreError::BadUrl(
                    "sslmode must be disable, prefer, require, verify-ca or verify-full".into(),
                ))
            }
        };
        config.ssl_mode(ssl);
        let roots = match &root {
            Some(path) => Some(read_roots(path)?),
            None => None,
        };
        Ok(Self {
            config,
            tls: MakeRustls::new(verify, roots)?,
        })
    }
}

fn read_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, StoreError> {
    let shown = path.display();
    let text = std::fs::read(path)
        .map_err(|err| StoreError::BadUrl(format!("cannot read sslrootcert {shown}: {err}")))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&text) {
        let cert = cert.map_err(|err| {
            StoreError::BadUrl(format!(
                "sslrootcert {shown} is not PEM certificates: {err}"
            ))
        })?;
        roots.add(cert).map_err(|err| {
            StoreError::BadUrl(format!(
                "sslrootcert {shown} holds a bad certificate: {err}"
            ))
        })?;
        found += 1;
    }
    if found == 0 {
        return Err(StoreError::BadUrl(format!(
            "sslrootcert {shown} holds no PEM certificate"
        )));
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes rustls connectors for tokio-postgres, one per connection.
#[derive(Clone)]
pub(crate) struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeRustls")
    }
}

impl MakeRustls {
    fn new(verify: Verify, roots: Option<rustls::RootCertStore>) -> Result<Self, StoreError> {
        let roots = Arc::new(roots.unwrap_or_else(|| {
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
        }));
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| StoreError::BadUrl(format!("TLS: {err}")))?;
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|err| StoreError::BadUrl(format!("TLS roots: {err}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Verify::ChainAndHost => webpki,
            Verify::Chain => Arc::new(ChainOnly(webpki)),
            Verify::Nothing => Arc::new(Unverified(provider())),
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root: encrypted, the certificate not checked (the
/// handshake's signatures still are).
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)),
            name,
        })
    }
}

/// One connection's handshake.
pub(crate) struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            self.connector
                .connect(self.name, stream)
                .await
                .map(|tls| RustlsStream(Box::new(tls)))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub(crate) struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.0.as_mut()).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.0.as_mut()).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding (the PLUS variants are optional for the client).
        ChannelBinding::none()
    }
}

/// The URL as it may be printed: `postgres://user:***@host/db` (no password, no query); a
/// `sqlite:PATH` as it is (a path holds no credentials).
pub fn redacted(url: &str) -> String {
    if url.starts_with("sqlite:") {
        return url.to_owned();
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL this store reads: nothing of it is shown, in case it is a secret.
        return "…".into();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let shown = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{user}:***@{host}")
            } else {
                format!("{user}@{host}")
            }
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{shown}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn passwords_never_show_in_a_redacted_url() {
        assert_eq!(
            redacted("postgres://alice:s3cr3t@db.example:5432/lenders?sslmode=require"),
            "postgres://alice:***@db.example:5432/lenders"
        );
        assert_eq!(redacted("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(redacted("postgresql://db/x"), "postgresql://db/x");
        assert_eq!(redacted("postgres://a:p%40ss@h/d"), "postgres://a:***@h/d");
        // A SQLite store is shown as its path (the log said `postgres://…` for it).
        assert_eq!(redacted("sqlite:/var/lib/bc.db"), "sqlite:/var/lib/bc.db");
        assert_eq!(redacted("hunter2"), "…");
    }

    #[test]
    fn sslmodes_are_libpqs() {
        for (mode, ssl) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::Require),
            ("verify-full", SslMode::Require),
        ] {
            let url = format!("postgres://u@127.0.0.1/db?sslmode={mode}&application_name=x");
            let parsed = PostgresUrl::parse(&url, None).unwrap();
            assert_eq!(parsed.config.get_ssl_mode(), ssl, "{mode}");
            assert_eq!(parsed.config.get_application_name(), Some("x"));
        }
        let err = PostgresUrl::parse("postgres://u@h/db?sslmode=bogus", None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("verify-full"), "{err}");
        let err = PostgresUrl::parse(
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
            None,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let parsed = PostgresUrl::parse("postgres://u@h/db", Some("from-env".into())).unwrap();
        assert_eq!(parsed.config.get_password(), Some(b"from-env".as_slice()));
        let parsed =
            PostgresUrl::parse("postgres://u:given@h/db", Some("from-env".into())).unwrap();
        assert_eq!(parsed.config.get_password(), Some(b"given".as_slice()));
    }
}
