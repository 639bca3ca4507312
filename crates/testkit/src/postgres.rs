//! A private Postgres, for tests that stop or restart it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::ports::free_port;

/// How long a started server may take to accept connections.
const START_WAIT_MS_MAX: u64 = 5_000;

/// A throwaway cluster (`initdb`) on a free port, removed when dropped.
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    bindir: PathBuf,
}

/// Where the machine's Postgres binaries are (`pg_config --bindir`).
fn bindir() -> anyhow::Result<PathBuf> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .context("run pg_config (Postgres binaries on the PATH?)")?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Runs a Postgres tool as the `postgres` user when we are root (initdb and
/// postgres refuse to run as root).
fn pg_command(program: PathBuf) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    if is_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl PrivatePostgres {
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("dropline-pg-{}", crate::unique_suffix()));
        std::fs::create_dir_all(&dir).context("create the Postgres directory")?;
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status();
        let pg = Self {
            port,
            dir,
            bindir: bindir()?,
        };
        let init = pg_command(pg.bindir.join("initdb"))
            .arg("-D")
            .arg(pg.dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .output()
            .context("run initdb")?;
        anyhow::ensure!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        pg.start_server().await?;
        Ok(pg)
    }

    /// The server's URL without a database part.
    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn start_server(&self) -> anyhow::Result<()> {
        // fsync off: a throwaway server's data need not survive the machine.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let status = pg_command(self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-o", &options, "start"])
            .status()
            .context("run pg_ctl start")?;
        anyhow::ensure!(status.success(), "pg_ctl start failed");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(START_WAIT_MS_MAX);
        while tokio::time::Instant::now() < deadline {
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("private Postgres did not start within {START_WAIT_MS_MAX} ms")
    }

    /// Stops the server abruptly (connections are cut), keeping its data.
    pub fn stop(&self) {
        let _ = pg_command(self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .status();
    }

    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop();
        self.start_server().await
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
