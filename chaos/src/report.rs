//! A scenario's report: its figures and its pass bars.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::check::Findings;

/// One pass bar and whether it held.
#[derive(Debug, Clone)]
pub struct Bar {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// What one scenario did and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub scenario: String,
    pub wall: Duration,
    pub runs: usize,
    pub kills: usize,
    /// Runs by end state.
    pub end_states: BTreeMap<String, usize>,
    pub terminal: usize,
    /// How many keys had their effect applied n times, by n.
    pub effects_per_key: BTreeMap<u64, u64>,
    pub duplicate_compensations: u64,
    /// Recovery times (what they measure is in `facts`), in milliseconds.
    pub recovery_ms: Vec<u64>,
    /// gRPC status codes the harness received, by code.
    pub grpc_codes: BTreeMap<String, u64>,
    /// Panics in the engine logs other than the poison steps' own.
    pub panics: u64,
    /// Scenario-specific figures, in order.
    pub facts: Vec<(String, String)>,
    pub bars: Vec<Bar>,
}

/// The `p`-th percentile (0–100) of `v`, nearest rank.
pub fn percentile(v: &[u64], p: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

impl Report {
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            ..Self::default()
        }
    }

    pub fn passed(&self) -> bool {
        !self.bars.is_empty() && self.bars.iter().all(|b| b.passed)
    }

    pub fn bar(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.bars.push(Bar {
            name: name.to_owned(),
            passed,
            detail: detail.into(),
        });
    }

    /// A bar that holds when `problems` is empty; the detail counts them
    /// and shows the first three.
    pub fn bar_list(&mut self, name: &str, problems: &[String]) {
        let shown = &problems[..problems.len().min(3)];
        self.bar(
            name,
            problems.is_empty(),
            format!("{} {shown:?}", problems.len()),
        );
    }

    pub fn fact(&mut self, name: &str, value: impl fmt::Display) {
        self.facts.push((name.to_owned(), value.to_string()));
    }

    pub fn add_codes(&mut self, codes: &BTreeMap<String, u64>) {
        for (k, v) in codes {
            *self.grpc_codes.entry(k.clone()).or_default() += v;
        }
    }

    /// Takes the checker's findings and sets the bars every scenario has:
    /// 100 % terminal, effects once per key, no duplicate, orphan,
    /// out-of-order or missing compensation, gapless histories, allowed
    /// transitions only, no INTERNAL, no panic.
    pub fn standard_bars(&mut self, f: &Findings) {
        self.runs = f.runs;
        self.terminal = f.terminal;
        self.end_states = f.end_states.clone();
        self.effects_per_key = f.effects_per_key.clone();
        self.duplicate_compensations = f.duplicate_compensations;
        let pct = if f.runs == 0 {
            0.0
        } else {
            100.0 * f.terminal as f64 / f.runs as f64
        };
        self.bar(
            "100 % terminal",
            f.runs > 0 && f.terminal == f.runs,
            format!("{}/{} ({pct:.1} %)", f.terminal, f.runs),
        );
        let not_once: u64 = f
            .effects_per_key
            .iter()
            .filter(|(n, _)| **n != 1)
            .map(|(_, k)| *k)
            .sum();
        self.bar(
            "0 effects applied != once",
            not_once == 0,
            format!("{not_once} keys"),
        );
        let counted = [
            ("0 duplicate compensations", f.duplicate_compensations),
            (
                "0 compensations without forward effect",
                f.compensation_without_forward,
            ),
            ("0 compensations out of order", f.out_of_order_compensations),
            (
                "0 effects left behind by compensated runs",
                f.leaked_effects,
            ),
            (
                "0 succeeded steps of completed runs without their effect",
                f.missing_effects,
            ),
            (
                "0 compensations in completed runs",
                f.completed_compensations,
            ),
            ("gapless event sequences (0 gaps)", f.seq_gaps),
            ("only allowed transitions (0 others)", f.bad_transitions),
        ];
        for (name, n) in counted {
            self.bar(name, n == 0, n.to_string());
        }
        for v in f.examples.iter().take(5) {
            self.facts.push(("violation".into(), v.clone()));
        }
    }

    /// The bars on what the engine answered and how it behaved.
    pub fn engine_bars(&mut self) {
        let internal = self.grpc_codes.get("Internal").copied().unwrap_or(0);
        self.bar("0 INTERNAL", internal == 0, internal.to_string());
        self.bar("0 panics", self.panics == 0, self.panics.to_string());
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "== {} ({:.1} s): {}",
            self.scenario,
            self.wall.as_secs_f64(),
            if self.passed() { "PASS" } else { "FAIL" }
        )?;
        let pct = if self.runs == 0 {
            0.0
        } else {
            100.0 * self.terminal as f64 / self.runs as f64
        };
        writeln!(
            f,
            "  runs {}, kills {}, terminal {}/{} ({pct:.1} %)",
            self.runs, self.kills, self.terminal, self.runs
        )?;
        writeln!(f, "  end states: {:?}", self.end_states)?;
        writeln!(
            f,
            "  effects per key (n -> keys): {:?}",
            self.effects_per_key
        )?;
        writeln!(
            f,
            "  duplicate compensations: {}",
            self.duplicate_compensations
        )?;
        match (
            percentile(&self.recovery_ms, 50.0),
            percentile(&self.recovery_ms, 99.0),
        ) {
            (Some(p50), Some(p99)) => writeln!(
                f,
                "  recovery p50 {p50} ms, p99 {p99} ms ({} samples)",
                self.recovery_ms.len()
            )?,
            _ => writeln!(f, "  recovery: no samples")?,
        }
        writeln!(f, "  gRPC codes: {:?}", self.grpc_codes)?;
        writeln!(f, "  panics: {}", self.panics)?;
        for (k, v) in &self.facts {
            writeln!(f, "  {k}: {v}")?;
        }
        for b in &self.bars {
            writeln!(
                f,
                "  [{}] {} — {}",
                if b.passed { "ok" } else { "FAIL" },
                b.name,
                b.detail
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn a_report_without_bars_does_not_pass() {
        let mut r = Report::new("x");
        assert!(!r.passed());
        r.bar("a", true, "");
        assert!(r.passed());
        r.bar("b", false, "");
        assert!(!r.passed());
    }
}
