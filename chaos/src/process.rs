//! `sagaflow serve` processes: started from a configuration file, found by
//! the addresses they print, killed, paused and resumed with signals, and
//! read through their logs and `/metrics`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{ChaosError, Result};

/// A token of the harness: `(token, role)`; every scenario's tenant is
/// [`TENANT`].
pub const TOKENS: [(&str, &str); 2] = [("chaos-crm", "crm"), ("chaos-operator", "operator")];
pub const TENANT: &str = "chaos";
/// The size of the engines' second pool, the executor's own (claim,
/// checkpoints, lease renewal), beside the pool `EngineConfig::new` sizes.
pub const HOT_POOL: u32 = 4;
/// The API reads' pool of every engine the harness starts.
pub const API_POOL: u32 = 4;
pub const OPERATOR: &str = "chaos-operator";

/// The configuration file of one engine, as `sagaflow serve` reads it.
#[derive(Debug, Clone, Serialize)]
pub struct EngineConfig {
    pub database: toml::Table,
    pub grpc: toml::Table,
    pub http: toml::Table,
    pub engine: toml::Table,
    pub schedules: toml::Table,
    pub auth: toml::Table,
    /// The ONU, CPE and billing endpoints and address pools; the
    /// simulators' own settings are left out (the engine runs none).
    pub domain: sagaflow_steps::DomainConfig,
}

/// The file's text: `config` without the simulators' own settings. A
/// scenario that calls no ONU/CPE/billing system sets no endpoints; its
/// engine then asks for the built-in simulators explicitly, as `serve`
/// requires.
fn render(config: &EngineConfig) -> Result<String, toml::ser::Error> {
    let mut value = toml::Table::try_from(config)?;
    if let Some(toml::Value::Table(d)) = value.get_mut("domain") {
        d.remove("simulators");
        if !d.contains_key("onu") {
            let mut on = toml::Table::new();
            on.insert("enabled".into(), true.into());
            d.insert("simulators".into(), on.into());
        }
    }
    toml::to_string(&value)
}

impl EngineConfig {
    /// An engine on `database_url` with the workflows of `workflows`,
    /// listening on free ports, scheduler off.
    pub fn new(database_url: &str, workflows: &Path, lease_ms: u64, pool: u32) -> Self {
        let table = |pairs: Vec<(&str, toml::Value)>| -> toml::Table {
            pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
        };
        let tokens: Vec<toml::Value> = TOKENS
            .iter()
            .map(|(token, role)| {
                toml::Value::Table(table(vec![
                    ("name", (*token).into()),
                    ("tenant", TENANT.into()),
                    ("role", (*role).into()),
                    (
                        "sha256",
                        sagaflow_engine::api::auth::hash_token(token).into(),
                    ),
                ]))
            })
            .collect();
        Self {
            database: table(vec![
                ("url", database_url.into()),
                ("max_connections", i64::from(pool).into()),
                ("hot_connections", i64::from(HOT_POOL).into()),
                ("api_connections", i64::from(API_POOL).into()),
            ]),
            grpc: table(vec![("addr", "127.0.0.1:0".into())]),
            http: table(vec![
                ("addr", "127.0.0.1:0".into()),
                ("gauge_refresh_ms", 1_000.into()),
            ]),
            engine: table(vec![
                ("workflows", workflows.display().to_string().into()),
                ("lease_ms", (lease_ms as i64).into()),
                ("poll_ms", 50.into()),
                ("shutdown_grace_ms", 1_000.into()),
            ]),
            schedules: table(vec![("enabled", false.into())]),
            auth: table(vec![("tokens", toml::Value::Array(tokens))]),
            domain: sagaflow_steps::DomainConfig::default(),
        }
    }

    /// Writes the file `dir/name.toml`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let text =
            render(self).map_err(|e| ChaosError::Setup(format!("engine configuration: {e}")))?;
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).map_err(ChaosError::io(path.display().to_string()))?;
        Ok(path)
    }
}

/// A running `sagaflow serve`. Dropping it kills the process.
#[derive(Debug)]
pub struct Engine {
    pub name: String,
    child: Child,
    /// `http://host:port` of its gRPC server.
    pub grpc: String,
    pub http: SocketAddr,
    pub log: PathBuf,
}

impl Engine {
    /// Starts `bin serve` with `config` as replica `name`, logging to
    /// `log`, and waits (deadline 60 s) until it prints its addresses.
    pub async fn start(bin: &Path, config: &Path, name: &str, log: &Path) -> Result<Self> {
        let err = |message: String| ChaosError::Engine {
            name: name.to_owned(),
            message,
        };
        let file = std::fs::File::create(log).map_err(ChaosError::io(log.display().to_string()))?;
        let child = Command::new(bin)
            .arg("serve")
            .args(["--owner", name])
            .env("SAGAFLOW_CONFIG", config)
            .env("SAGAFLOW_RADIUS_SECRET", "chaos-radius-secret")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| err(format!("cannot start {}: {e}", bin.display())))?;
        let mut engine = Engine {
            name: name.to_owned(),
            child,
            grpc: String::new(),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let grpc = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("gRPC").map(|a| a.trim().to_owned()));
            let http = text.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("HTTP  http://")
                    .and_then(|a| a.split_whitespace().next())
                    .and_then(|a| a.parse::<SocketAddr>().ok())
            });
            if let (Some(g), Some(h)) = (grpc, http) {
                engine.grpc = format!("http://{g}");
                engine.http = h;
                return Ok(engine);
            }
            if let Ok(Some(status)) = engine.child.try_wait() {
                return Err(err(format!("exited at start ({status}): {}", tail(&text))));
            }
            if Instant::now() > deadline {
                return Err(err(format!("no addresses after 60 s: {}", tail(&text))));
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval (loop has a deadline)
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) with kill(1).
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .map_err(ChaosError::io("kill"))?;
        if status.success() {
            Ok(())
        } else {
            Err(ChaosError::Engine {
                name: self.name.clone(),
                message: format!("kill -{signal} failed: {status}"),
            })
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The body of `GET /metrics`.
    pub async fn metrics(&self) -> Result<String> {
        http_get(self.http, "/metrics").await
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A plain HTTP/1.0 GET; the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let io = ChaosError::io(format!("GET http://{addr}{path}"));
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| ChaosError::Timeout(format!("GET http://{addr}{path}")))?
        .map_err(io)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// The sum of a counter over all its label sets in a Prometheus text body.
pub fn counter_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Panics in the logs of `dir` (every `*.log`), not counting lines that
/// contain `expected` (a poison step's own panics). Returns (unexpected,
/// expected).
pub fn panics_in_logs(dir: &Path, expected: &str) -> (u64, u64) {
    let mut unexpected = 0;
    let mut planned = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        if e.path().extension().and_then(|x| x.to_str()) != Some("log") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        // The panic message follows the "panicked at" line.
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("panicked at") {
                let msg = lines.get(i + 1).copied().unwrap_or_default();
                if !expected.is_empty() && (l.contains(expected) || msg.contains(expected)) {
                    planned += 1;
                } else {
                    unexpected += 1;
                }
            }
        }
    }
    (unexpected, planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_over_labels() {
        let m = "# HELP x\nsagaflow_leases_lost_total{reason=\"fenced\"} 2\n\
                 sagaflow_leases_lost_total{reason=\"renewal\"} 3\nsagaflow_leases_lost_totally 9\n";
        assert_eq!(counter_sum(m, "sagaflow_leases_lost_total"), 5.0);
        assert_eq!(counter_sum(m, "missing"), 0.0);
    }
}
