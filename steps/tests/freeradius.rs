//! The RADIUS handlers against a real FreeRADIUS 3.2 server (Debian's
//! `freeradius`, `freeradius-postgresql`, `freeradius-utils`): rlm_sql reads
//! the subscriber rows the handlers write in a fresh PostgreSQL database, and
//! FreeRADIUS's `coa` virtual server stands in for the NAS that receives
//! CoA-Request and Disconnect-Request. Run with
//! `scripts/freeradius-tests.sh` (or `cargo test -p sagaflow-steps
//! --features freeradius-tests --test freeradius` where FreeRADIUS is
//! installed).
#![cfg(feature = "freeradius-tests")]
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod radius_support;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use radius_support::*;
use sagaflow_engine::handler::CallKind;
use sagaflow_engine::ids::RunId;
use sagaflow_steps::radius::{
    DynAuthClient, DynAuthKind, Error, ErrorCause, RadiusConfig, RadiusRepo,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// The default client in FreeRADIUS's clients.conf: 127.0.0.1, this secret.
const SECRET: &str = "testing123";
const READY: &str = "Ready to process requests";
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The server's output, and a wake-up for whoever waits on it.
#[derive(Default)]
struct Log {
    text: Mutex<String>,
    changed: Notify,
}

/// A `freeradius -X` child process on a private copy of the Debian
/// configuration, killed when dropped.
struct FreeRadius {
    child: Child,
    log: Arc<Log>,
    auth_port: u16,
    /// The `coa` site as shipped (answers ACK).
    coa_port: u16,
    /// A copy of the `coa` site whose recv-coa rejects, with Error-Cause
    /// Administratively-Prohibited (answers NAK).
    coa_reject_port: u16,
    _dir: tempfile::TempDir,
}

fn free_udp_ports<const N: usize>() -> [u16; N] {
    // Held together so that the N ports differ.
    let sockets: Vec<_> = (0..N)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| sockets[i].local_addr().unwrap().port())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap()
}

fn run(cmd: &str, args: &[&str]) {
    let status = std::process::Command::new(cmd).args(args).status().unwrap();
    assert!(status.success(), "{cmd} {args:?}: {status}");
}

fn edit(path: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, f(text)).unwrap();
}

/// rlm_sql on the test's PostgreSQL database, with FreeRADIUS's own
/// queries for the postgresql dialect.
fn sql_module(pool: &PgPool) -> String {
    let o = pool.connect_options();
    let conninfo = format!(
        "host={} port={} user={} dbname={}",
        o.get_host(),
        o.get_port(),
        o.get_username(),
        o.get_database().unwrap()
    );
    format!(
        r#"sql {{
	dialect = "postgresql"
	driver = "rlm_sql_postgresql"
	radius_db = "{conninfo}"
	acct_table1 = "radacct"
	acct_table2 = "radacct"
	postauth_table = "radpostauth"
	authcheck_table = "radcheck"
	groupcheck_table = "radgroupcheck"
	authreply_table = "radreply"
	groupreply_table = "radgroupreply"
	usergroup_table = "radusergroup"
	delete_stale_sessions = yes
	read_clients = no
	client_table = "nas"
	group_attribute = "SQL-Group"
	pool {{
		start = 1
		min = 1
		max = 4
		spare = 1
		uses = 0
		retry_delay = 1
		lifetime = 0
		idle_timeout = 60
	}}
	$INCLUDE ${{modconfdir}}/${{.:name}}/main/${{dialect}}/queries.conf
}}
"#
    )
}

/// The default virtual server, reduced to PAP against rlm_sql on loopback.
fn default_site(auth_port: u16) -> String {
    format!(
        r#"server default {{
listen {{
	type = auth
	ipaddr = 127.0.0.1
	port = {auth_port}
}}
authorize {{
	preprocess
	sql
	pap
}}
authenticate {{
	Auth-Type PAP {{
		pap
	}}
}}
post-auth {{
	sql
	Post-Auth-Type REJECT {{
		sql
		attr_filter.access_reject
	}}
}}
}}
"#
    )
}

