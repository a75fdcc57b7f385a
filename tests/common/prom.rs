//! The Prometheus text format for the tests that scrape `/metrics`: a
//! parser, sums of samples by labels, and the names docs/metrics.md,
//! docs/prometheus-alerts.yml and docs/grafana-dashboard.json use.

use std::collections::BTreeMap;

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (version 0.0.4): comment
/// lines, then `name{label="value",…} value [timestamp]`.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let name = line[..name_end].to_owned();
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let end = loop {
                // label name
                let mut key = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c == '=' || c == '}' {
                        break;
                    }
                    if c != ',' && !c.is_whitespace() {
                        key.push(c);
                    }
                    chars.next();
                }
                match chars.next() {
                    Some((i, '}')) => break i,
                    Some((_, '=')) => {}
                    other => panic!("bad labels in {line:?}: {other:?}"),
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars
                        .next()
                        .unwrap_or_else(|| panic!("open quote in {line:?}"))
                    {
                        (_, '\\') => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => panic!("dangling escape in {line:?}"),
                        },
                        (_, '"') => break,
                        (_, c) => value.push(c),
                    }
                }
                labels.insert(key, value);
            };
            rest = &r[end + 1..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The sum of the samples named `name` whose labels include `want`.
pub fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

pub async fn scrape(url: &str) -> Vec<Sample> {
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200);
    parse(&resp.text().await.unwrap())
}

/// Metric names listed in docs/metrics.md (the first column of its tables).
pub fn documented() -> Vec<String> {
    let doc = include_str!("../../docs/metrics.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `sagaflow_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("sagaflow_{n}"))
        .collect()
}

/// The `sagaflow_*` metric names `text` (a PromQL expression, a rules
/// file, a dashboard) uses, as written (histogram series keep their
/// `_bucket`/`_sum`/`_count` suffix).
pub fn names_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("sagaflow_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// Whether the metric `name` (maybe a histogram's series) is in `scrape`.
pub fn exported(scrape: &[Sample], name: &str) -> bool {
    scrape.iter().any(|s| {
        s.name == name
            || ["_bucket", "_count", "_sum"]
                .iter()
                .any(|suf| s.name.strip_suffix(suf) == Some(name))
    })
}
