//! The operator console end to end in a real headless Chromium, driven
//! over WebDriver (chromedriver) against an in-process server on
//! PostgreSQL: sign in, find a FAILED run by subscriber id, retry it with a
//! reason and watch it complete live; bulk-compensate a filter after its
//! dry-run count; a crm token sees no action and its forged POST is
//! refused; a POST without the CSRF token is refused.
//!
//! Needs Debian's `chromium` and `chromium-driver`:
//! `scripts/console-tests.sh` installs them and runs this with
//! `--features console-tests` (so `cargo test --workspace` does not need a
//! browser). Without chromedriver the tests fail and say so. With
//! `SAGAFLOW_CONSOLE_SCREENSHOTS=<dir>` the main pages are saved there as
//! PNG (docs/console/ holds the ones docs/console.md shows).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use sagaflow_proto::v1 as pb;
use serde_json::json;

/// A chromedriver process, killed when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Driver {
    let path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "chromedriver is not installed at {path}: the console's browser tests need Debian's \
         chromium and chromium-driver; run scripts/console-tests.sh (it installs them) or set \
         CHROMEDRIVER"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
    Driver(child, port)
}

/// A headless Chromium session on `driver` (polls until chromedriver listens).
async fn browser(driver: &Driver) -> Client {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900"],
        }),
    );
    let url = format!("http://127.0.0.1:{}", driver.1);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let mut b = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        match b.capabilities(caps.clone()).connect(&url).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < end, "no WebDriver session: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    }
}

/// The demo saga with its subscriber id as a search attribute.
fn searchable_demo() -> String {
    DEMO.replace(
        "on_failure = \"pause\"",
        "on_failure = \"pause\"\nsearch_attributes = [\"subscriber_id\"]",
    )
}

async fn server(pool: &sqlx::PgPool) -> TestServer {
    let schedules = "[[schedule]]\nname = \"nightly_demo\"\nworkflow = \"demo_saga\"\n\
                     cron = \"0 2 * * *\"\ntimezone = \"Europe/Berlin\"\n\n\
                     [[schedule]]\nname = \"hourly_demo\"\nworkflow = \"demo_saga\"\ncron = \"0 * * * *\"\n";
    let files = [
        ("demo.toml", searchable_demo()),
        ("schedules.toml", schedules.to_owned()),
        (
            "provision.toml",
            include_str!("../workflows/provision_subscriber.v1.toml").to_owned(),
        ),
    ];
    start_with(pool, &files, |c| {
        c.domain.pools = sagaflow_steps::DomainConfig::dev("a").pools;
        // The ACS simulator signals the CPE's inform as tenant a's crm.
        c.domain.simulators.inform_tokens = [("a".to_owned(), "crm-a".to_owned())].into();
        c.schedules.tenant = "a".into();
    })
    .await
}

async fn shot(c: &Client, name: &str) {
    shot_at(c, name, 1280).await;
}

/// [`shot`] at `width` pixels (820: a tablet held upright).
async fn shot_at(c: &Client, name: &str, width: u32) {
    if let Ok(dir) = std::env::var("SAGAFLOW_CONSOLE_SCREENSHOTS") {
        // The whole page at that width, up to 2,400 pixels high.
        c.set_window_size(width, 900).await.unwrap();
        let height = c
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 2400) as u32;
        c.set_window_size(width, height).await.unwrap();
        c.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
        let png = c.screenshot().await.unwrap();
        c.set_window_size(1280, 900).await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

async fn wait_css(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    wait_css(c, "#token").await.send_keys(token).await.unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, "#filters").await;
}

/// Starts a demo run of `subscriber` failing at `step`; waits until FAILED.
async fn failed_for(t: &mut TestServer, subscriber: &str, step: &str) -> String {
    let input = json!({"subscriber_id": subscriber, "demo": {"fail_step": step}});
    let failed = pb::WorkflowState::Failed;
    run_until(&mut t.client, "crm-a", "demo_saga", input, failed).await
}