impl FreeRadius {
    /// Starts a server reading `pool`'s database; tries again on new ports
    /// if another process took one in between.
    async fn start(pool: &PgPool) -> Self {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(pool).await {
                Ok(server) => return server,
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("freeradius did not start:\n{log}"),
            }
        }
        panic!("freeradius could not bind its ports:\n{last}");
    }

    async fn try_start(pool: &PgPool) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let d_str = d.to_str().unwrap();
        run("cp", &["-a", "/etc/freeradius/3.0/.", d_str]);
        let [auth_port, coa_port, coa_reject_port] = free_udp_ports::<3>();

        for entry in std::fs::read_dir(d.join("sites-enabled")).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        // EAP needs the inner-tunnel site, which is not loaded here.
        std::fs::remove_file(d.join("mods-enabled/eap")).unwrap();
        std::fs::write(d.join("mods-enabled/sql"), sql_module(pool)).unwrap();
        std::fs::write(d.join("sites-enabled/default"), default_site(auth_port)).unwrap();
        let coa = std::fs::read_to_string(d.join("sites-available/coa")).unwrap();
        let on_loopback = |port: u16| {
            coa.replace("ipaddr = *", "ipaddr = 127.0.0.1")
                .replace("port = 3799", &format!("port = {port}"))
        };
        std::fs::write(d.join("sites-enabled/coa"), on_loopback(coa_port)).unwrap();
        let rejecting = on_loopback(coa_reject_port)
            .replace("virtual_server = coa", "virtual_server = coa_reject")
            .replace("server coa {", "server coa_reject {")
            .replace(
                "recv-coa {",
                "recv-coa {\n\t\tupdate reply {\n\t\t\tError-Cause := Administratively-Prohibited\n\t\t}\n\t\treject",
            );
        assert!(rejecting.contains("server coa_reject {") && rejecting.contains("\t\treject"));
        std::fs::write(d.join("sites-enabled/coa_reject"), rejecting).unwrap();
        edit(&d.join("radiusd.conf"), |conf| {
            // Answer Access-Reject at once, proxy nothing.
            let conf = conf
                .replace("reject_delay = 1", "reject_delay = 0")
                .replace("proxy_requests  = yes", "proxy_requests  = no");
            if is_root() {
                conf
            } else {
                // Without root the server cannot switch users: stay as is.
                conf.lines()
                    .filter(|l| !matches!(l.trim(), "user = freerad" | "group = freerad"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        });
        if is_root() {
            // The server reads its configuration as root, then runs as
            // freerad: give it the copy.
            run("chown", &["-R", "freerad:freerad", d_str]);
        }

        let mut child = Command::new("freeradius")
            .args(["-X", "-d", d_str])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("freeradius is not installed: run scripts/freeradius-tests.sh");
        let log = Arc::new(Log::default());
        collect(child.stdout.take().unwrap(), log.clone());
        collect(child.stderr.take().unwrap(), log.clone());
        let mut server = Self {
            child,
            log,
            auth_port,
            coa_port,
            coa_reject_port,
            _dir: dir,
        };
        let deadline = Instant::now() + START_DEADLINE;
        let log = server.log.clone();
        loop {
            let changed = log.changed.notified();
            if server.log().contains(READY) {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                // Let the readers drain what the process wrote.
                let _ = tokio::time::timeout(Duration::from_secs(2), changed).await;
                return Err(format!("exited with {status}:\n{}", server.log()));
            }
            assert!(
                Instant::now() < deadline,
                "freeradius not ready after {START_DEADLINE:?}:\n{}",
                server.log()
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
        }
    }

    fn log(&self) -> String {
        self.log.text.lock().unwrap().clone()
    }

    /// Waits until the server's output contains `needle`.
    async fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let changed = self.log.changed.notified();
            if self.log().contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server never logged {needle:?}:\n{}",
                self.log()
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
        }
    }

    /// Stops the server and waits for it, so its database connections are
    /// gone before the test database is dropped.
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn collect(stream: impl AsyncRead + Unpin + Send + 'static, log: Arc<Log>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            {
                let mut text = log.text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
            log.changed.notify_waiters();
        }
        log.changed.notify_waiters();
    });
}

