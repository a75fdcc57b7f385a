//! A real `sagaflow serve` replica for the tests that kill one: fast lease
//! and poll, free ports, the simulators asked for (no ONU/CPE/billing to
//! talk to), killed when the test ends however it ends.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Kills the replica when it is dropped.
pub struct ServeProcess(pub Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sagaflow [--config config] serve` on `url` with the workflows of
/// `workflows`, as replica `owner`.
pub fn spawn_serve(
    url: &str,
    workflows: &Path,
    owner: &str,
    config: Option<&Path>,
) -> ServeProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sagaflow"));
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    ServeProcess(
        cmd.args(["serve", "--database-url", url, "--workflows"])
            .arg(workflows)
            .args([
                "--lease-ms",
                "1000",
                "--poll-ms",
                "50",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--owner",
                owner,
            ])
            .env("RUST_LOG", "warn")
            .env("SAGAFLOW_RADIUS_SECRET", "replica-test-radius-secret")
            .env("SAGAFLOW_SIMULATORS", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the sagaflow binary"),
    )
}
