//! The spool as stored on disk, against the real binary: DLQ ids that are never reused
//! and writes scoped to the tenant, private files, `keep_original = false`, a paged DLQ
//! listing, one hostd per data_dir, readiness that follows the writer, and depth gauges
//! counted from the store.

use hostd_e2e::receiver::{Receiver, Reply};
use hostd_e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const ADMIN: &str = "admin-token";
const WAIT: Duration = Duration::from_secs(20);

/// A tenant `id` (token `{id}-token`) whose policy delivers to one webhook route.
fn tenant(id: &str, policy: &str, url: &str) -> Tenant {
    let route = Route::webhook(url, "WH").secret_envs(&["WH"]).retry(&["20ms"]);
    Tenant::new(id, plugin(policy)).route("default", route)
}

fn config(tenants: Vec<Tenant>) -> Config {
    let server = Config::new().admin_token("ADMIN_TOKEN", ADMIN).allow_private_targets().env("WH", "whsec_c2VjcmV0");
    tenants.into_iter().fold(server, Config::tenant)
}

fn send(h: &Hostd, tenant: &str, events: &[Value]) {
    let (status, body) = h.post(Some(&tenant_token(tenant)), "application/x-ndjson", ndjson(events));
    assert_eq!(status, 202, "{body}");
}

fn dlq_of(h: &Hostd, tenant: &str, n: usize) -> Vec<Value> {
    h.wait_dlq_of(ADMIN, tenant, n, WAIT)
}

fn admin(h: &Hostd, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::blocking::Client::new().request(method, format!("{}{path}", h.url)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[test]
fn a_stale_dlq_id_never_reaches_another_tenants_entry() {
    let rx = Receiver::start(|_, _| Reply::status(422).with_body("no"));
    let url = |p: &str| format!("{}/{p}", rx.url);
    let h = Hostd::from_config(&config(vec![
        tenant("acme", "pass_through", &url("a")),
        tenant("globex", "pass_through", &url("g")),
    ]));
    send(&h, "acme", &[tool_end("ra", "a1", 0, json!({}))]);
    let stale = dlq_of(&h, "acme", 1)[0]["id"].as_i64().unwrap();
    // acme deletes its (highest) entry; globex's next dead letter must not take the id.
    let (status, body) =
        admin(&h, &tenant_token("acme"), reqwest::Method::DELETE, &format!("/admin/v1/dlq/{stale}"), None);
    assert_eq!((status, &body["purged"]), (200, &json!(1)), "{body}");
    send(&h, "globex", &[tool_end("rg", "g1", 0, json!({"globex": true}))]);
    let globex_id = dlq_of(&h, "globex", 1)[0]["id"].as_i64().unwrap();
    assert!(globex_id > stale, "globex's entry took the purged id {stale}");

    // acme's stale id, by acme and by the admin: replay and delete find nothing.
    for who in [tenant_token("acme"), ADMIN.to_string()] {
        let (ok, _, err) = dlq_cli(&h, &who, &["replay", &stale.to_string(), "--as-is"]);
        assert!(!ok && err.contains("HTTP 404"), "{err}");
        let (ok, _, err) = dlq_cli(&h, &who, &["replay", &stale.to_string(), "--through-policy"]);
        assert!(!ok && err.contains("HTTP 404"), "{err}");
        let (ok, _, err) = dlq_cli(&h, &who, &["purge", &stale.to_string()]);
        assert!(!ok && err.contains("HTTP 404"), "{err}");
        let (status, _) = admin(&h, &who, reqwest::Method::DELETE, &format!("/admin/v1/dlq/{stale}"), None);
        assert_eq!(status, 404);
    }
    // acme naming globex's id is refused and changes nothing.
    let (ok, _, err) = dlq_cli(&h, &tenant_token("acme"), &["purge", &globex_id.to_string()]);
    assert!(!ok && err.contains("HTTP 403"), "{err}");
    let (status, _) =
        admin(&h, &tenant_token("acme"), reqwest::Method::DELETE, &format!("/admin/v1/dlq/{globex_id}"), None);
    assert_eq!(status, 403);
    let (ok, out, _) = dlq_cli(&h, &tenant_token("acme"), &["purge", "--all"]);
    assert!(ok && out.contains("\"purged\":0"), "{out}");
    let left = dlq_of(&h, "globex", 1);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], globex_id);
    assert!(rx.on("g").len() == 1, "globex's entry was not replayed by anyone");
}

