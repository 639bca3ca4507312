//! `loadtest`: a verified burst of simultaneous buyers (see the library).

use clap::Parser;
use loadtest::{run, Args};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(err) => {
            eprintln!("loadtest: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
