//! `sagaflow serve` refuses to start without the ONU/OLT, CPE and billing
//! endpoints (a replica on the built-in simulators would report subscribers
//! provisioned that nothing provisioned), naming the keys to set, unless the
//! simulators are asked for; and secrets come from `*_FILE` variables.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output};

/// `sagaflow serve` with a RADIUS secret of its own, on a PostgreSQL URL
/// nothing listens on, with `env` added.
fn serve(env: &[(&str, &str)]) -> Output {
    let mut cmd = common::serve_unreachable();
    cmd.env("SAGAFLOW_RADIUS_SECRET", "a-secret-of-our-own");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn serve_refuses_to_start_without_endpoints_or_simulators() {
    let out = serve(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for key in [
        "domain.onu.base_url",
        "domain.cpe.base_url",
        "domain.billing.base_url",
        "[domain.simulators] enabled = true",
    ] {
        assert!(err.contains(key), "{key} not named: {err}");
    }

    // One endpoint set: the other two are named.
    let out = serve(&[("SAGAFLOW_ONU_URL", "http://127.0.0.1:9/onu")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("domain.onu.base_url"), "{err}");
    assert!(
        err.contains("domain.cpe.base_url, domain.billing.base_url"),
        "{err}"
    );
}

#[test]
fn serve_starts_with_every_endpoint_or_with_simulators_asked_for() {
    // Past the check both ways: it then fails on the unreachable database,
    // another error (exit 1, naming the database).
    for env in [
        vec![("SAGAFLOW_SIMULATORS", "true")],
        vec![
            ("SAGAFLOW_ONU_URL", "http://127.0.0.1:9/onu"),
            ("SAGAFLOW_CPE_URL", "http://127.0.0.1:9/cpe"),
            ("SAGAFLOW_BILLING_URL", "http://127.0.0.1:9/billing"),
        ],
    ] {
        let out = serve(&env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{env:?}: {err}");
        assert!(!err.contains("base_url"), "{env:?}: {err}");
        assert!(err.contains("127.0.0.1:1"), "{env:?}: {err}");
    }
}

#[test]
fn secrets_come_from_files_and_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{value}\n")).unwrap();
        p.display().to_string()
    };
    let radius = write("radius", "radius-from-file");
    let password = write("db", "db-pass-from-file");
    let token = write("onu", "onu-token-from-file");
    let out = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["config", "print"])
        .env_remove("SAGAFLOW_CONFIG")
        .env_remove("SAGAFLOW_RADIUS_SECRET")
        .env("SAGAFLOW_RADIUS_SECRET_FILE", &radius)
        .env(
            "SAGAFLOW_DATABASE_URL",
            "postgres://app@db/sagaflow?sslmode=prefer&password=url-password",
        )
        .env("SAGAFLOW_DATABASE_PASSWORD_FILE", &password)
        .env(
            "SAGAFLOW_ONU_URL",
            "https://gw:basic-pass@olt.example.net/api",
        )
        .env("SAGAFLOW_ONU_TOKEN_FILE", &token)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for secret in [
        "radius-from-file",
        "db-pass-from-file",
        "onu-token-from-file",
        "url-password",
        "basic-pass",
    ] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    assert!(printed.contains("password=***"), "{printed}");
    assert!(printed.contains("olt.example.net"), "{printed}");

    // A variable and its file both set: refused.
    let out = serve(&[
        ("SAGAFLOW_SIMULATORS", "true"),
        ("SAGAFLOW_RADIUS_SECRET_FILE", &radius),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("both SAGAFLOW_RADIUS_SECRET and"), "{err}");
    // The file's value is the one used: serve gets past the RADIUS check
    // with it (the default would be refused).
    let out = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args([
            "serve",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/x",
        ])
        .env_remove("SAGAFLOW_CONFIG")
        .env_remove("SAGAFLOW_RADIUS_SECRET")
        .env("SAGAFLOW_RADIUS_SECRET_FILE", &radius)
        .env("SAGAFLOW_SIMULATORS", "true")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("radius.secret"), "{err}");

    // A file that cannot be read is named.
    let out = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["config", "print"])
        .env_remove("SAGAFLOW_CONFIG")
        .env("SAGAFLOW_NOTIFY_SECRET_FILE", "/nonexistent/notify")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SAGAFLOW_NOTIFY_SECRET_FILE") && err.contains("/nonexistent/notify"),
        "{err}"
    );
}
