//! One module per subcommand, each with its `Args` and `run`.

pub mod create;
pub mod status;
pub mod verify;
