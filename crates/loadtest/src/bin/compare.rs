//! `compare`: the incident, replayed: the same buyers against the reference
//! designs and dropline, one table per workload (see `loadtest::compare`).

use clap::Parser;
use loadtest::compare::{run, Args};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("compare: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
