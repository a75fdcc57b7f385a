//! Databases of the scenarios: a fresh database on the shared server per
//! scenario, and a private throwaway cluster for the scenario that crashes
//! PostgreSQL (the shared server is never stopped).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::{ChaosError, Result};

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Connects a small pool (the harness's own reads).
pub async fn connect(url: &str) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?)
}

/// A database of its own for one scenario, dropped with [`ScratchDb::drop_db`].
#[derive(Debug)]
pub struct ScratchDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl ScratchDb {
    pub async fn create(admin_url: &str, scenario: &str) -> Result<Self> {
        let name = format!(
            "chaos_{}_{}",
            scenario.replace('-', "_"),
            uuid::Uuid::now_v7().simple()
        );
        let admin = connect(admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await?;
        admin.close().await;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name),
            name,
        })
    }

    /// Drops the database (engines must be stopped first).
    pub async fn drop_db(self) -> Result<()> {
        let admin = connect(&self.admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&admin)
        .await?;
        admin.close().await;
        Ok(())
    }
}

/// Where the PostgreSQL server binaries are: `PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` with an `initdb`, else `PATH`.
pub fn pg_bin_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// A throwaway PostgreSQL cluster in a temporary directory, on a free port,
/// trust authentication, user `postgres`. PostgreSQL refuses to run as
/// root, so as root its commands run as the `postgres` user (runuser).
#[derive(Debug)]
pub struct PrivateCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
    pub port: u16,
    pub log: PathBuf,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivateCluster {
    pub fn init() -> Result<Self> {
        let bin = pg_bin_dir().ok_or_else(|| {
            ChaosError::Cluster(
                "no initdb found (set PG_BIN to the PostgreSQL bin directory)".into(),
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("sagaflow-chaos-pg")
            .tempdir()
            .map_err(ChaosError::io("temporary directory"))?;
        let as_postgres = is_root();
        let port = free_port()?;
        let log = dir.path().join("postgres.log");
        let c = Self {
            bin,
            dir,
            as_postgres,
            port,
            log,
        };
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(c.dir.path())
                .status()
                .map_err(ChaosError::io("chown"))?
                .success();
            if !ok {
                return Err(ChaosError::Cluster(
                    "cannot hand the directory to postgres".into(),
                ));
            }
        }
        let data = c.data();
        c.pg(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-N"],
        )?;
        Ok(c)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(ChaosError::io(format!("{}", exe.display())))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ChaosError::Cluster(format!(
                "{tool} {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        let data = self.data();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.log.display().to_string();
        self.pg(
            "pg_ctl",
            &[
                "-D", &data, "-o", &opts, "-l", &log, "-w", "-t", "60", "start",
            ],
        )
    }

    /// `pg_ctl stop -m immediate`: a crash, as far as clients can tell.
    pub fn crash(&self) -> Result<()> {
        let data = self.data();
        self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(ChaosError::io("free port"))?;
    Ok(l.local_addr().map_err(ChaosError::io("free port"))?.port())
}

/// Polls `f` every `every` until it returns `Some`, or fails after
/// `limit` naming `what`.
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(ChaosError::Timeout(format!("{what} (after {limit:?})")));
        }
        tokio::time::sleep(every).await; // poll interval (loop has a deadline)
    }
}

/// Waits until every run of `tenant` is terminal (or `limit` passes) and
/// returns how many are not.
pub async fn wait_terminal(pool: &PgPool, tenant: &str, limit: Duration) -> Result<i64> {
    let deadline = Instant::now() + limit;
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE tenant_id = $1 \
             AND state NOT IN ('COMPLETED', 'COMPENSATED', 'CANCELLED', 'TERMINATED')",
        )
        .bind(tenant)
        .fetch_one(pool)
        .await?;
        if open == 0 || Instant::now() > deadline {
            return Ok(open);
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval (loop has a deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "y"),
            "postgres://u:p@h:1/y?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "z"), "postgres://h/z");
    }
}
