//! Embeds the shipped workflow definitions: writes `shipped_workflows.rs`
//! (into `OUT_DIR`), the list of `workflows/*.toml` but the default
//! schedules' file, each as its file name and `include_str!` of its text.
//! Also hands the compiler's version to `sagaflow_build_info`.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = root.join("workflows");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter(|p| p.file_name().is_some_and(|n| n != "schedules.toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from(
        "/// The shipped workflow files: name and text.\npub const SHIPPED: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("cargo:rerun-if-changed={}", f.display());
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            f.display().to_string()
        );
    }
    out.push_str("];\n");
    let target =
        PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("shipped_workflows.rs");
    // The compiler's version, for `sagaflow_build_info`.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Ok(o) = std::process::Command::new(rustc).arg("--version").output() {
        let v = String::from_utf8_lossy(&o.stdout);
        if let Some(version) = v.split_whitespace().nth(1) {
            println!("cargo:rustc-env=SAGAFLOW_RUSTC={version}");
        }
    }
    if let Err(e) = std::fs::write(&target, out) {
        panic!("cannot write {}: {e}", target.display());
    }
}
