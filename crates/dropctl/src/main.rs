//! `dropctl`: the operator's command line. One file per subcommand under
//! `cmd/`; data goes to stdout (`--json` for machines), messages to stderr,
//! and any failure is one line on stderr with a non-zero exit.

mod cmd;
mod services;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Operate dropline drops")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    services: services::ServiceArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Drops: create.
    #[command(subcommand)]
    Drop(DropCommand),
    /// A table of drops: stock, won, decided, queue depth, applied sequence.
    Status(cmd::status::Args),
    /// Audit a drop's promises from Postgres and the stream; non-zero exit on any violation.
    Verify(cmd::verify::Args),
}

#[derive(Subcommand)]
enum DropCommand {
    /// Create a drop; it is open for purchases at once.
    Create(cmd::create::Args),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Drop(DropCommand::Create(args)) => cmd::create::run(args, &cli.services).await,
        Command::Status(args) => cmd::status::run(args, &cli.services).await,
        Command::Verify(args) => cmd::verify::run(args, &cli.services).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dropctl: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
