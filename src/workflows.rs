//! The shipped workflow definitions, embedded at build time (`build.rs`
//! lists `workflows/*.toml`), so `dev` and `serve` find them wherever they
//! run; `engine.workflows` names a directory to load instead.

use std::path::Path;

use sagaflow_engine::definition::{DefinitionError, Definitions, parse};
use sagaflow_engine::handler::Registry;

include!(concat!(env!("OUT_DIR"), "/shipped_workflows.rs"));

/// The definitions `engine.workflows` selects: the shipped ones when it is
/// empty, else the directory's (none, with a warning, when it is missing).
pub fn load(dir: &Path, registry: &Registry) -> Result<Definitions, DefinitionError> {
    if dir.as_os_str().is_empty() {
        return shipped(registry);
    }
    if dir.exists() {
        return Definitions::load_dir(dir, registry);
    }
    tracing::warn!(dir = %dir.display(), "workflows directory not found; no workflows loaded");
    Ok(Definitions::default())
}

/// The shipped definitions.
pub fn shipped(registry: &Registry) -> Result<Definitions, DefinitionError> {
    let mut defs = Definitions::default();
    for (name, text) in SHIPPED {
        let source = format!("(shipped) workflows/{name}");
        let def = parse(text, &source)?;
        defs.add(def, &source, registry)?;
    }
    Ok(defs)
}
