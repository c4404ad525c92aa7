//! A PostgreSQL schema of one test's (or run's) own, created with `psql` and dropped afterwards,
//! and the store URL that points `serve` into it. Shared by the fleet tests, the chaos run and
//! the fleet benchmark.

/// `BANKCONNECT_TEST_POSTGRES`, when set and not empty.
pub fn postgres_url() -> Option<String> {
    std::env::var("BANKCONNECT_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A schema of its own, dropped (with everything in it) when this is dropped.
pub struct Schema {
    base: String,
    name: String,
}

impl Schema {
    /// Creates a schema named `PREFIX_PID_NANOS` on the server `base` names.
    pub fn create(base: &str, prefix: &str) -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        psql(base, &format!("CREATE SCHEMA {name}"))?;
        Ok(Self {
            base: base.to_owned(),
            name,
        })
    }

    /// The store URL for `serve --store`: the server's URL with this schema as search path.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base, self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = psql(
            &self.base,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// Runs one SQL text through `psql`.
pub fn psql(url: &str, sql: &str) -> Result<(), String> {
    let output = std::process::Command::new("psql")
        .args([url, "-Atqc", sql])
        .output()
        .map_err(|err| format!("cannot run psql: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
