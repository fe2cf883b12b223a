//! 1,000 tenants created through the management API (a route and a token each): how
//! long that takes and the RSS after; then ingest throughput with those tenants against
//! the same 1,000 tenants declared in a config file, in the same run (A/B/A/B).
//!
//! `cargo bench -p hostd --bench managed` (needs `make plugins`).

use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TENANTS: usize = 1000;
const ADMIN: &str = "admin-token-0123456789abcdef";
const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const CLIENTS: usize = 8;
const BATCH: usize = 10;
const SECONDS: u64 = 5;

fn pass_through() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-wasip2/release/pass_through.wasm");
    assert!(p.exists(), "{} is missing: run `make plugins`", p.display());
    p
}

fn server_toml(dir: &Path) -> String {
    format!(
        "[server]\ndata_dir = \"{}\"\ndurability = \"os\"\nwatch_policies = false\nadmin_token_env = \"ADMIN_TOKEN\"\n\
         secret_key_env = \"HOSTD_SECRET_KEY\"\n",
        dir.join("data").display()
    )
}

fn file_toml(dir: &Path) -> String {
    let mut c = server_toml(dir);
    for i in 0..TENANTS {
        c.push_str(&format!(
            "[[tenants]]\nid = \"t{i}\"\ntoken_env = \"T{i}\"\npolicy = \"{}\"\n[tenants.routes.default]\ntype = \"stdout\"\n",
            pass_through().display()
        ));
    }
    c
}

fn start(dir: &Path, config: &str) -> (Child, String) {
    std::fs::write(dir.join("hostd.toml"), config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostd"));
    cmd.args(["--config", dir.join("hostd.toml").to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn,hostd::server=info")
        .env("ADMIN_TOKEN", ADMIN)
        .env("HOSTD_SECRET_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for i in 0..TENANTS {
        cmd.env(format!("T{i}"), format!("file-token-{i:04}-0123456789"));
    }
    let mut child = cmd.spawn().expect("start hostd");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("hostd exited").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break format!("http://{}", rest.split_whitespace().next().unwrap());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}

/// Creates the 1,000 tenants through the API; returns their tokens.
fn create_through_api(url: &str) -> Vec<String> {
    let http = reqwest::blocking::Client::new();
    let sha: String = http
        .post(format!("{url}/admin/v1/policies"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/wasm")
        .body(std::fs::read(pass_through()).unwrap())
        .send()
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let call = |path: &str, body: serde_json::Value| {
        let r = http.post(format!("{url}{path}")).bearer_auth(ADMIN).json(&body).send().unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.text().unwrap_or_default());
        r.json::<serde_json::Value>().unwrap()
    };
    (0..TENANTS)
        .map(|i| {
            call("/admin/v1/tenants", json!({"id": format!("t{i}"), "policy": sha}));
            call(&format!("/admin/v1/tenants/t{i}/routes"), json!({"name": "default", "type": "stdout"}));
            call(&format!("/admin/v1/tenants/t{i}/tokens"), json!({"scopes": ["ingest"]}))["secret"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Events/s accepted with `CLIENTS` clients posting batches to tenants in turn.
fn ingest(url: &str, tokens: &[String]) -> f64 {
    let tokens = Arc::new(tokens.to_vec());
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, tokens, stop, sent) = (url.to_string(), tokens.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut n = c;
                while !stop.load(Ordering::Relaxed) {
                    let body: String = (0..BATCH)
                        .map(|i| {
                            json!({"event": "on_tool_end", "run_id": format!("r{n}-{i}"), "root_run_id": format!("root{n}"),
                                   "step": i, "data": {"output": "x".repeat(900)}})
                            .to_string()
                                + "\n"
                        })
                        .collect();
                    let r = http
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(&tokens[n % tokens.len()])
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    sent.fetch_add(BATCH as u64, Ordering::Relaxed);
                    n += CLIENTS;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let (start, before) = (Instant::now(), sent.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs(SECONDS));
    let rate = (sent.load(Ordering::Relaxed) - before) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    rate
}

fn main() {
    let file_tokens: Vec<String> = (0..TENANTS).map(|i| format!("file-token-{i:04}-0123456789")).collect();
    let mut file_rates = Vec::new();
    let mut api_rates = Vec::new();
    for round in 1..=2 {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, url) = start(dir.path(), &file_toml(dir.path()));
        let rss = rss_mib(child.id());
        let rate = ingest(&url, &file_tokens);
        println!("round {round}: config file: RSS after loading {rss:.0} MiB; ingest {rate:.0} events/s");
        file_rates.push(rate);
        child.kill().unwrap();
        child.wait().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (mut child, url) = start(dir.path(), &server_toml(dir.path()));
        let rss_empty = rss_mib(child.id());
        let t = Instant::now();
        let tokens = create_through_api(&url);
        let took = t.elapsed();
        let rss = rss_mib(child.id());
        let rate = ingest(&url, &tokens);
        println!(
            "round {round}: API: created {TENANTS} tenants (route + token each) in {:.1} s ({:.1} ms per tenant); \
             RSS {rss_empty:.0} MiB before, {rss:.0} MiB after; ingest {rate:.0} events/s",
            took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / TENANTS as f64
        );
        api_rates.push(rate);
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "ingest, {TENANTS} tenants, {CLIENTS} clients, batches of {BATCH} 1 KB events: config file {:.0}/s, API {:.0}/s, API / file = {:.3}",
        mean(&file_rates),
        mean(&api_rates),
        mean(&api_rates) / mean(&file_rates)
    );
}
