//! `sagaflow serve` refuses to start with the example RADIUS shared secret
//! (it would sign CoA and Disconnect-Request with a secret anyone knows),
//! naming the setting to change; `sagaflow dev` keeps it.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;

/// `sagaflow serve` on a PostgreSQL URL nothing listens on, with `secret`
/// (unset: the default) in SAGAFLOW_RADIUS_SECRET and the simulators asked
/// for (the endpoints check is tests/serve_defaults.rs').
fn serve(secret: Option<&str>) -> Output {
    let mut cmd = common::serve_unreachable();
    cmd.env("SAGAFLOW_SIMULATORS", "true");
    if let Some(s) = secret {
        cmd.env("SAGAFLOW_RADIUS_SECRET", s);
    }
    cmd.output().unwrap()
}

#[test]
fn serve_refuses_the_default_radius_secret() {
    let out = serve(None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("radius.secret"), "{err}");
    assert!(err.contains("SAGAFLOW_RADIUS_SECRET"), "{err}");
    assert!(err.contains("sagaflow dev"), "{err}");

    // With a secret of its own it gets past the check (and then fails on
    // the unreachable database, which is another error).
    let out = serve(Some("a-secret-of-our-own"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("radius.secret"), "{err}");
}

#[test]
fn dev_keeps_the_default_radius_secret() {
    // Starts and prints its address (DevProcess waits for it).
    let dev = common::DevProcess::start();
    assert!(dev.server.starts_with("http://"));
}
