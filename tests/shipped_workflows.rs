//! `sagaflow dev` (and `serve`, which loads them the same way) finds the
//! shipped workflows wherever it is started from: they are built into the
//! binary, and `--workflows` (`engine.workflows`) replaces them.
#![allow(clippy::unwrap_used)]

use std::io::BufRead;
use std::time::Duration;

/// Starts `sagaflow dev` in `cwd` with `args` added and returns the
/// workflows it says it loaded (deadline 60 s).
fn workflows_loaded(cwd: &std::path::Path, args: &[&str]) -> String {
    let db = format!("sqlite://{}", cwd.join("dev.db").display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .current_dir(cwd)
        .args(["dev", "--database-url", &db, "--grpc-addr", "127.0.0.1:0"])
        .args(["--http-addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("SAGAFLOW_CONFIG")
        .env_remove("SAGAFLOW_WORKFLOWS")
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let line = line.trim();
            if line.starts_with("workflows:") || line.starts_with("no workflows") {
                let _ = tx.send(line.to_owned());
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    line.unwrap()
}

#[test]
fn dev_finds_the_shipped_workflows_from_any_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let line = workflows_loaded(cwd.path(), &[]);
    for name in [
        "demo_saga",
        "provision_subscriber",
        "deprovision_subscriber",
        "suspend_subscriber",
        "reactivate_subscriber",
        "lifecycle_cleanup",
        "capacity_check",
    ] {
        assert!(line.contains(name), "{name} missing: {line}");
    }
    assert_eq!(
        line.matches(", ").count() + 1,
        sagaflow::workflows::SHIPPED.len(),
        "{line}"
    );

    // A directory of its own replaces them.
    let own = cwd.path().join("mine");
    std::fs::create_dir(&own).unwrap();
    std::fs::write(
        own.join("only.v1.toml"),
        include_str!("../workflows/demo_saga.v1.toml").replace("\"demo_saga\"", "\"only\""),
    )
    .unwrap();
    let line = workflows_loaded(cwd.path(), &["--workflows", own.to_str().unwrap()]);
    assert_eq!(line, "workflows: only");
}
