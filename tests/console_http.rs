//! The operator console over plain HTTP against an in-process server on
//! PostgreSQL: sign-in and its cookies, CSRF on every form, roles enforced
//! by the API the console calls, actions that land in the run's history,
//! and the pages of each section. (The same in a real browser:
//! `tests/console_browser.rs`, `scripts/console-tests.sh`.)
#![allow(clippy::unwrap_used)]

mod common;

use common::console::{Console, cookie_pair};
use common::*;
use sagaflow_proto::v1 as pb;

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session(pool: sqlx::PgPool) {
    let t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let addr = t.server.http_addr;
    let anon = Console::new(addr);

    // Signed out: every page sends to the sign-in page.
    for path in ["/ui/runs", "/ui/pools", "/ui/schedules"] {
        let p = anon.get(path).await;
        assert_eq!((p.status, p.location()), (303, "/ui/login"), "{path}");
    }
    let p = anon.get("/ui").await;
    assert_eq!(p.status, 303);

    let login = anon.get("/ui/login").await;
    assert_eq!(login.status, 200);
    let nonce = login.csrf();
    let login_cookie = login.set_cookie("sagaflow_login").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(login_cookie.contains(attr), "{login_cookie}");
    }
    assert!(!login_cookie.contains("Secure"), "{login_cookie}");
    assert!(
        login.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );

    let mut c = Console::new(addr);
    c.cookies = vec![cookie_pair(&login_cookie)];
    // No CSRF token, or another one: refused before the token is looked at.
    for fields in [
        vec![("token", "operator-a")],
        vec![("csrf", "forged"), ("token", "operator-a")],
    ] {
        let p = c.post("/ui/login", &fields, &[]).await;
        assert_eq!(p.status, 403, "{}", p.text);
        assert!(p.set_cookie("sagaflow_session").is_none());
    }
    // A token the API does not know.
    let p = c
        .post("/ui/login", &[("csrf", &nonce), ("token", "nope")], &[])
        .await;
    assert_eq!(p.status, 401);
    assert!(p.text.contains("unknown token"), "{}", p.text);
    assert!(p.set_cookie("sagaflow_session").is_none());

    // Over TLS (a proxy that terminates it says so) the cookie is Secure.
    let p = c
        .post(
            "/ui/login",
            &[("csrf", &nonce), ("token", "operator-a")],
            &[("x-forwarded-proto", "https")],
        )
        .await;
    assert_eq!(p.status, 303);
    assert!(
        p.set_cookie("sagaflow_session")
            .unwrap()
            .contains("; Secure")
    );

    let p = c
        .post(
            "/ui/login",
            &[("csrf", &nonce), ("token", "operator-a")],
            &[],
        )
        .await;
    assert_eq!((p.status, p.location()), (303, "/ui/runs"));
    let session = p.set_cookie("sagaflow_session").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Secure"), "{session}");
    c.cookies = vec![cookie_pair(&session)];
    let runs = c.get("/ui/runs").await;
    assert_eq!(runs.status, 200);
    assert!(runs.text.contains("operator-a-user"), "{}", runs.text);
    assert_eq!(runs.headers["cache-control"], "no-store");

    // A forged session id is no session.
    let mut forged = Console::new(addr);
    forged.cookies = vec![format!("sagaflow_session={}", "0".repeat(64))];
    assert_eq!(forged.get("/ui/runs").await.status, 303);

    // Sign-out needs the token too, then the session is gone.
    let p = c.post("/ui/logout", &[], &[]).await;
    assert_eq!(p.status, 403);
    assert_eq!(c.get("/ui/runs").await.status, 200);
    let csrf = runs.csrf();
    let p = c.post("/ui/logout", &[("csrf", &csrf)], &[]).await;
    assert_eq!((p.status, p.location()), (303, "/ui/login"));
    assert!(
        p.set_cookie("sagaflow_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(c.get("/ui/runs").await.status, 303);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn actions_need_the_csrf_token_the_role_and_a_confirmation(pool: sqlx::PgPool) {
    let mut t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let addr = t.server.http_addr;
    let id = failed_run(&mut t.client, "crm-a").await;
    let path = format!("/ui/runs/{id}/action");

    // A crm token sees the run but no action, and a forged POST carrying
    // its valid CSRF token is refused by the API's role check.
    let crm = Console::sign_in(addr, "crm-a").await;
    let page = crm.get(&format!("/ui/runs/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("FAILED"));
    assert!(!page.text.contains("data-action="), "crm sees actions");
    let csrf = crm.csrf().await;
    for action in ["retry", "compensate", "cancel", "skip", "rewind"] {
        let p = crm
            .post(
                &path,
                &[
                    ("csrf", &csrf),
                    ("action", action),
                    ("reason", "forged"),
                    ("confirm", "yes"),
                    ("step", "configure"),
                    ("to_step", "reserve"),
                ],
                &[],
            )
            .await;
        assert_eq!(p.status, 403, "{action}: {}", p.text);
        assert!(p.text.contains("PERMISSION_DENIED"), "{}", p.text);
    }

    let op = Console::sign_in(addr, "operator-a").await;
    let page = op.get(&format!("/ui/runs/{id}")).await;
    for action in ["retry", "compensate", "skip", "cancel", "rewind"] {
        assert!(
            page.text.contains(&format!("data-action=\"{action}\"")),
            "{action}"
        );
    }
    let csrf = page.csrf();
    let retry = |csrf: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("action".into(), "retry".into()),
            ("reason".into(), "input corrected".into()),
            ("patch".into(), r#"{"demo": {}}"#.into()),
            ("confirm".into(), "yes".into()),
        ]
    };
    // Without the CSRF token, with another one: 403, nothing done.
    let mut no_csrf = retry("");
    no_csrf.remove(0);
    assert_eq!(op.post_owned(&path, no_csrf).await.status, 403);
    assert_eq!(op.post_owned(&path, retry("forged")).await.status, 403);
    // The other session's token is not this session's.
    assert_eq!(
        op.post_owned(&path, retry(&crm.csrf().await)).await.status,
        403
    );
    // No reason; a patch that is not a JSON object.
    let mut no_reason = retry(&csrf);
    no_reason[2].1.clear();
    assert_eq!(op.post_owned(&path, no_reason).await.status, 400);
    let mut bad_patch = retry(&csrf);
    bad_patch[3].1 = "[1]".into();
    let p = op.post_owned(&path, bad_patch).await;
    assert_eq!(p.status, 400);
    assert!(p.text.contains("JSON object"), "{}", p.text);
    // Without confirm=yes: the confirmation page, nothing done.
    let mut unconfirmed = retry(&csrf);
    unconfirmed.pop();
    let p = op.post_owned(&path, unconfirmed).await;
    assert_eq!(p.status, 200);
    assert!(p.text.contains("id=\"confirm\""), "{}", p.text);
    assert!(p.text.contains("input corrected"));
    let w = get_run(&mut t.client, "crm-a", &id).await;
    assert_eq!(state(&w), pb::WorkflowState::Failed);

    // Confirmed: the API retries it, as the operator, with the reason.
    let p = op.post_owned(&path, retry(&csrf)).await;
    assert_eq!(
        (p.status, p.location()),
        (303, format!("/ui/runs/{id}").as_str()),
        "{}",
        p.text
    );
    wait_state(&mut t.client, "crm-a", &id, pb::WorkflowState::Completed).await;
    let h = history_of(&mut t.client, "crm-a", &id).await;
    let e = h.iter().find(|e| e.r#type == "operator_retry").unwrap();
    assert_eq!(
        (e.actor.as_str(), e.message.as_str()),
        ("operator-a-user", "input corrected")
    );

    // Another tenant's operator does not see the run at all.
    let other = Console::sign_in(addr, "operator-b").await;
    assert_eq!(other.get(&format!("/ui/runs/{id}")).await.status, 404);
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn the_sections_render_for_the_roles_that_may_read_them(pool: sqlx::PgPool) {
    let mut t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let addr = t.server.http_addr;
    let failed = failed_run(&mut t.client, "crm-a").await;
    let crm = Console::sign_in(addr, "crm-a").await;

    let list = crm.get("/ui/runs?state=FAILED").await;
    assert_eq!(list.status, 200);
    assert!(list.text.contains(&format!("data-run=\"{failed}\"")));
    assert!(!list.text.contains("action=\"/ui/bulk\""), "crm sees bulk");
    let bad = crm.get("/ui/runs?from=yesterday").await;
    assert!(bad.text.contains("YYYY-MM-DDTHH:MM"), "{}", bad.text);
    let counts = crm.get("/ui/runs/counts?workflow=demo_saga").await;
    assert_eq!(counts.status, 200);
    assert!(
        counts.text.contains("data-state=\"FAILED\""),
        "{}",
        counts.text
    );
    assert!(
        counts.text.contains("<strong>1</strong>"),
        "{}",
        counts.text
    );
    // htmx asks for the results alone and the address bar follows.
    let p = crm
        .get_with("/ui/runs?state=FAILED", &[("hx-request", "true")])
        .await;
    assert!(!p.text.contains("<html"));
    assert_eq!(p.headers["hx-push-url"], "/ui/runs?state=FAILED");

    let op = Console::sign_in(addr, "operator-a").await;
    assert!(
        op.get("/ui/runs")
            .await
            .text
            .contains("action=\"/ui/bulk\"")
    );

    // Schedules are the admin's.
    assert_eq!(crm.get("/ui/schedules").await.status, 403);
    let admin = Console::sign_in(addr, "admin-a").await;
    let s = admin.get("/ui/schedules").await;
    assert_eq!(s.status, 200, "{}", s.text);

    let pools = crm.get("/ui/pools").await;
    assert_eq!(pools.status, 200, "{}", pools.text);
    let sub = crm.get("/ui/subscribers?id=sub-none").await;
    assert_eq!(sub.status, 200, "{}", sub.text);
    assert!(sub.text.contains("No address records"));

    // The live stream of an ended run replays its events, then ends.
    let done = run_until(
        &mut t.client,
        "crm-a",
        "demo_saga",
        serde_json::json!({"demo": {}}),
        pb::WorkflowState::Completed,
    )
    .await;
    let events = crm.get(&format!("/ui/runs/{done}/events")).await;
    assert_eq!(events.headers["content-type"], "text/event-stream");
    assert!(events.text.contains("event: change"), "{}", events.text);
    assert!(
        events.text.trim_end().ends_with("data: end"),
        "{}",
        events.text
    );
    assert_eq!(
        Console::new(addr)
            .get(&format!("/ui/runs/{done}/events"))
            .await
            .status,
        401
    );

    // Assets: embedded, cached for good.
    let js = Console::new(addr)
        .get("/ui/assets/htmx-2.0.11.min.js")
        .await;
    assert_eq!(js.status, 200);
    assert!(
        js.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    // reqwest was built without gzip: the plain file. A browser gets it gzipped.
    assert_eq!(js.text.len(), 52182);
    let gz = Console::new(addr)
        .get_with(
            "/ui/assets/htmx-2.0.11.min.js",
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(gz.headers["content-encoding"], "gzip");
    assert_eq!(gz.headers["content-length"], "16885");
    assert_eq!(
        Console::new(addr).get("/ui/assets/nope.js").await.status,
        404
    );
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_waiting_run_takes_its_signal_from_the_console(pool: sqlx::PgPool) {
    let wait = include_str!("../workflows/demo_wait.v1.toml");
    let mut t = start(&pool, &[("demo_wait.v1.toml", wait.to_owned())]).await;
    let started = start_run(
        &mut t.client,
        "crm-a",
        "demo_wait",
        serde_json::json!({}),
        "",
    )
    .await
    .unwrap();
    let id = started.workflow.unwrap().id;
    // A crm token may signal: the form shows once the step waits.
    let crm = Console::sign_in(t.server.http_addr, "crm-a").await;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let page = loop {
        let page = crm.get(&format!("/ui/runs/{id}")).await;
        if page.text.contains("data-action=\"signal\"") {
            break page;
        }
        assert!(std::time::Instant::now() < end, "{}", page.text);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // poll interval
    };
    assert!(page.text.contains("Waiting for signal"), "{}", page.text);
    let fields = [
        ("csrf", page.csrf()),
        ("action", "signal".into()),
        ("signal_name", "approve".into()),
        ("payload", r#"{"by": "alice"}"#.into()),
        ("reason", "customer approved".into()),
        ("confirm", "yes".into()),
    ];
    let fields: Vec<(String, String)> = fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
    let p = crm
        .post_owned(&format!("/ui/runs/{id}/action"), fields)
        .await;
    assert_eq!(p.status, 303, "{}", p.text);
    let w = wait_state(&mut t.client, "crm-a", &id, pb::WorkflowState::Completed).await;
    let approve = w.steps.iter().find(|s| s.name == "approve").unwrap();
    let output = sagaflow_proto::json::struct_to_json(approve.output.as_ref().unwrap()).unwrap();
    assert_eq!(output["approval"]["by"], "alice", "{output}");
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn bulk_actions_show_their_dry_run_first_and_rewind_goes_through_the_api(pool: sqlx::PgPool) {
    let mut t = start(&pool, &[("demo.toml", DEMO.to_string())]).await;
    let addr = t.server.http_addr;
    let a = failed_run_at(&mut t.client, "crm-a", "configure").await;
    let b = failed_run_at(&mut t.client, "crm-a", "configure").await;
    let other = failed_run_at(&mut t.client, "crm-a", "reserve").await;
    let op = Console::sign_in(addr, "operator-a").await;
    let csrf = op.csrf().await;
    let bulk = |confirm: &str| {
        [
            ("csrf", csrf.as_str()),
            ("action", "compensate"),
            ("reason", "OLT outage"),
            ("state", "FAILED"),
            ("failed_step", "configure"),
            ("confirm", confirm),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec()
    };
    // The dry run: the count and the runs, nothing changed.
    let p = op.post_owned("/ui/bulk", bulk("")).await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(p.text.contains("data-matched=\"2\""), "{}", p.text);
    assert!(p.text.contains(&a) && p.text.contains(&b) && !p.text.contains(&other));
    assert_eq!(
        state(&get_run(&mut t.client, "crm-a", &a).await),
        pb::WorkflowState::Failed
    );
    // A crm session's bulk is the API's PERMISSION_DENIED.
    let crm = Console::sign_in(addr, "crm-a").await;
    let mut forged = bulk("yes");
    forged[0].1 = crm.csrf().await;
    assert_eq!(crm.post_owned("/ui/bulk", forged).await.status, 403);
    // Confirmed.
    let p = op.post_owned("/ui/bulk", bulk("yes")).await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(p.text.contains("data-applied=\"2\""), "{}", p.text);
    for id in [&a, &b] {
        wait_state(&mut t.client, "crm-a", id, pb::WorkflowState::Compensated).await;
    }
    assert_eq!(
        state(&get_run(&mut t.client, "crm-a", &other).await),
        pb::WorkflowState::Failed
    );

    // Rewind the other run to reserve with its input corrected.
    let fields = [
        ("csrf", csrf.as_str()),
        ("action", "rewind"),
        ("to_step", "reserve"),
        ("patch", r#"{"demo": {}}"#),
        ("reason", "wrong pool chosen"),
        ("confirm", "yes"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    let p = op
        .post_owned(&format!("/ui/runs/{other}/action"), fields)
        .await;
    assert_eq!(p.status, 303, "{}", p.text);
    wait_state(&mut t.client, "crm-a", &other, pb::WorkflowState::Completed).await;
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_subscriber_page_shows_addresses_and_their_lifecycle(pool: sqlx::PgPool) {
    let provision = include_str!("../workflows/provision_subscriber.v1.toml");
    let mut t = start_with(&pool, &[("provision.toml", provision.to_owned())], |c| {
        c.domain.pools = sagaflow_steps::DomainConfig::dev("a").pools;
        // The ACS simulator signals the CPE's inform as tenant a's crm.
        c.domain.simulators.inform_tokens = [("a".to_owned(), "crm-a".to_owned())].into();
    })
    .await;
    let input = serde_json::json!({
        "subscriber_id": "sub-7", "plan": "fiber-300", "enable_ipv6": true,
        "customer": {"id": "c-7", "name": "Grace Hopper", "email": "grace@example.net"},
        "nas": {"ip": "127.0.0.1"}, "onu_serial": "ALCL0007", "cpe_serial": "CPE0007"
    });
    let done = pb::WorkflowState::Completed;
    let id = run_until(&mut t.client, "crm-a", "provision_subscriber", input, done).await;
    let crm = Console::sign_in(t.server.http_addr, "crm-a").await;
    let p = crm.get("/ui/subscribers?id=sub-7").await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.text.matches("class=\"address\"").count(), 2, "{}", p.text);
    assert_eq!(p.text.matches("s-active").count(), 2, "{}", p.text);
    assert!(p.text.contains("allocated ") && p.text.contains("activated "));
    assert!(p.text.contains(&format!("href=\"/ui/runs/{id}\"")));
    // The pools count what it holds.
    let pools = crm.get("/ui/pools").await;
    assert!(pools.text.contains("1 of 65534 in use"), "{}", pools.text);
    // Another tenant sees nothing of it.
    let other = Console::sign_in(t.server.http_addr, "crm-b").await;
    let p = other.get("/ui/subscribers?id=sub-7").await;
    assert!(p.text.contains("No address records"), "{}", p.text);
}
