//! Default schedules as data: the seed file (`schedules.toml` in the
//! workflows directory; sagaflow ships `workflows/schedules.toml`), parsed
//! and checked at start, and [`SeedSchedule`], one schedule to create once
//! per tenant (`Engine::seed_schedules`). The engine knows no schedule by
//! name: the list is the file's.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{CatchupPolicy, CronSpec, OverlapPolicy, check_name};
use crate::ids::TenantId;
use crate::schedule::service::NewSchedule;

/// The seed file's name in the workflows directory (not a workflow).
pub const SEED_FILE: &str = "schedules.toml";

/// The seed file sagaflow ships, `workflows/schedules.toml`.
const SHIPPED: &str = include_str!("../../../workflows/schedules.toml");
const SHIPPED_SOURCE: &str = "workflows/schedules.toml";

/// A default schedule, created once per tenant and name (see
/// [`Engine::seed_schedules`](crate::Engine::seed_schedules)).
#[derive(Debug, Clone)]
pub struct SeedSchedule {
    pub schedule: NewSchedule,
}

impl SeedSchedule {
    /// The schedules of the shipped `workflows/schedules.toml` for
    /// `tenant` (the maintenance schedules of DESIGN.md).
    pub fn defaults(tenant: &TenantId) -> Vec<SeedSchedule> {
        // The shipped file is part of the build and checked by a test.
        SeedFile::shipped()
            .expect("the shipped workflows/schedules.toml is valid")
            .for_tenant(tenant)
    }
}

/// One entry of the seed file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    workflow: String,
    cron: String,
    #[serde(default)]
    timezone: String,
    #[serde(default)]
    overlap: OverlapPolicy,
    #[serde(default)]
    catchup: CatchupPolicy,
    #[serde(default)]
    input: Option<toml::Table>,
    #[serde(default)]
    paused: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    schedule: Vec<Entry>,
}

/// A checked seed file: its schedules, without a tenant.
#[derive(Debug, Clone)]
pub struct SeedFile {
    /// Where it was read from, for messages.
    pub source: String,
    schedules: Vec<NewSchedule>,
}

