// `sqlx::migrate!` embeds the migrations when this crate compiles, but
// Cargo cannot see that it reads them: without this, a new migration is
// left out of an incremental build until something else changes here.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
