//! `compare`: the incident, replayed: the same buyers against the reference
//! designs and dropline, one table per workload (see `loadtest::compare`),
//! then the verdict. Exits 1 when dropline broke a promise (the reference
//! designs are expected to), 2 when the comparison could not run.

use clap::Parser;
use loadtest::compare::{run, tally, Args};

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