/// What `radtest` got back: the reply's code and attributes.
#[derive(Debug)]
struct Reply {
    code: String,
    attributes: Vec<(String, String)>,
}

impl Reply {
    fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `radtest USER PASSWORD 127.0.0.1:PORT 0 testing123`.
async fn radtest(server: &FreeRadius, user: &str, password: &str) -> Reply {
    let out = Command::new("radtest")
        .args([
            user,
            password,
            &format!("127.0.0.1:{}", server.auth_port),
            "0",
            SECRET,
        ])
        .output()
        .await
        .expect("radtest is not installed: run scripts/freeradius-tests.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("Received "));
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| {
            panic!(
                "radtest got no answer:\n{stdout}\n{}\nserver:\n{}",
                String::from_utf8_lossy(&out.stderr),
                server.log()
            )
        })
        .to_owned();
    let attributes = lines
        .take_while(|l| l.starts_with('\t') || l.starts_with("  "))
        .filter_map(|l| l.trim().split_once(" = "))
        .map(|(n, v)| (n.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    Reply { code, attributes }
}

fn context(coa_port: u16) -> Value {
    json!({
        "subscriber_id": "sub-1",
        "plan": "gold",
        "ipv4_address": "100.64.0.7",
        "ipv6_prefix": "2001:db8:100::/56",
        "nas": {"ip": "127.0.0.1", "coa_port": coa_port},
    })
}

/// Registers FreeRADIUS's `coa` site on `port` as tenant `t1`'s NAS.
async fn register_nas(repo: &RadiusRepo, port: u16) {
    repo.register_nas("t1", "freeradius-coa", [127, 0, 0, 1].into(), port, None)
        .await
        .unwrap();
}

fn config() -> RadiusConfig {
    RadiusConfig {
        secret: SECRET.into(),
        timeout_ms: 300,
        retries: 2,
        ..RadiusConfig::default()
    }
}

/// Provisioned → Access-Accept with its addresses; suspended → Access-Accept
/// with the suspended group's Filter-Id (the walled garden); resumed → the
/// plain Access-Accept again; deleted → Access-Reject.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn freeradius_authenticates_what_the_handlers_write(pool: PgPool) {
    let server = FreeRadius::start(&pool).await;
    let r = registry(RadiusRepo::postgres(pool.clone()), config());
    let ctx = context(server.coa_port);
    let run = RunId::new();

    let password = create_account(&r, run, &ctx).await;
    let reply = radtest(&server, "sub-1@t1", &password).await;
    assert_eq!(reply.code, "Access-Accept", "{reply:?}");
    assert_eq!(reply.get("Framed-IP-Address"), Some("100.64.0.7"));
    assert_eq!(
        reply.get("Delegated-IPv6-Prefix"),
        Some("2001:db8:100::/56")
    );
    assert_eq!(reply.get("Filter-Id"), None);
    let wrong = radtest(&server, "sub-1@t1", "not-the-password").await;
    assert_eq!(wrong.code, "Access-Reject", "{wrong:?}");

    call(&r, "radius.suspend", run, "suspend_radius", &ctx)
        .await
        .unwrap();
    let reply = radtest(&server, "sub-1@t1", &password).await;
    assert_eq!(reply.code, "Access-Accept", "{reply:?}");
    assert_eq!(reply.get("Filter-Id"), Some("suspended"), "{reply:?}");
    assert_eq!(reply.get("Framed-IP-Address"), Some("100.64.0.7"));

    call(&r, "radius.resume", run, "resume_radius", &ctx)
        .await
        .unwrap();
    let reply = radtest(&server, "sub-1@t1", &password).await;
    assert_eq!(reply.code, "Access-Accept", "{reply:?}");
    assert_eq!(reply.get("Filter-Id"), None, "{reply:?}");

    call(
        &r,
        "radius.delete_account",
        run,
        "delete_radius_account",
        &ctx,
    )
    .await
    .unwrap();
    let reply = radtest(&server, "sub-1@t1", &password).await;
    assert_eq!(reply.code, "Access-Reject", "{reply:?}");
    server.stop().await;
}

/// FreeRADIUS's `coa` site, standing in for the NAS, ACKs the handlers'
/// CoA-Request and Disconnect-Request: both authenticators verified.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn the_coa_site_acks_coa_and_disconnect(pool: PgPool) {
    let server = FreeRadius::start(&pool).await;
    let repo = RadiusRepo::postgres(pool.clone());
    register_nas(&repo, server.coa_port).await;
    let r = registry(repo, config());
    let mut ctx = context(server.coa_port);
    ctx["acct_session_id"] = json!("sess-1");
    let run = RunId::new();
    create_and_suspend(&r, run, &ctx).await;

    let out = call(&r, "radius.coa", run, "coa", &ctx).await.unwrap();
    assert_eq!(out["radius_coa"], json!("ack"));
    server.wait_log("Sent CoA-ACK").await;
    let log = server.log();
    assert!(log.contains("Received CoA-Request"), "{log}");
    assert!(log.contains("Filter-Id = \"suspended\""), "{log}");
    assert!(log.contains("Acct-Session-Id = \"sess-1\""), "{log}");
    assert!(log.contains("Framed-IP-Address = 100.64.0.7"), "{log}");

    let out = call(&r, "radius.disconnect", run, "disconnect", &ctx)
        .await
        .unwrap();
    assert_eq!(out["radius_disconnect"], json!("ack"));
    server.wait_log("Sent Disconnect-ACK").await;
    assert!(!server.log().contains("Shared secret is incorrect"));
    server.stop().await;
}

/// With `reject` in recv-coa the site answers NAK, reported as an error
/// carrying the Error-Cause, and not retried.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_rejecting_coa_site_naks_with_its_error_cause(pool: PgPool) {
    let server = FreeRadius::start(&pool).await;
    let client = config().client();
    let nas = ([127, 0, 0, 1], server.coa_reject_port).into();
    for kind in [DynAuthKind::Coa, DynAuthKind::Disconnect] {
        let err = send(&client, nas, kind).await.0.unwrap_err();
        match &err {
            Error::Nak {
                error_cause,
                kind: k,
                ..
            } => {
                assert_eq!(*error_cause, Some(ErrorCause::ADMINISTRATIVELY_PROHIBITED));
                assert_eq!(*k, kind);
            }
            other => panic!("expected a NAK, got {other}"),
        }
        assert!(!err.is_retryable());
        assert!(
            err.to_string()
                .contains("with Error-Cause 501 (Administratively-Prohibited)"),
            "{err}"
        );
    }

