//! The durability boundary, proved from outside the server: the pinned
//! nats-server runs under strace, a client publishes marked messages one at
//! a time awaiting each PubAck, and the trace must show each message's
//! block-file write followed by a completed fsync of that file before the
//! first byte of its PubAck left (`dropline_testkit::syscalls` judges).
//! The lazy control runs the same check where the server does not sync and
//! must find no synced ack, so a pass is not the check being blind.
//!
//! `DROPLINE_DURABILITY_SYNC=lazy` makes the sync-always test run the lazy
//! configuration, to watch it fail. Missing strace or a server older than
//! 2.10 fails these tests; they never pass by not running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use dropline_bus::ServerVersion;
use dropline_testkit::nats::{
    binary_version, check_expected_version, server_binary, sync_always_config,
};
use dropline_testkit::processes::send_signal;
use dropline_testkit::syscalls::{analyse, parse, Expected, Findings};
use dropline_testkit::{free_port, unique_suffix, Signal};

/// Messages per run: enough that a sync the server makes now and then on
/// its own cannot pass for a sync before every ack.
const MESSAGE_COUNT: u64 = 100;
const STREAM: &str = "DURABILITY";
const SUBJECT: &str = "durability.proof";
/// Message `n`'s payload is `MARK-00000n`, so its block write can be found.
const MARKER: &str = "MARK-";
const MARKER_DIGITS: usize = 6;
/// strace makes the server slower to start and to stop.
const START_WAIT_MS_MAX: u64 = 30_000;
const EXIT_WAIT_MS_MAX: u64 = 30_000;
/// How much of each string strace prints: whole acks and block writes (one
/// cut short would look unsynced or missing).
const STRACE_STRING_BYTES_MAX: &str = "65536";
/// The calls the judgement reads, and the opens and closes that name fds.
const TRACED_CALLS: &str = "trace=openat,close,read,write,writev,pwrite64,pwritev,pwritev2,\
                            fsync,fdatasync,sync_file_range,syncfs,sync,msync,sendto,sendmsg";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncMode {
    /// `deploy/local/nats-sync-always.conf`: fsync before each PubAck.
    Always,
    /// The server's default: sync every couple of minutes.
    Lazy,
}

/// The mode the sync-always test runs: `DROPLINE_DURABILITY_SYNC=lazy`
/// turns it against the lazy server, where it must fail.
fn mode_under_test() -> SyncMode {
    match std::env::var("DROPLINE_DURABILITY_SYNC").as_deref() {
        Err(_) | Ok("always") => SyncMode::Always,
        Ok("lazy") => SyncMode::Lazy,
        Ok(other) => panic!("DROPLINE_DURABILITY_SYNC={other:?}: say `always` or `lazy`"),
    }
}

