//! Rebuilds this crate when a migration is added or changed: the
//! `sqlx::migrate!` macros embed `../migrations` at compile time, and cargo
//! does not otherwise look there.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