    // Through the handler: a failed, non-retryable step naming the cause.
    let repo = RadiusRepo::postgres(pool.clone());
    register_nas(&repo, server.coa_reject_port).await;
    let r = registry(repo, config());
    let ctx = context(server.coa_reject_port);
    let err = call(&r, "radius.coa", RunId::new(), "coa", &ctx)
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.kind(), "radius_nak");
    assert!(err.to_string().contains("CoA-NAK"), "{err}");
    assert!(
        err.to_string().contains("Administratively-Prohibited"),
        "{err}"
    );
    server.stop().await;
}

/// FreeRADIUS, like any RFC 5176 NAS, silently drops a request whose
/// authenticator does not verify. The client gives up after its bounded
/// retransmissions and names the wrong secret as the likely cause.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_wrong_shared_secret_is_reported_and_not_retried_forever(pool: PgPool) {
    let server = FreeRadius::start(&pool).await;
    let client = DynAuthClient::new(b"not-the-secret", Duration::from_millis(200), 2);
    let nas = ([127, 0, 0, 1], server.coa_port).into();
    let (result, elapsed) = send(&client, nas, DynAuthKind::Disconnect).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, Error::NoResponse { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("wrong shared secret?"), "{err}");
    assert!(
        elapsed < client.max_wait() + Duration::from_secs(2),
        "{elapsed:?}"
    );
    // The server saw the request and blamed the secret.
    server.wait_log("Shared secret is incorrect").await;

    // Through the handler: the step fails within the configured bound.
    let repo = RadiusRepo::postgres(pool.clone());
    register_nas(&repo, server.coa_port).await;
    let r = registry(
        repo,
        RadiusConfig {
            secret: "not-the-secret".into(),
            ..config()
        },
    );
    let ctx = context(server.coa_port);
    let started = Instant::now();
    let err = call(&r, "radius.disconnect", RunId::new(), "disconnect", &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "radius_no_response");
    assert!(err.to_string().contains("wrong shared secret?"), "{err}");
    assert!(
        started.elapsed() < config().client().max_wait() + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

/// Two tenants with a subscriber `alice` each: the second tenant's
/// provisioning creates its account and is compensated (and undos whose
/// forward outcome is unknown run for both tenants' other runs); the first
/// tenant's `alice@acme` still gets Access-Accept with its attributes.
#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn another_tenants_compensation_leaves_the_account_authenticating(pool: PgPool) {
    let server = FreeRadius::start(&pool).await;
    let repo = RadiusRepo::postgres(pool.clone());
    let r = registry(repo.clone(), config());
    let ctx = json!({
        "subscriber_id": "alice",
        "plan": "gold",
        "ipv4_address": "100.64.0.7",
        "ipv6_prefix": "2001:db8:100::/56",
    });
    let step = "create_radius_account";
    let acme = RunId::new();
    let out = call_as(
        &r,
        "radius.create_account",
        "acme",
        (acme, step, CallKind::Forward),
        &ctx,
    )
    .await
    .unwrap();
    let password = out["radius_password"].as_str().unwrap().to_owned();
    let before = radtest(&server, "alice@acme", &password).await;
    assert_eq!(before.code, "Access-Accept", "{before:?}");
    assert_eq!(before.get("Framed-IP-Address"), Some("100.64.0.7"));

    let mut theirs = ctx.clone();
    theirs["ipv4_address"] = json!("100.64.9.9");
    let globex = RunId::new();
    let out = call_as(
        &r,
        "radius.create_account",
        "globex",
        (globex, step, CallKind::Forward),
        &theirs,
    )
    .await
    .unwrap();
    let globex_password = out["radius_password"].as_str().unwrap().to_owned();
    let reply = radtest(&server, "alice@globex", &globex_password).await;
    assert_eq!(reply.code, "Access-Accept", "{reply:?}");
    // globex's run is compensated; so are runs whose create never landed.
    for (tenant, run) in [
        ("globex", globex),
        ("globex", RunId::new()),
        ("acme", RunId::new()),
    ] {
        call_as(
            &r,
            "radius.delete_account",
            tenant,
            (run, step, CallKind::Compensate),
            &theirs,
        )
        .await
        .unwrap();
    }
    let reply = radtest(&server, "alice@globex", &globex_password).await;
    assert_eq!(reply.code, "Access-Reject", "{reply:?}");
    let after = radtest(&server, "alice@acme", &password).await;
    assert_eq!(after.code, "Access-Accept", "{after:?}");
    assert_eq!(after.attributes, before.attributes);
    assert_eq!(
        after.get("Delegated-IPv6-Prefix"),
        Some("2001:db8:100::/56")
    );
    server.stop().await;
}
