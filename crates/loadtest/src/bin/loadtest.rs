//! `loadtest`: a verified burst of simultaneous buyers (see the library).

use clap::Parser;
use loadtest::cli::Args;

/// The load generator shares the machine with what it measures: it
/// allocates as cheaply as the `dropline` binary does.
#[global_allocator]
static ALLOCATOR: dropline_memory::Allocator = dropline_memory::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    dropline_memory::use_small_pages();
    match loadtest::run(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(err) => {
            eprintln!("loadtest: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
