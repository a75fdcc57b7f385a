//! `sagaflow reservations reserve|list|release` against a real `sagaflow
//! dev` process: a specific address held, a taken one refused, any free one
//! held, listed (all, one subscriber's), released; each reservation made is
//! notified to the `[domain.notify]` webhook, signed, checked at that
//! receiver.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::DevProcess;
use serde_json::Value;

const SECRET: &str = "notify-secret";

/// One POST received: its headers (lower-case names) and body.
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

/// A webhook receiver on a free port answering 200 to every request.
fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let mut r = BufReader::new(conn);
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.push((k.trim().to_lowercase(), v.trim().to_owned()));
                }
            }
            let len = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let mut conn = r.into_inner();
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            sink.lock().unwrap().push((headers, body));
        }
    });
    (url, got)
}

/// The notifications received, once `n` arrived (deadline 20 s).
fn wait_for(got: &Received, n: usize) -> Vec<(Vec<(String, String)>, Value)> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let all = got.lock().unwrap().clone();
        if all.len() >= n {
            return all
                .into_iter()
                .map(|(h, b)| (h, serde_json::from_slice(&b).unwrap()))
                .collect();
        }
        assert!(Instant::now() < end, "{} of {n} notifications", all.len());
        std::thread::sleep(Duration::from_millis(50)); // poll interval
    }
}

#[test]
fn cli_reserves_lists_and_releases_and_each_reservation_is_notified() {
    let (url, got) = receiver();
    let dev = DevProcess::start_with_env(&[
        ("SAGAFLOW_NOTIFY_WEBHOOK_URL", &url),
        ("SAGAFLOW_NOTIFY_SECRET", SECRET),
    ]);

    let held = dev.json(
        "dev-operator",
        &[
            "reservations",
            "reserve",
            "sub-static",
            "--family",
            "ipv4",
            "--address",
            "100.64.0.10",
            "--expires-in-days",
            "7",
            "--reason",
            "static customer",
        ],
    );
    let held = &held[0];
    assert_eq!(held["address"], "100.64.0.10", "{held}");
    assert_eq!(held["subscriber_id"], "sub-static");
    assert_eq!(held["family"], "IPV4");
    assert_eq!(held["reason"], "static customer");
    assert_eq!(held["released"], false);
    let id = held["id"].as_str().unwrap().to_owned();

    // Taken: refused, exit 1, nothing held for the second subscriber.
    let (code, _, err) = dev.cli(
        "dev-operator",
        &[
            "reservations",
            "reserve",
            "sub-other",
            "--address",
            "100.64.0.10",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("100.64.0.10"), "{err}");

    let any = dev.json(
        "dev-operator",
        &["reservations", "reserve", "sub-other", "--reason", "trial"],
    );
    assert_eq!(any[0]["family"], "IPV4");
    assert_ne!(any[0]["address"], "100.64.0.10");

    let all = dev.json("dev-operator", &["reservations", "list"]);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let one = dev.json(
        "dev-operator",
        &["reservations", "list", "--subscriber", "sub-static"],
    );
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one[0]["id"], id.as_str());

    // The table names the columns and the reservation.
    let (code, table, err) = dev.cli("dev-operator", &["reservations"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("SUBSCRIBER") && table.contains("100.64.0.10"),
        "{table}"
    );

    let released = dev.json("dev-operator", &["reservations", "release", &id]);
    assert_eq!(released[0]["released"], true, "{released}");
    let left = dev.json("dev-operator", &["reservations", "list"]);
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    let (code, _, err) = dev.cli("dev-operator", &["reservations", "release", "x1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a reservation id"), "{err}");

    // The CRM role may not reserve.
    let (code, _, _) = dev.cli("dev-crm", &["reservations", "reserve", "sub-crm"]);
    assert_eq!(code, 1);

    // Two reservations made: two notifications, signed, at the receiver.
    let notes = wait_for(&got, 2);
    let header = |h: &[(String, String)], k: &str| {
        h.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut subs = Vec::new();
    for (h, body) in &notes {
        assert_eq!(header(h, "x-sagaflow-event"), "address_reserved");
        assert_eq!(body["kind"], "address_reserved", "{body}");
        assert_eq!(body["tenant_id"], "demo");
        subs.push(body["data"]["subscriber_id"].as_str().unwrap().to_owned());
    }
    subs.sort();
    assert_eq!(subs, ["sub-other", "sub-static"]);
    let first = notes
        .iter()
        .find(|(_, b)| b["data"]["subscriber_id"] == "sub-static")
        .unwrap();
    assert_eq!(first.1["data"]["address"], "100.64.0.10");
    assert_eq!(first.1["data"]["reason"], "static customer");
    assert!(first.1["data"]["owner"].is_string());
    assert_eq!(
        header(&first.0, "x-sagaflow-delivery"),
        format!("reserved:{id}")
    );
    // Each body is signed with the shared secret.
    let raw = got.lock().unwrap().clone();
    for (h, body) in &raw {
        let sig = header(h, "x-sagaflow-signature");
        assert!(
            sagaflow_steps::notify::verify_signature(SECRET.as_bytes(), body, &sig),
            "{sig}"
        );
    }
}
