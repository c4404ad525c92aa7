//! `serve` against a PostgreSQL that accepts TLS connections only: a cluster of this test's own
//! (initdb in a temp dir, `hostssl` lines only for TCP), with a CA and a server certificate
//! made here by `openssl`. `require` and `verify-full` start; `verify-full` against another CA
//! and `disable` end at start with exit 2 and a message naming the cause; the password in the
//! URL appears in no output. Skipped, saying so, where PostgreSQL's server binaries or openssl
//! are missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bankconnect_sim::SessionScript;
use common::*;

const PASSWORD: &str = "hunter2-tls-secret";

/// PostgreSQL's server binaries (`initdb`, `postgres`), if installed.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command run as the `postgres` user when this test runs as root (PostgreSQL refuses root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn ok(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    ok(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA (`NAME.pem`, `NAME.key`) valid for two days.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

struct Cluster {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cluster accepting TCP connections over TLS only (and the test's own setup over its
/// Unix socket), its certificate signed by the CA `ca.pem` in its directory.
fn start_cluster(bin: &Path) -> Cluster {
    let dir = bankconnect_testkit::temp_dir("pg_tls");
    make_ca(&dir, "ca");
    make_ca(&dir, "other-ca");
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ],
    );
    let data = dir.join("data");
    if is_root() {
        ok(Command::new("chown").args(["-R", "postgres"]).arg(&dir));
    }
    ok(as_postgres(&bin.join("initdb"))
        .args(["-D"])
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--no-sync"]));
    let port = free_port();
    let conf = format!(
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{d}'\n\
         ssl = on\nssl_cert_file = '{d}/server.pem'\nssl_key_file = '{d}/server.key'\nfsync = off\n",
        d = dir.display()
    );
    let mut postgresql_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    postgresql_conf.push_str(&conf);
    std::fs::write(data.join("postgresql.conf"), postgresql_conf).unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    if is_root() {
        ok(Command::new("chown").args(["-R", "postgres"]).arg(&dir));
        ok(Command::new("chmod").arg("600").arg(dir.join("server.key")));
    }
    let child = as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cluster = Cluster { child, dir, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = as_postgres(&bin.join("pg_isready"))
            .args(["-h"])
            .arg(&cluster.dir)
            .args(["-p", &port.to_string()])
            .output()
            .is_ok_and(|o| o.status.success());
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "the test cluster did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(as_postgres(&bin.join("psql"))
        .args(["-h"])
        .arg(&cluster.dir)
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
        ])
        .arg(format!("ALTER USER postgres PASSWORD '{PASSWORD}'")));
    cluster
}

/// `serve` on this store: `Ok(())` once it listens (then stopped), or its exit code and output.
fn serve(sim: &Sim, store: &str) -> Result<String, (i32, String)> {
    let mut child = bankconnect(
        Some(&sim.sim),
        &["serve", "--listen", "127.0.0.1:0", "--store", store],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let listening = bankconnect_testkit::process::listening_line(child.stdout.take().unwrap());
    if listening.is_ok() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve neither listened nor ended within 30 s (a hang)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = errors.join().unwrap();
    assert!(!text.contains(PASSWORD), "the password was printed: {text}");
    match listening {
        Ok(url) => {
            assert!(!url.contains(PASSWORD));
            Ok(text)
        }
        Err(line) => {
            let line = line.unwrap_or_default();
            assert!(!line.contains(PASSWORD), "the password was printed: {line}");
            Err((status.code().unwrap_or(-1), format!("{line}{text}")))
        }
    }
}

#[test]
fn serve_speaks_tls_to_postgresql_as_libpq_modes_say() {
    let Some(bin) = pg_bin() else {
        eprintln!("postgres_tls: SKIPPED (no initdb/postgres under /usr/lib/postgresql)");
        return;
    };
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("postgres_tls: SKIPPED (no openssl to make certificates)");
        return;
    }
    let cluster = start_cluster(&bin);
    let sim = sim(vec![SessionScript::new("t1")]);
    let dir = cluster.dir.display().to_string();
    let url = |host: &str, query: &str| {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/postgres?{query}",
            cluster.port
        )
    };

    // TLS, the certificate not verified.
    let logs = serve(&sim, &url("127.0.0.1", "sslmode=require")).expect("require starts");
    assert!(
        logs.contains("postgres:***@"),
        "the URL is shown redacted: {logs}"
    );
    // Verified: the chain to our CA and the host name.
    serve(
        &sim,
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={dir}/ca.pem"),
        ),
    )
    .expect("verify-full against the right CA starts");
    serve(
        &sim,
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={dir}/ca.pem"),
        ),
    )
    .expect("verify-ca starts");

    // Another CA: refused at start, naming the certificate.
    let (code, text) = serve(
        &sim,
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={dir}/other-ca.pem"),
        ),
    )
    .expect_err("verify-full against another CA must not start");
    assert_eq!(code, 2, "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    // The right CA, a name the certificate does not hold (it names localhost only).
    let (code, text) = serve(
        &sim,
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={dir}/ca.pem"),
        ),
    )
    .expect_err("a name the certificate does not hold must not start");
    assert_eq!(code, 2, "{text}");

    // No TLS: the server refuses, and serve says so.
    let (code, text) = serve(&sim, &url("127.0.0.1", "sslmode=disable"))
        .expect_err("disable must not start against a TLS-only server");
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("pg_hba") || text.contains("no encryption") || text.contains("SSL"),
        "{text}"
    );
    // A mode libpq does not have.
    let (code, text) = serve(&sim, &url("127.0.0.1", "sslmode=sometimes")).expect_err("bad mode");
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("verify-full"), "{text}");
}