/// Why a seed file was refused: where (file, entry, field) and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SeedFileError {
    pub file: String,
    /// The entry: its position (from 1) and name.
    pub entry: Option<(usize, String)>,
    pub field: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for SeedFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((n, name)) = &self.entry {
            write!(f, ": schedule {n} ({name:?})")?;
        }
        if let Some(field) = self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl SeedFile {
    /// The shipped `workflows/schedules.toml`.
    pub fn shipped() -> Result<Self, SeedFileError> {
        Self::parse(SHIPPED, SHIPPED_SOURCE)
    }

    /// Reads and checks the seed file at `path`.
    pub fn load(path: &Path) -> Result<Self, SeedFileError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SeedFileError {
            file: source.clone(),
            entry: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &source)
    }

    /// Parses and checks a seed file; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, SeedFileError> {
        let error = |entry: Option<(usize, String)>, field, message: String| SeedFileError {
            file: source.to_owned(),
            entry,
            field,
            message,
        };
        let doc: Document = toml::from_str(text).map_err(|e| {
            error(
                None,
                None,
                format!(
                    "{} (each [[schedule]] takes name, workflow, cron and optionally \
                     timezone, overlap = \"SKIP\"|\"ALLOW\"|\"BUFFER_ONE\", \
                     catchup = \"NONE\"|\"ONE\"|\"ALL\", input, paused)",
                    e.to_string().trim_end()
                ),
            )
        })?;
        let mut names = BTreeSet::new();
        let mut schedules = Vec::with_capacity(doc.schedule.len());
        for (i, e) in doc.schedule.into_iter().enumerate() {
            let at = Some((i + 1, e.name.clone()));
            check_name(&e.name).map_err(|err| error(at.clone(), Some("name"), err.to_string()))?;
            if !names.insert(e.name.trim().to_owned()) {
                return Err(error(
                    at,
                    Some("name"),
                    "another schedule has this name; give each a name of its own".into(),
                ));
            }
            if e.workflow.trim().is_empty() {
                return Err(error(
                    at,
                    Some("workflow"),
                    "empty: name the workflow the schedule starts".into(),
                ));
            }
            if let Err(err) = CronSpec::parse(&e.cron, &e.timezone) {
                let field = if matches!(err, super::ScheduleError::InvalidTimezone(_)) {
                    "timezone"
                } else {
                    "cron"
                };
                return Err(error(at, Some(field), err.to_string()));
            }
            let input = match e.input {
                Some(table) => serde_json::to_value(table)
                    .map_err(|err| error(at.clone(), Some("input"), err.to_string()))?,
                None => Value::Object(Default::default()),
            };
            schedules.push(NewSchedule {
                timezone: e.timezone,
                input,
                overlap_policy: e.overlap,
                catchup_policy: e.catchup,
                paused: e.paused,
                ..NewSchedule::new(&TenantId::new(""), &e.name, &e.cron, &e.workflow)
            });
        }
        Ok(Self {
            source: source.to_owned(),
            schedules,
        })
    }

    /// Its schedules, for `tenant`, in file order.
    pub fn for_tenant(&self, tenant: &TenantId) -> Vec<SeedSchedule> {
        self.schedules
            .iter()
            .map(|s| SeedSchedule {
                schedule: NewSchedule {
                    tenant_id: tenant.clone(),
                    ..s.clone()
                },
            })
            .collect()
    }

    /// The names of its schedules, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.schedules.iter().map(|s| s.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_holds_the_maintenance_schedules() {
        let file = SeedFile::shipped().unwrap();
        let seeds = file.for_tenant(&TenantId::new("t"));
        let got: Vec<_> = seeds
            .iter()
            .map(|s| {
                let s = &s.schedule;
                (
                    s.name.as_str(),
                    s.workflow_name.as_str(),
                    s.cron.as_str(),
                    s.timezone.as_str(),
                    s.overlap_policy,
                    s.catchup_policy,
                    s.tenant_id.as_str(),
                )
            })
            .collect();
        let d = (OverlapPolicy::Skip, CatchupPolicy::One);
        assert_eq!(
            got,
            [
                (
                    "lifecycle_cleanup",
                    "lifecycle_cleanup",
                    "0 2 * * *",
                    "",
                    d.0,
                    d.1,
                    "t"
                ),
                (
                    "lifecycle_metrics",
                    "lifecycle_metrics",
                    "*/5 * * * *",
                    "",
                    d.0,
                    d.1,
                    "t"
                ),
                (
                    "capacity_check",
                    "capacity_check",
                    "*/15 * * * *",
                    "",
                    d.0,
                    d.1,
                    "t"
                ),
                (
                    "reservation_expiry",
                    "reservation_expiry",
                    "0 * * * *",
                    "",
                    d.0,
                    d.1,
                    "t"
                ),
                (
                    "run_retention",
                    "run_retention",
                    "30 3 * * *",
                    "",
                    d.0,
                    d.1,
                    "t"
                ),
            ]
        );
        assert!(
            seeds
                .iter()
                .all(|s| s.schedule.input == serde_json::json!({}))
        );
    }

    #[test]
    fn every_field_is_read() {
        let file = SeedFile::parse(
            "[[schedule]]\nname = \"nightly\"\nworkflow = \"report\"\ncron = \"0 3 * * *\"\n\
             timezone = \"Europe/Berlin\"\noverlap = \"BUFFER_ONE\"\ncatchup = \"ALL\"\n\
             paused = true\ninput = { region = \"north\", depth = 2 }\n",
            "s.toml",
        )
        .unwrap();
        let s = &file.for_tenant(&TenantId::new("t"))[0].schedule;
        assert_eq!(s.timezone, "Europe/Berlin");
        assert_eq!(s.overlap_policy, OverlapPolicy::BufferOne);
        assert_eq!(s.catchup_policy, CatchupPolicy::All);
        assert!(s.paused);
        assert_eq!(s.input, serde_json::json!({"region": "north", "depth": 2}));
    }

    fn refused(text: &str) -> String {
        SeedFile::parse(text, "s.toml").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_the_entry_the_field_and_the_fix() {
        let ok = "[[schedule]]\nname = \"a\"\nworkflow = \"w\"\ncron = \"0 * * * *\"\n";
        let e = refused(&format!(
            "{ok}[[schedule]]\nname = \"b\"\nworkflow = \"w\"\ncron = \"61 * * * *\"\n"
        ));
        assert!(
            e.starts_with("s.toml: schedule 2 (\"b\"), field `cron`: invalid cron expression"),
            "{e}"
        );
        let e = refused(&format!("{ok}timezone = \"Mars/Base\"\n"));
        assert!(
            e.starts_with("s.toml: schedule 1 (\"a\"), field `timezone`: unknown time zone"),
            "{e}"
        );
        let e = refused(&format!("{ok}{}", ok));
        assert!(
            e.contains("schedule 2 (\"a\"), field `name`: another schedule has this name"),
            "{e}"
        );
        let e = refused(&ok.replace("\"w\"", "\" \""));
        assert!(e.contains("field `workflow`: empty"), "{e}");
        let e = refused(&format!("{ok}overlap = \"NEVER\"\n"));
        assert!(
            e.starts_with("s.toml: ") && e.contains("NEVER") && e.contains("BUFFER_ONE"),
            "{e}"
        );
        let e = refused(&format!("{ok}crn = \"x\"\n"));
        assert!(e.contains("crn") && e.contains("line"), "{e}");
        let e = refused("[[schedule]]\nname = \"a\"\n");
        assert!(e.contains("missing field `workflow`"), "{e}");
    }
}
