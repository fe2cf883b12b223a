//! Shared helpers for the end-to-end tests: start the real `hostd` binary on a free
//! loopback port, find the built plugins, post events, read what was delivered. Also:
//! the config builder ([`config`]), waiting ([`wait`]) and the services gate ([`services`]).

pub mod config;
pub mod receiver;
pub mod services;
pub mod wait;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use config::{tenant_token, Config, Route, Tenant};
pub use serde_json::{json, Value};
pub use wait::{eventually, poll, poll_every, wait_for_exit, wait_for_lines, wait_for_stream_len, wait_until};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The `hostd` binary built by `cargo build` (which `make test` runs first).
pub fn hostd_bin() -> PathBuf {
    if let Ok(p) = std::env::var("HOSTD_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| repo_root().join("target"));
    let bin = target.join("debug").join("hostd");
    assert!(bin.exists(), "{} is missing: run `make test` (it builds the binary first)", bin.display());
    bin
}

/// A plugin built by `make plugins`, by crate file name (`redact_pii`, `hostile_memory_bomb`).
pub fn plugin(name: &str) -> PathBuf {
    let p = repo_root().join("plugins/target/wasm32-wasip2/release").join(format!("{name}.wasm"));
    assert!(p.exists(), "{} is missing: run `make plugins`", p.display());
    p
}

/// A running hostd, killed on drop.
pub struct Hostd {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Hostd {
    /// Starts `hostd ARGS --listen 127.0.0.1:0` and waits until it listens.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Hostd {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, args, envs)
    }

    /// Writes `config` (TOML; `{dir}` is replaced with the temp dir) and starts hostd on it.
    pub fn with_config(config: &str, envs: &[(&str, &str)]) -> Hostd {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = config.replace("{dir}", dir.path().to_str().expect("utf-8 temp path"));
        let path = dir.path().join("hostd.toml");
        std::fs::write(&path, text).expect("write config");
        let path = path.to_str().expect("utf-8").to_string();
        Self::start_in(dir, &["--config", &path], envs)
    }

    /// Starts hostd on `config`, with the environment it names.
    pub fn from_config(config: &Config) -> Hostd {
        Self::with_config(&config.to_toml(), &config.envs())
    }

    /// [`Hostd::with_config`], after `prepare` has put files in the temp dir.
    pub fn with_config_files(config: &str, envs: &[(&str, &str)], prepare: impl FnOnce(&Path)) -> Hostd {
        let dir = tempfile::tempdir().expect("temp dir");
        prepare(dir.path());
        let text = config.replace("{dir}", dir.path().to_str().expect("utf-8 temp path"));
        let path = dir.path().join("hostd.toml");
        std::fs::write(&path, text).expect("write config");
        let path = path.to_str().expect("utf-8").to_string();
        Self::start_in(dir, &["--config", &path], envs)
    }

    fn start_in(dir: tempfile::TempDir, args: &[&str], envs: &[(&str, &str)]) -> Hostd {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (child, addr) = spawn(dir.path(), &args, &envs, "127.0.0.1:0", &stderr);
        Hostd { child, url: format!("http://{addr}"), dir, stderr, args, envs }
    }

    /// Starts hostd again (after a crash or a stop) on the same data dir and address.
    pub fn restart(&mut self) {
        self.kill9();
        let addr = self.url.trim_start_matches("http://").to_string();
        let (child, _) = spawn(self.dir.path(), &self.args, &self.envs, &addr, &self.stderr);
        self.child = child;
    }

    /// Replaces the config file (same `{dir}` substitution); takes effect on restart.
    pub fn rewrite_config(&self, config: &str) {
        let text = config.replace("{dir}", self.dir.path().to_str().unwrap());
        std::fs::write(self.dir.path().join("hostd.toml"), text).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// POSTs `body` to `/v1/events`; returns the status and the JSON answer.
    pub fn post(&self, token: Option<&str>, content_type: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let mut req =
            client.post(format!("{}/v1/events", self.url)).header("content-type", content_type).body(body.into());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().expect("request to hostd");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn post_json(&self, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.post(token, "application/json", body.to_string())
    }

    /// The DLQ entries the token may see, via the admin API (every page).
    pub fn dlq(&self, token: &str) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut url = format!("{}/admin/v1/dlq?limit=1000", self.url);
        loop {
            let resp = reqwest::blocking::Client::new().get(&url).bearer_auth(token).send().expect("admin API");
            assert!(resp.status().is_success(), "GET /admin/v1/dlq: {}", resp.status());
            let v: Value = resp.json().unwrap();
            entries.extend(v["entries"].as_array().cloned().unwrap_or_default());
            match v["next"].as_i64() {
                Some(next) => url = format!("{}/admin/v1/dlq?limit=1000&after={next}", self.url),
                None => return entries,
            }
        }
    }

    /// Polls the DLQ until it has at least `n` entries.
    pub fn wait_dlq(&self, token: &str, n: usize, timeout: Duration) -> Vec<Value> {
        poll(timeout, || self.dlq(token), |entries| entries.len() >= n)
    }

    /// The DLQ entries of `tenant` that `token` may see.
    pub fn dlq_of(&self, token: &str, tenant: &str) -> Vec<Value> {
        self.dlq(token).into_iter().filter(|e| e["tenant"] == tenant).collect()
    }

    /// Polls the DLQ until `tenant` has at least `n` entries (asked every 50 ms).
    pub fn wait_dlq_of(&self, token: &str, tenant: &str, n: usize, timeout: Duration) -> Vec<Value> {
        poll_every(Duration::from_millis(50), timeout, || self.dlq_of(token, tenant), |got| got.len() >= n)
    }

    /// Whether hostd's log shows `needle` within `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        eventually(timeout, || self.stderr().contains(needle))
    }

    /// Sends SIGTERM and waits for the exit; returns how long it took.
    pub fn terminate(&mut self) -> Duration {
        let start = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        start.elapsed()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn healthy(&self) -> bool {
        reqwest::blocking::get(format!("{}/healthz", self.url)).map(|r| r.status().is_success()).unwrap_or(false)
    }
}

/// Spawns hostd in `dir` and waits until it listens; returns it and its address.
fn spawn(
    dir: &Path,
    args: &[String],
    envs: &[(String, String)],
    listen: &str,
    log: &Arc<Mutex<String>>,
) -> (Child, String) {
    let mut cmd = Command::new(hostd_bin());
    cmd.args(args)
        .args(["--listen", listen])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env_remove("HOSTD_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn hostd");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = BufReader::new(child.stderr.take().expect("stderr"));
    let stderr = log.clone();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send(addr);
            }
            let mut l = stderr.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    // Keep stdout drained so a stdout sink never blocks.
    let stdout = child.stdout.take().expect("stdout");
    let out_path = dir.join("stdout.jsonl");
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(out_path).expect("stdout capture");
        let _ = std::io::copy(&mut BufReader::new(stdout), &mut file);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            panic!("hostd did not start listening; stderr:\n{}", log.lock().unwrap());
        }
    }
}

