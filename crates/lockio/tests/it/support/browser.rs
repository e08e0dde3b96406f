//! A real headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`),
//! with just the commands the dashboard tests need. WebDriver is plain JSON over HTTP, so this
//! is a few requests rather than a client crate.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::eventually;

/// A chromedriver process with one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width`x`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Its own process group, so that dropping the browser ends chromedriver and every
        // Chromium process it started, even when a test fails half-way.
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver not found: install Debian's chromium and chromium-driver (.ci/run does)");
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let status = format!("{base}/status");
        eventually(Duration::from_secs(20), "chromedriver is ready", || {
            let (http, status) = (http.clone(), status.clone());
            async move {
                let r = http.get(&status).send().await.ok()?.json::<Value>().await.ok()?;
                (r["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--window-size={width},{height}")],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created: Value =
            http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session =
            created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_string();
        Browser { driver, base, session, http }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r: Value = self.http.request(method, &url).json(&body).send().await.unwrap().json().await.unwrap();
        r["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({"url": url})).await;
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", json!({"script": script, "args": []})).await
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.command(reqwest::Method::POST, "/window/rect", json!({"width": width, "height": height})).await;
    }

    /// The browser console's entries since the last call: (level, message).
    pub async fn console(&self) -> Vec<(String, String)> {
        let log = self.command(reqwest::Method::POST, "/se/log", json!({"type": "browser"})).await;
        let entries = log.as_array().unwrap_or_else(|| panic!("chromedriver gave no browser log: {log}"));
        entries
            .iter()
            .map(|e| (e["level"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    /// Polls `script` until it returns `true`.
    pub async fn wait_for(&self, timeout: Duration, what: &str, script: &str) {
        eventually(timeout, what, || async { (self.eval(script).await == true).then_some(()) }).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}
