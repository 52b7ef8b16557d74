//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: NUL-separated JSON on fds 3 and 4), so no WebSocket client is
//! needed. Enough to open a page and evaluate expressions in it while it runs.
//! With `CI=true` a missing browser is a failure; elsewhere the test is skipped with a note
//! (`scripts/install-chromium.sh` installs it).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

fn chromium_path() -> Option<String> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    })
}

impl Browser {
    /// Starts the browser, or `None` (outside CI only) when it is not installed.
    pub async fn start() -> Option<Browser> {
        let Some(path) = chromium_path() else {
            if super::db::in_ci() {
                panic!("CI=true but chromium is not installed: run scripts/install-chromium.sh");
            }
            eprintln!("skipping the browser test: chromium is not installed (scripts/install-chromium.sh)");
            return None;
        };
        let profile = tempfile::tempdir().expect("temp dir");
        // fd 3 is what the browser reads, fd 4 what it writes: our stdin and stdout pipes.
        let script = format!(
            "exec '{path}' --headless=new --no-sandbox --disable-gpu --no-first-run \
             --disable-dev-shm-usage --remote-debugging-pipe --user-data-dir='{}' about:blank \
             3<&0 4>&1 0</dev/null 1>/dev/null",
            profile.path().display()
        );
        let mut child = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Some(Browser {
            child,
            stdin,
            stdout,
            next_id: 1,
            session: None,
            _profile: profile,
        })
    }

    /// Sends one command and waits for its answer (events in between are dropped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.stdin
            .write_all(&bytes)
            .await
            .expect("write to chromium");
        self.stdin.flush().await.expect("flush");
        loop {
            let mut buf = Vec::new();
            let n =
                tokio::time::timeout(Duration::from_secs(30), self.stdout.read_until(0, &mut buf))
                    .await
                    .expect("chromium answers within 30 s")
                    .expect("read from chromium");
            assert!(n > 0, "chromium closed the pipe");
            if buf.last() == Some(&0) {
                buf.pop();
            }
            let v: Value = serde_json::from_slice(&buf).expect("DevTools JSON");
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a new tab and talks to that tab from now on.
    pub async fn open(&mut self, url: &str) {
        self.session = None;
        let target = self
            .call("Target.createTarget", json!({ "url": url }))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        self.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_owned(),
        );
    }

    /// The value of a JavaScript expression in the open tab.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until `pred` holds of it, or panics after `timeout`.
    pub async fn wait_for(
        &mut self,
        expression: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(expression).await;
            if pred(&v) {
                return v;
            }
            if start.elapsed() > timeout {
                panic!("`{expression}` never came true; last value {v}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn close(mut self) {
        // The browser may close the pipe before answering: send, do not wait for the answer.
        let mut bytes =
            serde_json::to_vec(&json!({ "id": 0, "method": "Browser.close" })).expect("json");
        bytes.push(0);
        let _ = self.stdin.write_all(&bytes).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}