#[test]
fn data_dir_and_spool_files_are_private() {
    let rx = Receiver::start(|_, _| Reply::ok());
    let config = config(vec![tenant("acme", "pass_through", &format!("{}/d", rx.url))]);
    let h = Hostd::from_config(&config);
    send(&h, "acme", &[tool_end("r", "r1", 0, json!({}))]);
    rx.wait_delivered("d", 1, WAIT);
    let data = h.path("data");
    assert_eq!(mode(&data), 0o700, "data_dir");
    assert_eq!(mode(&data.join("compiled")), 0o700, "the compiled-policy cache");
    for name in ["spool.db", "spool.db-wal", "spool.db-shm", "LOCK"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }

    // A data_dir left wide by an older hostd is tightened at startup, and the log says so.
    let h2 = Hostd::with_config_files(&config.to_toml(), &config.envs(), |dir| {
        let data = dir.join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(data.join("spool.db"), b"").unwrap();
        std::fs::set_permissions(data.join("spool.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    });
    let data = h2.path("data");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("spool.db")), 0o600);
    let log = h2.stderr();
    assert!(log.contains("tightened the permissions of") && log.contains("from 0755 to 0700"), "{log}");
}

/// Whether `needle` occurs in any of the spool's files.
fn spool_contains(data: &Path, needle: &str) -> bool {
    ["spool.db", "spool.db-wal"].iter().any(|name| {
        let bytes = std::fs::read(data.join(name)).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

#[test]
fn keep_original_false_stores_no_raw_event() {
    // Every delivery fails for good, so each event ends in the DLQ.
    let rx = Receiver::start(|_, _| Reply::status(422));
    let redact = json!({"patterns": {"marker": "MARKER-[0-9a-f]+"}});
    let h = Hostd::from_config(&config(vec![
        tenant("lean", "redact_pii", &format!("{}/lean", rx.url)).policy_config(&redact).keep_original(false),
        tenant("full", "redact_pii", &format!("{}/full", rx.url)).policy_config(&redact),
    ]));
    let lean_marker = "MARKER-1ea17ea1";
    let full_marker = "MARKER-f0110f01";
    send(&h, "lean", &[tool_end("root", "r1", 0, json!({"output": format!("ticket {lean_marker}")}))]);
    send(&h, "full", &[tool_end("root", "r1", 0, json!({"output": format!("ticket {full_marker}")}))]);
    let lean = dlq_of(&h, "lean", 1);
    let full = dlq_of(&h, "full", 1);
    assert_eq!((lean.len(), full.len()), (1, 1));
    assert_eq!(lean[0]["event"], Value::Null, "no original event for keep_original = false");
    assert!(lean[0]["payload"].to_string().contains("[REDACTED:marker]"), "{}", lean[0]);
    assert_eq!(full[0]["event"]["data"]["output"], format!("ticket {full_marker}"));

    let data = h.path("data");
    assert!(spool_contains(&data, full_marker), "the check finds a kept original");
    assert!(!spool_contains(&data, lean_marker), "lean's raw event is in the spool");

    // Replay through the policy is refused, naming the tenant and the setting; as-is works.
    let id = lean[0]["id"].to_string();
    let (ok, _, err) = dlq_cli(&h, ADMIN, &["replay", &id, "--through-policy"]);
    assert!(!ok && err.contains("HTTP 409") && err.contains("`lean`") && err.contains("keep_original"), "{err}");
    let (ok, _, err) = dlq_cli(&h, ADMIN, &["replay", "--all", "--through-policy"]);
    assert!(!ok && err.contains("`lean`"), "{err}");
    let (ok, out, err) = dlq_cli(&h, &tenant_token("lean"), &["replay", &id, "--as-is"]);
    assert!(ok && out.contains("\"replayed\":1"), "{out}{err}");
}

#[test]
fn the_dlq_listing_is_paged_and_the_cli_follows_it() {
    let h = Hostd::from_config(&config(vec![tenant("acme", "hostile_unknown_route", "http://x")]));
    let events: Vec<Value> = (0..250).map(|i| tool_end("root", &format!("r{i}"), i, json!({}))).collect();
    send(&h, "acme", &events);

    let (status, page) = admin(&h, ADMIN, reqwest::Method::GET, "/admin/v1/dlq", None);
    assert_eq!(status, 200);
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 100, "the default page");
    let next = page["next"].as_i64().expect("a cursor");
    assert_eq!(next, entries[99]["id"].as_i64().unwrap());
    let (_, page2) = admin(&h, ADMIN, reqwest::Method::GET, &format!("/admin/v1/dlq?after={next}&limit=1000"), None);
    assert_eq!(page2["entries"].as_array().unwrap().len(), 150);
    assert_eq!(page2["next"], Value::Null);
    let (status, err) = admin(&h, ADMIN, reqwest::Method::GET, "/admin/v1/dlq?limit=1001", None);
    assert!(status == 400 && err["error"]["message"].as_str().unwrap().contains("limit"), "{err}");

    let (ok, out, err) = dlq_cli(&h, ADMIN, &["list"]);
    assert!(ok, "{err}");
    let ids: Vec<i64> =
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 250);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order, each once");
    let (ok, out, _) = dlq_cli(&h, ADMIN, &["list", "--limit", "120"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 120);

    // More than a page of ids in one request is refused; `--all` purges every entry.
    let many: Vec<i64> = (1..=1001).collect();
    let (status, _) = admin(&h, ADMIN, reqwest::Method::POST, "/admin/v1/dlq/purge", Some(json!({"ids": many})));
    assert_eq!(status, 400);
    let (ok, out, _) = dlq_cli(&h, ADMIN, &["purge", "--all"]);
    assert!(ok && out.contains("\"purged\":250"), "{out}");
}

#[test]
fn a_second_hostd_on_the_same_data_dir_exits_naming_it() {
    let config = config(vec![tenant("acme", "pass_through", "http://x")]);
    let first = Hostd::from_config(&config);
    let mut second = Command::new(hostd_bin())
        .args(["--config", first.path("hostd.toml").to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .current_dir(first.dir.path())
        .envs(config.envs())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for_exit(&mut second, WAIT), "a second hostd is running on the same data_dir");
    let out = second.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second hostd must not run: {err}");
    let data = first.path("data");
    assert!(err.contains(&format!("data_dir {} is in use by another hostd", data.display())), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    assert!(first.healthy(), "the first one keeps running");
}

#[test]
fn depth_gauges_follow_the_store_after_every_delivery_dead_letters() {
    let rx = Receiver::start(|_, _| Reply::status(503));
    let h = Hostd::from_config(&config(vec![tenant("acme", "pass_through", &format!("{}/d", rx.url))]));
    let n = 300;
    let events: Vec<Value> = (0..n).map(|i| tool_end("root", &format!("r{i}"), i, json!({}))).collect();
    send(&h, "acme", &events);
    assert_eq!(dlq_of(&h, "acme", n as usize).len(), n as usize, "every delivery dead-lettered");
    let want = ["hostd_spool_depth 0".to_string(), format!("hostd_dlq_depth {n}")];
    let probe = || {
        let metrics = reqwest::blocking::get(format!("{}/metrics", h.url)).unwrap().text().unwrap();
        let missing: Vec<&String> = want.iter().filter(|w| !metrics.lines().any(|l| l == w.as_str())).collect();
        (missing, metrics)
    };
    let (missing, metrics) =
        poll_every(Duration::from_millis(100), Duration::from_secs(5), probe, |(m, _)| m.is_empty());
    assert!(missing.is_empty(), "/metrics lacks {missing:?}:\n{metrics}");
    let ready: Value = reqwest::blocking::get(format!("{}/readyz", h.url)).unwrap().json().unwrap();
    assert_eq!((ready["spool_depth"].as_u64(), ready["dlq_depth"].as_u64()), (Some(0), Some(n)));
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs", at.to_str()?])
            .output()
            .ok()?
            .status
            .success();
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `dir` with one file; returns it.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let mut small = vec![0u8; 512];
    while f.write_all(&small).is_ok() {}
    small.truncate(1);
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

fn readyz(h: &Hostd) -> (u16, Value) {
    let resp = reqwest::blocking::get(format!("{}/readyz", h.url)).unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn readyz_fails_while_the_spool_cannot_write_and_recovers() {
    let rx = Receiver::start(|_, _| Reply::ok());
    let config = config(vec![tenant("acme", "pass_through", &format!("{}/d", rx.url))]);
    let holder = tempfile::tempdir().unwrap();
    let mount_at = holder.path().join("data");
    let Some(_fs) = Tmpfs::mount(&mount_at, "32m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root); the unit test covers the writer's health");
        return;
    };
    let data = mount_at.display().to_string();
    let h = Hostd::from_config(&config.data_dir(&data));
    send(&h, "acme", &[tool_end("root", "r0", 0, json!({}))]);
    assert_eq!(readyz(&h).0, 200);

    let filler = fill(&mount_at);
    let big = json!({"blob": "x".repeat(200 << 10)});
    let mut refused = false;
    for i in 1..20 {
        let (status, body) = h.post(
            Some(&tenant_token("acme")),
            "application/x-ndjson",
            ndjson(&[tool_end("root", "r", i, big.clone())]),
        );
        if status == 503 {
            assert!(body["error"]["message"].as_str().unwrap_or("").contains("full"), "{body}");
            refused = true;
            break;
        }
    }
    assert!(refused, "the full disk refused a batch");
    let (status, body) = readyz(&h);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "spool not writing", "{body}");

    // Room again: the next readiness check probes, finds the spool writing, and ingest works.
    std::fs::remove_file(filler).unwrap();
    assert!(eventually(WAIT, || readyz(&h).0 == 200), "readyz did not recover: {:?}", readyz(&h));
    send(&h, "acme", &[tool_end("root", "after", 100, json!({}))]);
    drop(h); // before the tmpfs is unmounted
}