/// The nats-server under test and strace, or a failure naming what is
/// missing.
fn tools() -> (PathBuf, PathBuf) {
    let server = server_binary().expect("find the nats-server under test");
    let version = binary_version(&server).expect("read the nats-server's version");
    assert!(
        version.can_sync_always(),
        "nats-server {version} ({}) is older than 2.10: it has no `sync_interval: always` to \
         prove; run the pinned server (deploy/local/install-nats-server.sh, \
         DROPLINE_NATS_SERVER)",
        server.display()
    );
    let strace = on_path("strace").unwrap_or_else(|| {
        panic!(
            "strace is missing: the durability tests trace nats-server's system calls \
             (apt-get install strace)"
        )
    });
    (server, strace)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// A nats-server under strace, in a directory of its own (configuration,
/// store, pid file, log, trace). The directory is removed only when a test
/// passes ([`Run::remove`]), so a failure leaves the trace to read.
struct TracedNats {
    dir: PathBuf,
    port: u16,
    strace: Option<Child>,
}

impl TracedNats {
    fn start(server: &Path, strace: &Path, mode: SyncMode) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("dropline-durability-{}", unique_suffix()));
        std::fs::create_dir_all(dir.join("store")).context("create the store directory")?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("server.log")).context("create the log")?;
        let mut command = Command::new(strace);
        command
            .args(["-f", "-yy", "-tt", "-s", STRACE_STRING_BYTES_MAX])
            .args([
                "-e",
                TRACED_CALLS,
                "-e",
                "signal=none",
                "--seccomp-bpf",
                "-o",
            ])
            .arg(dir.join("strace.txt"))
            .arg(server);
        if mode == SyncMode::Always {
            let config = dir.join("sync-always.conf");
            std::fs::write(&config, sync_always_config()).context("write the configuration")?;
            command.arg("-c").arg(config);
        }
        let child = command
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("store"))
            .arg("-P")
            .arg(dir.join("nats.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("share the log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {} under {}", server.display(), strace.display()))?;
        Ok(Self {
            dir,
            port,
            strace: Some(child),
        })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(START_WAIT_MS_MAX);
        while tokio::time::Instant::now() < deadline {
            let child = self.strace.as_mut().context("the server was stopped")?;
            if let Some(status) = child.try_wait().context("poll strace")? {
                anyhow::bail!("strace or nats-server exited at start ({status})");
            }
            let listening = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await;
            if listening.is_ok() && self.dir.join("nats.pid").is_file() {
                return check_expected_version(&self.url()).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("nats-server under strace not ready within {START_WAIT_MS_MAX} ms")
    }

    fn server_pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(self.dir.join("nats.pid")).context("read the pid")?;
        text.trim().parse().context("parse the pid")
    }

    /// SIGTERM to nats-server itself (to strace, it would detach and leave
    /// the server running untraced), then waits for strace to write its
    /// last line and exit; returns the trace.
    async fn stop(&mut self) -> anyhow::Result<String> {
        let pid = self.server_pid()?;
        send_signal(pid, Signal::Term)?;
        let mut child = self.strace.take().context("the server was stopped")?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(EXIT_WAIT_MS_MAX);
        while child.try_wait().context("poll strace")?.is_none() {
            if tokio::time::Instant::now() > deadline {
                let _ = send_signal(pid, Signal::Kill);
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "nats-server under strace still running {EXIT_WAIT_MS_MAX} ms after SIGTERM"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let trace = std::fs::read(self.dir.join("strace.txt")).context("read the trace")?;
        Ok(String::from_utf8_lossy(&trace).into_owned())
    }
}

impl Drop for TracedNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.strace.take() {
            if let Ok(pid) = self.server_pid() {
                let _ = send_signal(pid, Signal::Kill);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Publishes messages 1..=MESSAGE_COUNT to a fresh file-storage R1 stream,
/// one at a time: each PubAck is awaited before the next publish, so each
/// ack is judged against its own write.
async fn publish_marked(url: &str) -> anyhow::Result<()> {
    let client = async_nats::connect(url).await.context("connect")?;
    let js = async_nats::jetstream::new(client);
    js.create_stream(StreamConfig {
        name: STREAM.into(),
        subjects: vec![SUBJECT.into()],
        storage: StorageType::File,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .context("create the stream")?;
    for seq in 1..=MESSAGE_COUNT {
        let payload = format!("{MARKER}{seq:0MARKER_DIGITS$}");
        let ack = js
            .publish(SUBJECT, payload.into())
            .await
            .context("publish")?
            .await
            .context("await the PubAck")?;
        // The judgement pairs marker n with ack n: the stream must agree.
        anyhow::ensure!(
            ack.sequence == seq && !ack.duplicate,
            "message {seq} was stored as sequence {}",
            ack.sequence
        );
    }
    Ok(())
}

/// What one traced run found, and where its files are.
struct Run {
    findings: Findings,
    dir: PathBuf,
}

impl Run {
    fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the server in `mode` under strace, publishes, stops it, and
/// judges the trace.
async fn traced_run(mode: SyncMode) -> Run {
    let (server, strace) = tools();
    let mut nats = TracedNats::start(&server, &strace, mode).expect("start nats-server");
    let dir = nats.dir.clone();
    let published = async {
        nats.wait_until_ready().await?;
        publish_marked(&nats.url()).await
    }
    .await;
    let stopped = nats.stop().await;
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let files = format!("files in {}\nserver log:\n{log}", dir.display());
    if let Err(e) = published {
        panic!("publish under strace: {e:#}\n{files}");
    }
    let trace = stopped.unwrap_or_else(|e| panic!("stop the server: {e:#}\n{files}"));
    let expected = Expected {
        stream: STREAM,
        marker: MARKER,
        seq_digits: MARKER_DIGITS,
        count: MESSAGE_COUNT,
    };
    let findings = analyse(&parse(&trace), &expected);
    Run { findings, dir }
}

#[tokio::test]
async fn fsync_comes_before_every_puback_with_sync_always() {
    let mode = mode_under_test();
    let run = traced_run(mode).await;
    let found = &run.findings;
    assert!(
        found.acks() == MESSAGE_COUNT && found.synced() == MESSAGE_COUNT,
        "with {mode:?} sync, not every PubAck left nats-server after a completed fsync of its \
         message's block file: {}\ntrace: {}",
        found.summary(),
        run.dir.join("strace.txt").display()
    );
    run.remove();
}

#[tokio::test]
async fn lazy_sync_sends_pubacks_before_any_fsync() {
    let run = traced_run(SyncMode::Lazy).await;
    let found = &run.findings;
    assert!(
        found.acks() == MESSAGE_COUNT
            && found.block_writes() == MESSAGE_COUNT
            && found.synced() == 0,
        "the control must see every PubAck and block write and no sync between them, or the \
         check proves nothing: {}\ntrace: {}",
        found.summary(),
        run.dir.join("strace.txt").display()
    );
    run.remove();
}

#[test]
fn deploy_configs_are_valid_for_the_version_they_state() {
    let server = server_binary().expect("find the nats-server under test");
    let version = binary_version(&server).expect("read the nats-server's version");
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats");
    for name in ["single-node.conf", "cluster-node.conf"] {
        let config = deploy.join(name);
        let text = std::fs::read_to_string(&config).expect("read the deploy configuration");
        let needed = stated_minimum(&text).unwrap_or_else(|| {
            panic!("{name} does not state the server it needs (`Needs nats-server X.Y or later`)")
        });
        assert!(
            version >= needed,
            "{name} needs nats-server {needed}, but the server under test ({}) is {version}",
            server.display()
        );
        let out = Command::new(&server)
            .arg("-c")
            .arg(&config)
            .arg("-t")
            .output()
            .expect("run nats-server -t");
        assert!(
            out.status.success(),
            "nats-server {version} refuses {name}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The version in a configuration's `Needs nats-server 2.10 or later`.
fn stated_minimum(text: &str) -> Option<ServerVersion> {
    let (_, after) = text.split_once("Needs nats-server ")?;
    let stated = after.split_whitespace().next()?;
    ServerVersion::parse(&format!("{stated}.0")).ok()
}
