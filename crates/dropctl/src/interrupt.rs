//! Ctrl-C for the commands that run until something happens (`drain`,
//! `status --watch`): the signal ends the command's future, dropping it
//! where it stands (a drain leaves the drop closed), and main exits 130;
//! a watch, which only Ctrl-C ends, exits 0.

use std::future::Future;

/// The command was interrupted by Ctrl-C; it has said so already.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Runs `work` until it ends or Ctrl-C arrives. On Ctrl-C, prints
/// `left_as` (what stays as it was, and how to go on; nothing if empty)
/// and returns [`Interrupted`].
pub async fn until_ctrl_c<T>(
    work: impl Future<Output = anyhow::Result<T>>,
    left_as: &str,
) -> anyhow::Result<T> {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: the default (end the process)
            // still applies, so only the work can end this.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = work => result,
        () = ctrl_c => {
            if !left_as.is_empty() {
                eprintln!("\ninterrupted: {left_as}");
            }
            Err(Interrupted.into())
        }
    }
}
