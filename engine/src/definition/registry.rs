//! [`Definitions`]: every loaded definition by name and version, read from
//! a folder of TOML files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::handler::Registry;

use super::*;

/// Every loaded definition, by name and version.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    by_name: BTreeMap<String, BTreeMap<u32, Arc<LoadedDefinition>>>,
}

impl Definitions {
    /// Loads every `*.toml` file of `dir` but the default schedules' file
    /// ([`SEED_FILE`](crate::schedule::SEED_FILE), not a workflow).
    pub fn load_dir(dir: &Path, registry: &Registry) -> Result<Self, DefinitionError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            DefinitionError::new(
                &shown,
                None,
                format!("cannot read the workflows directory: {e}"),
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .filter(|p| {
                p.file_name()
                    .is_none_or(|n| n != crate::schedule::SEED_FILE)
            })
            .collect();
        files.sort();
        let mut out = Self::default();
        for path in files {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| DefinitionError::new(&file, None, format!("cannot read: {e}")))?;
            let def = parse(&text, &file)?;
            out.add(def, &file, registry)?;
        }
        Ok(out)
    }

    /// Validates and adds one definition; `source` names it in errors.
    pub fn add(
        &mut self,
        def: WorkflowDefinition,
        source: &str,
        registry: &Registry,
    ) -> Result<Arc<LoadedDefinition>, DefinitionError> {
        validate(&def, source, registry)?;
        let versions = self.by_name.entry(def.name.clone()).or_default();
        if let Some(other) = versions.get(&def.version) {
            return Err(DefinitionError::new(
                source,
                None,
                format!(
                    "{} version {} is also defined in {}; give one of them a new version",
                    def.name, def.version, other.source
                ),
            ));
        }
        let loaded = Arc::new(LoadedDefinition::new(def, source));
        versions.insert(loaded.definition.version, loaded.clone());
        Ok(loaded)
    }

    /// The given version, or the latest when `version` is 0.
    pub fn resolve(&self, name: &str, version: u32) -> Option<Arc<LoadedDefinition>> {
        let versions = self.by_name.get(name)?;
        if version == 0 {
            versions.values().next_back().cloned()
        } else {
            versions.get(&version).cloned()
        }
    }

    /// Every definition, by name then version.
    pub fn all(&self) -> impl Iterator<Item = &Arc<LoadedDefinition>> {
        self.by_name.values().flat_map(|v| v.values())
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}
