//! `loadtest`: a verified burst of simultaneous buyers (see the library).

use clap::Parser;
use loadtest::cli::Args;

/// The load generator shares the machine with what it measures: mimalloc
/// keeps its allocations cheap (as in the `dropline` binary).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match loadtest::run(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(err) => {
            eprintln!("loadtest: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
