//! One module per subcommand, each with its `Args` and `run`; the `drop`
//! subcommands in `drop/`.

pub mod drain;
pub mod drop;
pub mod status;
pub mod verify;
pub mod winners;
