//! The server's edges (issue 9, defects 11 and 12): tokens checked at load, `/metrics`
//! and `/readyz` off the ingest listener or behind a token, the `Host` check of the
//! unauthenticated quickstart, no silent proxy, no private webhook targets by default,
//! and a cap on events per request.

use hostd_e2e::receiver::{Receiver, Reply};
use hostd_e2e::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

const ACME: &str = "acme-token-0123456789";
const GLOBEX: &str = "globex-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const SECRET: &str = "whsec_c2VjcmV0LWtleS0wMTIzNDU2Nzg5";

/// Tenant `acme` (pass-through) with one route; the caller adds to `[server]`.
fn config(route: Route) -> Config {
    let acme = Tenant::new("acme", plugin("pass_through")).token("ACME_TOKEN", ACME).route("default", route);
    Config::new().admin_token("ADMIN_TOKEN", ADMIN).env("WH", SECRET).tenant(acme)
}

fn webhook(url: &str) -> Route {
    Route::webhook(url, "WH").retry(&["50ms", "50ms"])
}

fn file_route() -> Route {
    Route::file("{dir}/out.jsonl")
}

/// Runs `hostd ARGS` to completion in a temp dir holding `config`; (success, stdout, stderr).
fn run(config: &str, args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostd.toml");
    std::fs::write(&path, config.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let mut cmd = Command::new(hostd_bin());
    let args: Vec<&str> = args.iter().map(|a| if *a == "CONFIG" { path.to_str().unwrap() } else { a }).collect();
    cmd.args(&args).current_dir(dir.path()).env_remove("HOSTD_TOKEN").env("RUST_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // A daemon that does start must not hang the test.
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    assert!(wait_for_exit(&mut child, Duration::from_secs(60)), "hostd {args:?} did not exit");
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// `hostd check` and a startup on the same config both fail; returns (check stdout, startup stderr).
fn refused(config: &str, envs: &[(&str, &str)]) -> (String, String) {
    let (ok, check_out, _) = run(config, &["check", "--config", "CONFIG"], envs);
    assert!(!ok, "hostd check should fail: {check_out}");
    let (ok, _, start_err) = run(config, &["--config", "CONFIG", "--listen", "127.0.0.1:0"], envs);
    assert!(!ok, "startup should fail: {start_err}");
    (check_out, start_err)
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::blocking::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().expect("GET");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

fn event(step: u64) -> Value {
    tool_end("root", &format!("run-{step}"), step, json!({"step": step}))
}

// ---- tokens ----------------------------------------------------------------------

#[test]
fn empty_tokens_are_refused_naming_the_key() {
    let config = config(file_route()).to_toml();
    let (check, start) = refused(&config, &[("ACME_TOKEN", ""), ("ADMIN_TOKEN", ADMIN)]);
    for out in [&check, &start] {
        assert!(out.contains("tenant `acme`: token_env `ACME_TOKEN` is empty"), "{out}");
    }
    let (check, start) = refused(&config, &[("ACME_TOKEN", ACME), ("ADMIN_TOKEN", "")]);
    for out in [&check, &start] {
        assert!(out.contains("server.admin_token_env: `ADMIN_TOKEN` is empty"), "{out}");
    }
    // Before: an empty admin token made `Authorization: Bearer ` the admin.
    let (check, _) = refused(&config, &[("ACME_TOKEN", ACME), ("ADMIN_TOKEN", "  ")]);
    assert!(check.contains("server.admin_token_env: `ADMIN_TOKEN`: the token contains whitespace"), "{check}");
}

#[test]
fn an_empty_quickstart_token_is_refused() {
    let pass = plugin("pass_through");
    let (ok, _, err) = run("", &["--plugin", pass.to_str().unwrap(), "--token", "", "--listen", "127.0.0.1:0"], &[]);
    assert!(!ok);
    assert!(err.contains("tenant `default`: --token (or HOSTD_TOKEN) is empty"), "{err}");
}

#[test]
fn shared_tokens_are_refused_naming_both_tenants_never_the_token() {
    let globex =
        Tenant::new("globex", plugin("pass_through")).token_env("GLOBEX_TOKEN").route("default", Route::stdout());
    let config = config(file_route()).tenant(globex).to_toml();
    let (check, start) = refused(&config, &[("ACME_TOKEN", ACME), ("GLOBEX_TOKEN", ACME), ("ADMIN_TOKEN", ADMIN)]);
    for out in [&check, &start] {
        assert!(out.contains("tenants `acme` and `globex` have the same token"), "{out}");
        assert!(!out.contains(ACME), "a token was printed: {out}");
    }
    let (check, start) = refused(&config, &[("ACME_TOKEN", ACME), ("GLOBEX_TOKEN", ADMIN), ("ADMIN_TOKEN", ADMIN)]);
    for out in [&check, &start] {
        assert!(out.contains("tenant `globex`: its token is the admin token"), "{out}");
        assert!(!out.contains(ADMIN), "a token was printed: {out}");
    }
    // Distinct tokens pass.
    let (ok, out, _) = run(
        &config,
        &["check", "--config", "CONFIG"],
        &[("ACME_TOKEN", ACME), ("GLOBEX_TOKEN", GLOBEX), ("ADMIN_TOKEN", ADMIN)],
    );
    assert!(ok, "{out}");
}

// ---- /metrics and /readyz ----------------------------------------------------------

#[test]
fn metrics_token_guards_metrics_and_the_readiness_depths() {
    let h = Hostd::from_config(&config(file_route()).metrics_token("METRICS_TOKEN", "metrics-token-0123456789"));
    let (status, body) = get(&format!("{}/metrics", h.url), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("server.metrics_token_env"), "{body}");
    assert_eq!(get(&format!("{}/metrics", h.url), Some(ACME)).0, 401, "a tenant token is not the metrics token");
    let (status, body) = get(&format!("{}/metrics", h.url), Some("metrics-token-0123456789"));
    assert_eq!(status, 200, "{body}");

    let (status, body) = get(&format!("{}/readyz", h.url), None);
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready, json!({"status": "ready"}), "depths only for the metrics token");
    let (_, body) = get(&format!("{}/readyz", h.url), Some("metrics-token-0123456789"));
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["spool_depth"], 0, "{ready}");
    assert_eq!(get(&format!("{}/healthz", h.url), None).0, 200);
}

#[test]
fn metrics_listen_moves_metrics_and_readiness_off_the_ingest_listener() {
    let h = Hostd::from_config(&config(file_route()).metrics_listen("127.0.0.1:0"));
    let log = h.stderr();
    let ops = log
        .split("metrics listener on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics listener in the log:\n{log}"))
        .to_string();
    for path in ["/metrics", "/readyz"] {
        let (status, body) = get(&format!("{}{path}", h.url), None);
        assert_eq!(status, 404, "{path} on the ingest listener: {body}");
        assert!(body.contains("server.metrics_listen"), "{body}");
    }
    assert_eq!(get(&format!("{}/healthz", h.url), None).0, 200, "healthz stays on the ingest listener");
    let (status, body) = get(&format!("{ops}/metrics"), None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&format!("{ops}/readyz"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("spool_depth"), "{body}");
    assert_eq!(get(&format!("{ops}/healthz"), None).0, 200);
    // Ingest stays where it was, and only there.
    let (status, body) = h.post_json(Some(ACME), &event(1));
    assert_eq!(status, 202, "{body}");
    let resp = reqwest::blocking::Client::new()
        .post(format!("{ops}/v1/events"))
        .bearer_auth(ACME)
        .header("content-type", "application/json")
        .body(event(2).to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

// ---- Host header of the unauthenticated quickstart ----------------------------------------

/// One HTTP/1.1 request with exactly these headers; returns the status and the body.
fn raw_request(url: &str, method: &str, path: &str, host: &str, body: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

#[test]
fn the_unauthenticated_quickstart_refuses_a_forged_host() {
    let h = Hostd::start(&["--plugin", plugin("pass_through").to_str().unwrap(), "--out", "out.jsonl"], &[]);
    let port = h.url.rsplit(':').next().unwrap().to_string();
    let body = event(1).to_string();
    // A page at evil.example rebound to 127.0.0.1 sends its own name.
    for host in ["evil.example", &format!("evil.example:{port}"), "127.0.0.1.nip.io"] {
        let (status, answer) = raw_request(&h.url, "POST", "/v1/events", host, &body);
        assert_eq!(status, 421, "Host {host}: {answer}");
        assert!(answer.contains("misdirected_request") && answer.contains("DNS rebinding"), "{answer}");
        assert_eq!(raw_request(&h.url, "GET", "/metrics", host, "").0, 421, "metrics with Host {host}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(read_jsonl(&h.path("out.jsonl")).is_empty(), "a forged-Host request was delivered");

    for (step, host) in
        [(2, format!("localhost:{port}")), (3, format!("127.0.0.1:{port}")), (4, "localhost".to_string())]
    {
        let (status, answer) = raw_request(&h.url, "POST", "/v1/events", &host, &event(step).to_string());
        assert_eq!(status, 202, "Host {host}: {answer}");
    }
    assert_eq!(wait_for_lines(&h.path("out.jsonl"), 3, Duration::from_secs(10)).len(), 3);
}

#[test]
fn an_authenticated_quickstart_does_not_check_the_host() {
    let token = "quickstart-token-0123456789";
    let h = Hostd::start(
        &["--plugin", plugin("pass_through").to_str().unwrap(), "--out", "out.jsonl", "--token", token],
        &[],
    );
    let addr = h.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let body = event(1).to_string();
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: hostd.example.com\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}

// ---- proxies ----------------------------------------------------------------------------

/// A port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn proxy_variables_in_the_environment_are_ignored() {
    let rx = Receiver::start(|_, _| Reply::ok());
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let mut config = config(webhook(&format!("{}/hook", rx.url))).allow_private_targets();
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        config = config.env(var, &dead);
    }
    let h = Hostd::from_config(&config);
    let (status, body) = h.post_json(Some(ACME), &event(1));
    assert_eq!(status, 202, "{body}");
    let got = rx.wait_delivered("hook", 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "delivery went to the dead proxy: {:?}", h.dlq(ADMIN));
}

#[test]
fn server_http_proxy_is_used_when_configured() {
    // The receiver plays the proxy: a forward proxy gets the request for the target.
    let rx = Receiver::start(|_, _| Reply::ok());
    let proxy_port = rx.url.rsplit(':').next().unwrap().to_string();
    // `localhost`, a name the resolver would refuse, unless it is the proxy's.
    let proxy = format!("http://localhost:{proxy_port}");
    let h = Hostd::from_config(&config(webhook("http://hooks.invalid/proxied")).http_proxy(&proxy));
    let (status, body) = h.post_json(Some(ACME), &event(1));
    assert_eq!(status, 202, "{body}");
    let got = rx.wait_delivered("proxied", 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "not delivered through the proxy: {:?}", h.dlq(ADMIN));
    assert_eq!(got[0].header("host"), "hooks.invalid");
}

// ---- private targets ----------------------------------------------------------------------

#[test]
fn a_loopback_address_url_is_refused_at_load() {
    let loopback = config(webhook("http://127.0.0.1:9/hook"));
    let (check, start) = refused(&loopback.to_toml(), &loopback.envs());
    for out in [&check, &start] {
        assert!(out.contains("route `default`: url: 127.0.0.1 is a loopback address"), "{out}");
        assert!(out.contains("server.allow_private_targets"), "{out}");
    }
    let metadata = config(webhook("http://169.254.169.254/latest/meta-data"));
    let (check, _) = refused(&metadata.to_toml(), &metadata.envs());
    assert!(check.contains("169.254.169.254 is a link-local address"), "{check}");
    let mapped = config(webhook("http://[::ffff:127.0.0.1]:9/"));
    let (check, _) = refused(&mapped.to_toml(), &mapped.envs());
    assert!(check.contains("::ffff:127.0.0.1 is a loopback address"), "{check}");
}

#[test]
fn a_name_resolving_to_loopback_is_dead_lettered_at_once() {
    let rx = Receiver::start(|_, _| Reply::ok());
    let port = rx.url.rsplit(':').next().unwrap().to_string();
    let h = Hostd::from_config(&config(webhook(&format!("http://localhost:{port}/hook"))));
    let (status, body) = h.post_json(Some(ACME), &event(1));
    assert_eq!(status, 202, "{body}");
    let dlq = h.wait_dlq(ADMIN, 1, Duration::from_secs(10));
    assert_eq!(dlq.len(), 1, "not dead-lettered");
    let entry = &dlq[0];
    assert_eq!(entry["reason"], "rejected", "{entry}");
    assert_eq!(entry["attempts"], 1, "a refused target is not retried: {entry}");
    let error = entry["last_error"].as_str().unwrap();
    assert!(error.starts_with("route `default`: refused target: "), "{error}");
    assert!(error.contains("is a loopback address (what `localhost` resolves to)"), "{error}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.requests().is_empty(), "the receiver was reached");
}

#[test]
fn private_targets_are_reached_when_allowed() {
    let rx = Receiver::start(|_, _| Reply::ok());
    let port = rx.url.rsplit(':').next().unwrap().to_string();
    let allow_all: fn(Config) -> Config = Config::allow_private_targets;
    let allow_range: fn(Config) -> Config = |c| c.allowed_private_targets(&["127.0.0.0/8"]);
    let servers =
        [("allow_private_targets = true", allow_all), ("allowed_private_targets = [\"127.0.0.0/8\"]", allow_range)];
    for (n, (server, allow)) in servers.iter().enumerate() {
        let path = format!("hook{n}");
        for url in [format!("http://localhost:{port}/{path}"), format!("http://127.0.0.1:{port}/{path}")] {
            let before = rx.delivered(&path).len();
            let h = Hostd::from_config(&allow(config(webhook(&url))));
            let (status, body) = h.post_json(Some(ACME), &event(1));
            assert_eq!(status, 202, "{body}");
            let got = rx.wait_delivered(&path, before + 1, Duration::from_secs(10));
            assert_eq!(got.len(), before + 1, "{server}, {url}: {:?}", h.dlq(ADMIN));
        }
    }
    // A bad range is an error naming it.
    let bad_range = config(file_route()).allowed_private_targets(&["10.0.0.0/33"]);
    let (check, _) = refused(&bad_range.to_toml(), &bad_range.envs());
    assert!(check.contains("`10.0.0.0/33` is not an address range"), "{check}");
}

// ---- events per request --------------------------------------------------------------

fn policy_calls(h: &Hostd) -> u64 {
    let (_, body) = get(&format!("{}/admin/v1/tenants/acme/policy", h.url), Some(ADMIN));
    let v: Value = serde_json::from_str(&body).unwrap();
    v["stats"]["calls"].as_u64().unwrap_or_else(|| panic!("no stats.calls in {v}"))
}

#[test]
fn too_many_events_in_one_request_is_413_before_any_policy_runs() {
    let h = Hostd::from_config(&config(file_route()).max_events_per_request(5));
    let six: Vec<Value> = (0..6).map(event).collect();
    let (status, body) = h.post(Some(ACME), "application/x-ndjson", ndjson(&six));
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_many_events", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("6 events") && message.contains("at most 5"), "{message}");
    assert!(message.contains("server.max_events_per_request"), "{message}");
    let (status, _) = h.post_json(Some(ACME), &Value::Array(six.clone()));
    assert_eq!(status, 413, "a JSON array counts the same");
    assert_eq!(policy_calls(&h), 0, "the policy ran on a refused batch");

    let (status, body) = h.post(Some(ACME), "application/x-ndjson", ndjson(&six[..5]));
    assert_eq!(status, 202, "{body}");
    assert_eq!(wait_for_lines(&h.path("out.jsonl"), 5, Duration::from_secs(10)).len(), 5);
}

#[test]
fn the_default_cap_is_1000_events() {
    let h = Hostd::from_config(&config(file_route()));
    let many: Vec<Value> = (0..1001).map(|i| json!({"event": "e", "run_id": format!("r{i}")})).collect();
    let (status, body) = h.post(Some(ACME), "application/x-ndjson", ndjson(&many));
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("1001 events; at most 1000"), "{body}");
    let (status, body) = h.post(Some(ACME), "application/x-ndjson", ndjson(&many[..1000]));
    assert_eq!(status, 202, "{body}");
}