/// POSTs `fields` from the page's own origin with `fetch`; the status.
async fn fetch_post(c: &Client, path: &str, fields: serde_json::Value) -> u64 {
    let script = "const [path, fields, done] = arguments;
        fetch(path, {method: 'POST', body: new URLSearchParams(fields)}).then(r => done(r.status));";
    c.execute_async(script, vec![json!(path), fields])
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn an_operator_finds_a_failed_run_and_retries_it_live(pool: sqlx::PgPool) {
    let mut t = server(&pool).await;
    let base = format!("http://{}", t.server.http_addr);
    failed_for(&mut t, "sub-1", "configure").await;
    let id = failed_for(&mut t, "sub-2", "configure").await;
    let driver = chromedriver();
    let c = browser(&driver).await;

    sign_in(&c, &base, "operator-a").await;
    c.find(Locator::Css("input[name=search]"))
        .await
        .unwrap()
        .send_keys("subscriber_id=sub-2")
        .await
        .unwrap();
    c.find(Locator::Css("#filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // htmx puts the filter in the address; that address reproduces the list.
    let end = Instant::now() + Duration::from_secs(20);
    let url = loop {
        let url = c.current_url().await.unwrap();
        if url.as_str().contains("search=subscriber_id") {
            break url;
        }
        assert!(
            Instant::now() < end,
            "the address never showed the filter: {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    };
    c.goto(url.as_str()).await.unwrap();
    let row = wait_css(&c, &format!("tr[data-run=\"{id}\"]")).await;
    wait_css(&c, ".counts a[data-state=FAILED]").await;
    let rows = c.find_all(Locator::Css("tr[data-run]")).await.unwrap();
    assert_eq!(rows.len(), 1);
    shot(&c, "runs").await;
    shot_at(&c, "runs-tablet", 820).await;

    row.find(Locator::Css("a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "#run-live[data-state=FAILED]").await;
    c.find(Locator::Css("li.step.s-failed[data-step=configure]"))
        .await
        .unwrap();
    c.find(Locator::Css("details.action summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let form = c.find(Locator::Css("details.action form")).await.unwrap();
    shot(&c, "run-failed").await;
    form.find(Locator::Css("textarea[name=patch]"))
        .await
        .unwrap()
        .send_keys(r#"{"demo": {"sleep_ms": 700}}"#)
        .await
        .unwrap();
    form.find(Locator::Css("input[name=reason]"))
        .await
        .unwrap()
        .send_keys("OLT back up")
        .await
        .unwrap();
    form.find(Locator::Css("button[data-action=retry]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "#confirm").await.click().await.unwrap();

    // Back on the run page, which follows the run without being reloaded.
    wait_css(&c, "#live-source").await;
    c.execute("window.sagaflowMarker = 42;", vec![])
        .await
        .unwrap();
    wait_css(&c, "#run-live[data-state=COMPLETED]").await;
    assert_eq!(
        c.execute("return window.sagaflowMarker;", vec![])
            .await
            .unwrap(),
        json!(42)
    );
    c.find(Locator::Css("li.step.s-succeeded[data-step=configure]"))
        .await
        .unwrap();
    let history = c
        .find(Locator::Css("table.history"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        history.contains("operator_retry") && history.contains("OLT back up"),
        "{history}"
    );
    shot(&c, "run-completed").await;
    c.close().await.unwrap();
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn an_operator_bulk_compensates_a_filter_after_its_dry_run(pool: sqlx::PgPool) {
    let mut t = server(&pool).await;
    let base = format!("http://{}", t.server.http_addr);
    let mut at_configure = Vec::new();
    for i in 0..3 {
        at_configure.push(failed_for(&mut t, &format!("sub-{i}"), "configure").await);
    }
    let other = failed_for(&mut t, "sub-9", "reserve").await;
    let driver = chromedriver();
    let c = browser(&driver).await;

    sign_in(&c, &base, "operator-a").await;
    c.goto(&format!(
        "{base}/ui/runs?state=FAILED&failed_step=configure"
    ))
    .await
    .unwrap();
    wait_css(&c, "tr[data-run]").await;
    assert_eq!(
        c.find_all(Locator::Css("tr[data-run]"))
            .await
            .unwrap()
            .len(),
        3
    );
    c.find(Locator::Css("details.bulk summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let form = c.find(Locator::Css("details.bulk form")).await.unwrap();
    form.find(Locator::Css("select[name=action] option[value=compensate]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    form.find(Locator::Css("input[name=reason]"))
        .await
        .unwrap()
        .send_keys("OLT outage, undo")
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let dry = wait_css(&c, "#dry-run").await;
    assert_eq!(
        dry.attr("data-matched").await.unwrap().as_deref(),
        Some("3")
    );
    shot(&c, "bulk-dry-run").await;
    c.find(Locator::Css("#confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let done = wait_css(&c, "#bulk-result").await;
    assert_eq!(
        done.attr("data-applied").await.unwrap().as_deref(),
        Some("3")
    );
    for id in &at_configure {
        wait_state(&mut t.client, "crm-a", id, pb::WorkflowState::Compensated).await;
    }
    let w = get_run(&mut t.client, "crm-a", &other).await;
    assert_eq!(state(&w), pb::WorkflowState::Failed);
    c.close().await.unwrap();
}

#[sqlx::test(migrator = "sagaflow_steps::test_support::MIGRATOR")]
async fn a_crm_token_sees_no_action_and_forged_or_csrf_less_posts_are_refused(pool: sqlx::PgPool) {
    let mut t = server(&pool).await;
    let base = format!("http://{}", t.server.http_addr);
    let id = failed_for(&mut t, "sub-7", "configure").await;
    let driver = chromedriver();
    let c = browser(&driver).await;

    sign_in(&c, &base, "crm-a").await;
    c.goto(&format!("{base}/ui/runs/{id}")).await.unwrap();
    wait_css(&c, "#run-live[data-state=FAILED]").await;
    assert!(
        c.find_all(Locator::Css("[data-action]"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.find_all(Locator::Css("#actions"))
            .await
            .unwrap()
            .is_empty()
    );
    c.goto(&format!("{base}/ui/runs")).await.unwrap();
    wait_css(&c, "tr[data-run]").await;
    assert!(
        c.find_all(Locator::Css("details.bulk"))
            .await
            .unwrap()
            .is_empty()
    );

    // A forged POST with this session's valid CSRF token: the API refuses the role.
    let csrf = c
        .find(Locator::Css("input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let path = format!("/ui/runs/{id}/action");
    let forged = json!({"csrf": csrf, "action": "retry", "reason": "forged", "confirm": "yes"});
    assert_eq!(fetch_post(&c, &path, forged).await, 403);
    // Without the CSRF token: refused before anything else.
    let bare = json!({"action": "retry", "reason": "forged", "confirm": "yes"});
    assert_eq!(fetch_post(&c, &path, bare.clone()).await, 403);
    assert_eq!(fetch_post(&c, "/ui/bulk", bare.clone()).await, 403);
    c.close().await.unwrap();

    // An operator's session without the token is refused too.
    let c = browser(&driver).await;
    sign_in(&c, &base, "operator-a").await;
    assert_eq!(fetch_post(&c, &path, bare).await, 403);
    let w = get_run(&mut t.client, "crm-a", &id).await;
    assert_eq!(state(&w), pb::WorkflowState::Failed);

    // The other sections, for the screenshots of docs/console.md: a
    // provisioned subscriber's addresses, the pools that hold them.
    let input = json!({
        "subscriber_id": "sub-1001", "plan": "fiber-300", "enable_ipv6": true,
        "customer": {"id": "c-1", "name": "Ada Lovelace", "email": "ada@example.net"},
        "nas": {"ip": "127.0.0.1"}, "onu_serial": "ALCL0001", "cpe_serial": "CPE0001"
    });
    let done = pb::WorkflowState::Completed;
    run_until(&mut t.client, "crm-a", "provision_subscriber", input, done).await;
    c.goto(&format!("{base}/ui/subscribers?id=sub-1001"))
        .await
        .unwrap();
    assert_eq!(c.find_all(Locator::Css(".address")).await.unwrap().len(), 2);
    shot(&c, "subscriber").await;
    c.goto(&format!("{base}/ui/pools")).await.unwrap();
    wait_css(&c, ".pool meter").await;
    shot(&c, "pools").await;
    c.close().await.unwrap();
    let c = browser(&driver).await;
    sign_in(&c, &base, "admin-a").await;
    c.goto(&format!("{base}/ui/schedules")).await.unwrap();
    wait_css(&c, "tr[data-schedule]").await;
    shot(&c, "schedules").await;
    let row = wait_css(&c, "tr[data-schedule=nightly_demo]").await;
    let reason = row.find(Locator::Css("input[name=reason]")).await.unwrap();
    reason.send_keys("maintenance window").await.unwrap();
    let pause = row
        .find(Locator::Css("button[data-verb=pause]"))
        .await
        .unwrap();
    pause.click().await.unwrap();
    wait_css(&c, "tr[data-schedule=nightly_demo] .s-paused").await;
    let row = wait_css(&c, "tr[data-schedule=hourly_demo]").await;
    let trigger = row
        .find(Locator::Css("button[data-verb=trigger]"))
        .await
        .unwrap();
    trigger.click().await.unwrap();
    wait_css(&c, "tr[data-schedule=hourly_demo] a[href^='/ui/runs/']").await;
    c.close().await.unwrap();
}
