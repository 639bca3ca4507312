//! A real browser for tests of pages: Debian's headless Chromium, driven
//! over the DevTools protocol (one WebSocket, one page). A page that keeps
//! changing (the live ops page) cannot be judged by `--screenshot`, which
//! shoots once at load; here a test opens the page, asks it questions while
//! it runs (`evaluate`) and takes the picture when the page says it is time.
//!
//! Chromium is killed when the [`Browser`] is dropped.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Debian's package (`apt-get install chromium`); `.ci/run` installs it.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long Chromium may take to open its DevTools port.
const START_WAIT: Duration = Duration::from_secs(60);
/// How long one DevTools command may take.
const CALL_WAIT: Duration = Duration::from_secs(60);

/// A headless Chromium with one page open.
pub struct Browser {
    chromium: tokio::process::Child,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The attached page's DevTools session.
    session: Option<String>,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium with its profile in `dir` (a temp dir of the test's)
    /// and a window of `width`×`height` CSS pixels at scale 1.
    pub async fn launch(dir: &Path, width: u32, height: u32) -> anyhow::Result<Self> {
        if !Path::new(CHROMIUM).exists() {
            bail!(
                "headless Chromium is missing: {CHROMIUM} not found. Install Debian's package \
                 with `apt-get update && apt-get install -y chromium` (.ci/run does this on CI)"
            );
        }
        let profile = dir.join("profile");
        let log = std::fs::File::create(dir.join("chromium.log"))?;
        let chromium = tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {CHROMIUM}"))?;
        let endpoint = devtools_endpoint(&profile).await?;
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .with_context(|| format!("connect to Chromium's DevTools at {endpoint}"))?;
        let mut browser = Self {
            chromium,
            socket,
            session: None,
            next_id: 0,
        };
        browser.attach_page(width, height).await?;
        Ok(browser)
    }

    /// Opens a page target and attaches to it; later calls go to it.
    async fn attach_page(&mut self, width: u32, height: u32) -> anyhow::Result<()> {
        let target = self
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"].clone();
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("attachToTarget gave no session: {attached}"))?;
        self.session = Some(session.to_string());
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        Ok(())
    }

    /// Loads `url` in the page.
    pub async fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        let navigated = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(error) = navigated.get("errorText") {
            bail!("Chromium could not load {url}: {error}");
        }
        Ok(())
    }

    /// Makes every request whose URL matches one of `patterns` (`*` for
    /// any run of characters) fail, as a network that drops them would.
    pub async fn block(&mut self, patterns: &[&str]) -> anyhow::Result<()> {
        self.call("Network.enable", json!({})).await?;
        self.call("Network.setBlockedURLs", json!({ "urls": patterns }))
            .await?;
        Ok(())
    }

    /// The value of a JavaScript expression in the page (JSON-serialisable).
    pub async fn evaluate(&mut self, expression: &str) -> anyhow::Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await?;
        if let Some(thrown) = result.get("exceptionDetails") {
            bail!("{expression} threw in the page: {thrown}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Evaluates `expression` every 100 ms until it is `true`; the value of
    /// `report` (another expression) goes into the timeout error.
    pub async fn wait_for(
        &mut self,
        expression: &str,
        report: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            // A page still loading may throw (its elements not there yet):
            // not yet true, like `false`.
            let verdict = self.evaluate(expression).await;
            if matches!(verdict, Ok(Value::Bool(true))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let seen = match self.evaluate(report).await {
                    Ok(value) => value.to_string(),
                    Err(err) => format!("(threw: {err})"),
                };
                let last = match verdict {
                    Ok(value) => value.to_string(),
                    Err(err) => format!("threw: {err}"),
                };
                bail!(
                    "after {within:?} the page still fails `{expression}` (last: {last}); \
                     {report} = {seen}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the page's viewport as it is now.
    pub async fn screenshot(&mut self) -> anyhow::Result<Vec<u8>> {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = shot["data"]
            .as_str()
            .ok_or_else(|| anyhow!("captureScreenshot gave no data"))?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("decode the screenshot's base64")
    }

    /// Sends one DevTools command and waits for its answer, passing over
    /// the events that arrive meanwhile.
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .with_context(|| format!("send {method} to Chromium"))?;
        tokio::time::timeout(CALL_WAIT, self.answer_to(id))
            .await
            .map_err(|_| anyhow!("Chromium did not answer {method} within {CALL_WAIT:?}"))?
            .with_context(|| method.to_string())
    }

    async fn answer_to(&mut self, id: u64) -> anyhow::Result<Value> {
        while let Some(message) = self.socket.next().await {
            let Message::Text(text) = message? else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text)?;
            if answer["id"] != json!(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                bail!("Chromium refused: {error}");
            }
            return Ok(answer["result"].clone());
        }
        bail!("Chromium closed its DevTools connection")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.chromium.start_kill();
    }
}

/// The browser's DevTools WebSocket, from the `DevToolsActivePort` file
/// Chromium writes into its profile once the port is open (port 0 above).
async fn devtools_endpoint(profile: &Path) -> anyhow::Result<String> {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + START_WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return Ok(format!("ws://127.0.0.1:{port}{path}"));
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "Chromium wrote no {} within {START_WAIT:?}; see chromium.log beside it",
                file.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