impl Drop for Hostd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON lines of a file (empty when it does not exist yet).
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {l}", path.display())))
        .collect()
}

/// An `on_tool_end` event for run `run` of root `root` at `step`.
pub fn tool_end(root: &str, run: &str, step: u64, data: Value) -> Value {
    json!({"event": "on_tool_end", "name": "lookup", "run_id": run, "root_run_id": root, "parent_run_id": root, "step": step, "data": data})
}

/// Events as an NDJSON body.
pub fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// The id hostd gives a delivery downstream (`webhook-id`, `Idempotency-Key`, the Redis
/// and SNS dedupe ids), computed as the README documents it:
/// `msg_` + hex(sha256("hostd-message-id-v1" ‖ for tenant, route, key: 8-byte big-endian length ‖ bytes)).
pub fn message_id(tenant: &str, route: &str, idempotency_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"hostd-message-id-v1");
    for part in [tenant, route, idempotency_key] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    format!("msg_{}", hex::encode(hash.finalize()))
}

/// Runs `hostd dlq ARGS --url <hostd> --token TOKEN`; returns (success, stdout, stderr).
pub fn dlq_cli(h: &Hostd, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(hostd_bin())
        .arg("dlq")
        .args(args)
        .args(["--url", &h.url, "--token", token])
        .env_remove("HOSTD_ADMIN_TOKEN")
        .output()
        .expect("run hostd dlq");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// POSTs `events` as NDJSON to the hostd at `url` until it answers 202 (it may be down
/// or restarting; up to 30 s); returns the answer.
pub fn post_until_accepted(url: &str, token: &str, events: &[Value]) -> Value {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
    let accepted = poll_every(
        Duration::from_millis(50),
        Duration::from_secs(30),
        || {
            let resp = client
                .post(format!("{url}/v1/events"))
                .bearer_auth(token)
                .header("content-type", "application/x-ndjson")
                .body(ndjson(events))
                .send()
                .ok()?;
            if resp.status().as_u16() == 202 {
                resp.json::<Value>().ok()
            } else {
                None
            }
        },
        Option::is_some,
    );
    accepted.unwrap_or_else(|| panic!("hostd at {url} never accepted the batch"))
}

/// A name no other test (nor an earlier run) uses: for topics, streams, consumer groups.
pub fn unique(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{name}-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
