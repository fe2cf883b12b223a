//! 1,000 tenants in one hostd: load time (cold: compiling; warm: the on-disk cache),
//! RSS after loading, after one event per tenant (every tenant instantiated), and after
//! the idle sweep. A third of the tenants run the JavaScript or Python policy.
//!
//! `cargo bench -p hostd --bench tenants` (needs `make plugins`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TENANTS: usize = 1000;

fn plugin(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/target").join(rel);
    assert!(p.exists(), "{} is missing: run `make plugins`", p.display());
    p
}

fn policy_for(i: usize) -> (PathBuf, &'static str) {
    match i % 6 {
        0 => (plugin("guests/route_by_tool.wasm"), "js"),
        1 => (plugin("guests/usage_meter.wasm"), "python"),
        2 | 4 => (plugin("wasm32-wasip2/release/redact_pii.wasm"), "rust"),
        _ => (plugin("wasm32-wasip2/release/pass_through.wasm"), "rust"),
    }
}

fn config(dir: &Path) -> String {
    let mut c = format!(
        "[server]\ndata_dir = \"{}\"\ndurability = \"none\"\npolicy_idle_ttl = \"3s\"\nwatch_policies = false\n",
        dir.join("data").display()
    );
    for i in 0..TENANTS {
        let (policy, _) = policy_for(i);
        c.push_str(&format!(
            "[[tenants]]\nid = \"t{i}\"\ntoken_env = \"T{i}\"\npolicy = \"{}\"\n\
             [tenants.routes.default]\ntype = \"stdout\"\n[tenants.routes.billing]\ntype = \"stdout\"\n",
            policy.display()
        ));
    }
    c
}

fn start(dir: &Path) -> (Child, String, Duration) {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostd"));
    cmd.args(["--config", dir.join("hostd.toml").to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for i in 0..TENANTS {
        cmd.env(format!("T{i}"), format!("token-{i}"));
    }
    let mut child = cmd.spawn().expect("start hostd");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines.next().expect("hostd exited").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break format!("http://{}", rest.split_whitespace().next().unwrap());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url, started.elapsed())
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hostd.toml"), config(dir.path())).unwrap();
    let (mut child, url, cold) = start(dir.path());
    let pid = child.id();
    let after_load = rss_mib(pid);

    let client = reqwest::blocking::Client::new();
    let event = r#"{"event":"on_llm_end","run_id":"r1","name":"charge_card","data":{"model":"m","token_usage":{"input_tokens":10,"output_tokens":3}},"metadata":{"user_email":"a@b.co"}}"#;
    let t0 = Instant::now();
    for i in 0..TENANTS {
        let r = client
            .post(format!("{url}/v1/events"))
            .bearer_auth(format!("token-{i}"))
            .header("content-type", "application/json")
            .body(event)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "tenant t{i}: {}", r.text().unwrap_or_default());
    }
    let first_calls = t0.elapsed();
    let after_calls = rss_mib(pid);
    std::thread::sleep(Duration::from_secs(5));
    let after_sweep = rss_mib(pid);
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, _, warm) = start(dir.path());
    let warm_rss = rss_mib(child.id());
    child.kill().unwrap();
    child.wait().unwrap();

    let count = |lang| (0..TENANTS).filter(|&i| policy_for(i).1 == lang).count();
    println!(
        "{TENANTS} tenants ({} Rust, {} JavaScript, {} Python), release build, {} cores",
        count("rust"),
        count("js"),
        count("python"),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("| | time | RSS |");
    println!("|---|---|---|");
    println!("| start, cold cache (compile 4 components) | {cold:.2?} | {after_load:.0} MiB |");
    println!("| first event to every tenant (each instantiates) | {first_calls:.2?} | {after_calls:.0} MiB |");
    println!("| 5 s later (idle instances swept: ttl 3 s) | | {after_sweep:.0} MiB |");
    println!("| restart, warm cache | {warm:.2?} | {warm_rss:.0} MiB |");
}
