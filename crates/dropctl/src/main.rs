//! `dropctl`: the operator's command line. One file per subcommand under
//! `cmd/`; the pieces several of them share (where the services are, who
//! the operator is, putting an entry in a drop's line, waiting for its
//! owner to decide it, admission changes, the audit's table) have modules
//! of their own. Data goes to stdout (`--json` for machines), messages to
//! stderr, and any failure is one line on stderr with a non-zero exit.

mod admission;
mod audit_table;
mod closing;
mod cmd;
mod decided;
mod interrupt;
mod line;
mod operator;
mod progress;
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
    /// Drops: create, pause, resume, close, restock.
    #[command(subcommand)]
    Drop(cmd::drop::DropCommand),
    /// Close a drop, wait until everything in its line is decided, then tally and audit it.
    Drain(cmd::drain::Args),
    /// A table of drops: state, stock, won, remaining, decided, waiting, lag, owner.
    Status(cmd::status::Args),
    /// Every won order of a drop, in line order (CSV or JSON).
    Winners(cmd::winners::Args),
    /// Audit a drop's promises from Postgres and the stream; non-zero exit on any violation.
    Verify(cmd::verify::Args),
}

/// The exit code of a command line that does not parse (clap's, and the
/// BSD `EX_USAGE` tradition's neighbour most tools use).
const USAGE_EXIT_CODE: u8 = 2;

/// A command-line error as one line: clap's text without its usage and
/// `--help` hints, which `--help` gives.
fn one_line(clap_error: &str) -> String {
    clap_error
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .filter(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(|line| line.strip_prefix("error: ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as clap prints them.
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            eprintln!("dropctl: {}", one_line(&err.to_string()));
            return std::process::ExitCode::from(USAGE_EXIT_CODE);
        }
    };
    let result = match cli.command {
        Command::Drop(command) => cmd::drop::run(command, &cli.services).await,
        Command::Drain(args) => cmd::drain::run(args, &cli.services).await,
        Command::Status(args) => cmd::status::run(args, &cli.services).await,
        Command::Winners(args) => cmd::winners::run(args, &cli.services).await,
        Command::Verify(args) => cmd::verify::run(args, &cli.services).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The command said what was left as it was; the shell's convention
        // for an interrupted command is 128 + SIGINT.
        Err(err) if err.is::<interrupt::Interrupted>() => std::process::ExitCode::from(130),
        Err(err) => {
            eprintln!("dropctl: {err:#}{}", cli.services.where_unreachable(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_error_is_one_line() {
        let err = match Cli::try_parse_from(["dropctl", "drop", "restock", "x"]) {
            Err(err) => err,
            Ok(_) => panic!("a restock needs --add"),
        };
        let line = one_line(&err.to_string());
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("the following required arguments were not provided"),
            "{line}"
        );
        assert!(line.contains("--add <N>"), "{line}");
    }
}
