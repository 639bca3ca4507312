//! A private Postgres for tests that restart it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    bindir: PathBuf,
}

fn bindir() -> PathBuf {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config (Postgres binaries) on the PATH");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
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
    pub async fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let dir =
            std::env::temp_dir().join(format!("dropline-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("pg dir");
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status();
        let pg = Self {
            port,
            dir,
            bindir: bindir(),
        };
        let init = pg_command(pg.bindir.join("initdb"))
            .arg("-D")
            .arg(pg.dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        pg.start_server().await;
        pg
    }

    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn start_server(&self) {
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
            .expect("run pg_ctl start");
        assert!(status.success(), "pg_ctl start");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private Postgres did not start");
    }

    /// Stops the server abruptly (connections are cut), keeping its data.
    pub fn stop(&self) {
        let _ = pg_command(self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .status();
    }

    pub async fn restart(&self) {
        self.stop();
        self.start_server().await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
