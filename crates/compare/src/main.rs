//! `compare`: the incident, replayed: the same buyers against the reference
//! designs and dropline, one table per workload (see the library), then the
//! verdict. Exits 1 when dropline broke a promise (the reference designs
//! are expected to), 2 when the comparison could not run.

use clap::Parser;
use dropline_compare::cli::Args;
use dropline_compare::{run, tally};

/// The load generator, and the reference designs it serves in this process,
/// allocate as cheaply as the `dropline` binary does.
#[global_allocator]
static ALLOCATOR: dropline_memory::Allocator = dropline_memory::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    dropline_memory::use_small_pages();
    match run(Args::parse()).await {
        Ok(rows) => match tally::verdict(&rows) {
            Ok(verdict) => {
                println!("{verdict}");
                std::process::ExitCode::SUCCESS
            }
            Err(verdict) => {
                println!("{verdict}");
                std::process::ExitCode::from(1)
            }
        },
        Err(err) => {
            eprintln!("compare: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
