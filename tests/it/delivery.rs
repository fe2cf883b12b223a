//! Signed webhooks, the retry schedule, per-route isolation and ordering, dedupe and the
//! DLQ — against real HTTP receivers.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hostd_e2e::receiver::{Received, Receiver, Reply};
use hostd_e2e::*;
use sha2::Sha256;
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token";
const WAIT: Duration = Duration::from_secs(15);
/// Two signing secrets, as during a rotation.
const SECRET_NEW: &str = "whsec_c2VjcmV0LWtleS1uZXctMDEyMzQ1Njc4OQ==";
const SECRET_OLD: &str = "whsec_c2VjcmV0LWtleS1vbGQtOTg3NjU0MzIxMA==";

/// A tenant `id` (token `{id}-token`) whose policy delivers to `routes`.
fn tenant(id: &str, policy: &str, routes: Vec<(&str, Route)>) -> Tenant {
    routes.into_iter().fold(Tenant::new(id, plugin(policy)), |t, (name, route)| t.route(name, route))
}

/// A webhook to `url` signed with both secrets of the rotation.
fn webhook(url: &str) -> Route {
    Route::webhook(url, "WH_NEW").secret_envs(&["WH_NEW", "WH_OLD"])
}

fn config(tenants: Vec<Tenant>) -> Config {
    let server = Config::new()
        .admin_token("ADMIN_TOKEN", ADMIN)
        .allow_private_targets()
        .env("WH_NEW", SECRET_NEW)
        .env("WH_OLD", SECRET_OLD);
    tenants.into_iter().fold(server, Config::tenant)
}

fn start(tenants: Vec<Tenant>) -> Hostd {
    Hostd::from_config(&config(tenants))
}

fn send(h: &Hostd, tenant: &str, events: &[Value]) -> Value {
    let (status, body) = h.post(Some(&tenant_token(tenant)), "application/x-ndjson", ndjson(events));
    assert_eq!(status, 202, "{body}");
    body
}

fn dlq_for(h: &Hostd, tenant: &str) -> Vec<Value> {
    h.dlq_of(ADMIN, tenant)
}

fn wait_dlq_for(h: &Hostd, tenant: &str, n: usize) -> Vec<Value> {
    h.wait_dlq_of(ADMIN, tenant, n, WAIT)
}

#[test]
fn retry_matrix() {
    let rx = Receiver::start(|path, nth| match (path, nth) {
        ("r500", 1 | 2) => Reply::status(500),
        ("r429", 1) => Reply::status(429).with_header("retry-after", "2"),
        ("r400", _) => Reply::status(400).with_body("field `amount` is bad"),
        ("slow", 1) => Reply::ok().after(Duration::from_secs(2)),
        ("always503", _) => Reply::status(503),
        _ => Reply::ok(),
    });
    let fast_retry = |url: &str| webhook(url).retry(&["200ms", "400ms", "600ms"]).timeout("500ms");
    let route = |path: &str| vec![("default", fast_retry(&format!("{}/{path}", rx.url)))];
    let h = start(vec![
        tenant("t500", "pass_through", route("r500")),
        tenant("t429", "pass_through", route("r429")),
        tenant("t400", "pass_through", route("r400")),
        tenant("tslow", "pass_through", route("slow")),
        tenant("tdown", "pass_through", vec![("default", fast_retry("http://127.0.0.1:1/refused"))]),
        tenant("t503", "pass_through", route("always503")),
    ]);
    for t in ["t500", "t429", "t400", "tslow", "tdown", "t503"] {
        send(&h, t, &[tool_end(&format!("{t}-root"), "run", 1, json!({"t": t}))]);
    }

    // 500 → 500 → 200 delivers on the third try, with the same id every time.
    let got = rx.wait_delivered("r500", 1, WAIT);
    assert_eq!(got.len(), 1);
    let tries = rx.on("r500");
    assert_eq!(tries.len(), 3);
    let id = message_id("t500", "default", "t500-root:on_tool_end:1");
    assert!(tries.iter().all(|r| r.header("webhook-id") == id));
    assert!(tries.iter().all(|r| r.header("idempotency-key") == id));

    // 429 with Retry-After: 2 waits at least 2 s (the schedule alone would wait 200 ms).
    let got = rx.wait_delivered("r429", 1, WAIT);
    assert_eq!(got.len(), 1);
    let tries = rx.on("r429");
    let gap = tries[1].at - tries[0].at;
    assert!(gap >= Duration::from_secs(2), "Retry-After honoured: waited {gap:?}");

    // A timeout is retried: the first answer comes after the route's 500 ms timeout.
    rx.wait_delivered("slow", 2, WAIT);
    assert_eq!(rx.on("slow").len(), 2);
    assert!(dlq_for(&h, "tslow").is_empty());

    // 400 goes to the DLQ at once, with the status and the body excerpt.
    let dead = wait_dlq_for(&h, "t400", 1);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["attempts"], 1);
    assert_eq!(dead[0]["last_status"], 400);
    assert_eq!(dead[0]["reason"], "rejected");
    assert!(dead[0]["last_error"].as_str().unwrap().contains("field `amount` is bad"), "{}", dead[0]);
    assert_eq!(dead[0]["payload"]["data"]["t"], "t400", "the last payload is kept");
    assert_eq!(rx.on("r400").len(), 1);

    // Connection refused retries, then the exhausted schedule dead-letters: 1 + 3 attempts.
    let dead = wait_dlq_for(&h, "tdown", 1);
    assert_eq!(dead[0]["attempts"], 4, "{}", dead[0]);
    assert_eq!(dead[0]["reason"], "exhausted");
    assert_eq!(dead[0]["last_status"], Value::Null);
    let err = dead[0]["last_error"].as_str().unwrap().to_lowercase();
    assert!(err.contains("connect"), "{err}");

    let dead = wait_dlq_for(&h, "t503", 1);
    assert_eq!(dead[0]["attempts"], 4);
    assert_eq!(dead[0]["last_status"], 503);
    assert_eq!(rx.on("always503").len(), 4);
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn key_of(secret: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap()
}

#[test]
fn signatures_verify_and_a_tampered_body_fails() {
    let rx = Receiver::start(|_, _| Reply::ok());
    let hook = webhook(&format!("{}/hook", rx.url)).headers(&[("X-Team", "ml")]);
    let h = start(vec![tenant("acme", "pass_through", vec![("default", hook)])]);
    send(&h, "acme", &[tool_end("root", "r1", 1, json!({"z": 1, "a": {"y": 2, "b": 3}}))]);
    let got = rx.wait_delivered("hook", 1, WAIT);
    let r = &got[0];
    let body = &r.body;
    assert_eq!(r.header("x-team"), "ml");
    assert_eq!(r.header("content-type"), "application/json");
    // Keys sorted: the body is canonical.
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.starts_with("{\"data\":{\"a\":{\"b\":3,\"y\":2},\"z\":1},\"event\""), "{text}");

    let (id, ts) = (r.header("webhook-id"), r.header("webhook-timestamp"));
    let signed = |b: &[u8]| [id.as_bytes(), b".", ts.as_bytes(), b".", b].concat();
    let sigs: Vec<&str> = r.header("webhook-signature").split(' ').collect();
    assert_eq!(sigs.len(), 2, "one signature per secret during a rotation");
    assert_eq!(sigs[0], format!("v1,{}", hmac_b64(&key_of(SECRET_NEW), &signed(body))));
    assert_eq!(sigs[1], format!("v1,{}", hmac_b64(&key_of(SECRET_OLD), &signed(body))));

    let mut mac = Hmac::<Sha256>::new_from_slice(&key_of(SECRET_NEW)).unwrap();
    mac.update(body);
    let x_sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(r.header("x-signature-256"), x_sig);

    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_ne!(sigs[0], format!("v1,{}", hmac_b64(&key_of(SECRET_NEW), &signed(&tampered))));
    let mut mac = Hmac::<Sha256>::new_from_slice(&key_of(SECRET_NEW)).unwrap();
    mac.update(&tampered);
    assert_ne!(r.header("x-signature-256"), format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
    assert!(!h.stderr().contains("c2VjcmV0"), "no secret in the logs");
}

#[test]
fn a_hanging_route_never_delays_another_route_or_tenant() {
    let rx = Receiver::start(|path, _| match path {
        "hang" => Reply::ok().after(Duration::from_secs(30)),
        _ => Reply::ok(),
    });
    let h = start(vec![
        tenant(
            "a",
            "fan_out",
            vec![
                ("hang", webhook(&format!("{}/hang", rx.url)).timeout("60s").concurrency(4)),
                ("fast", webhook(&format!("{}/fast", rx.url))),
            ],
        )
        .policy_config(json!({"routes": ["hang", "fast"]})),
        tenant("b", "pass_through", vec![("default", webhook(&format!("{}/other-tenant", rx.url)))]),
    ]);
    let started = Instant::now();
    for i in 0..20 {
        send(&h, "a", &[tool_end("ra", &format!("a{i}"), i, json!({"i": i}))]);
        send(&h, "b", &[tool_end("rb", &format!("b{i}"), i, json!({"i": i}))]);
    }
    let fast = rx.wait_delivered("fast", 20, WAIT);
    let other = rx.wait_delivered("other-tenant", 20, WAIT);
    assert_eq!(fast.len(), 20, "route `fast` of the same tenant kept delivering");
    assert_eq!(other.len(), 20, "tenant b kept delivering");
    assert!(rx.on("hang").len() <= 4, "at most `concurrency` requests wait on the hanging endpoint");
    let last = fast.iter().chain(&other).map(|r| r.at).max().unwrap();
    eprintln!("all 40 deliveries of the healthy routes done {:?} after the first post", last - started);
}

#[test]
fn per_key_ordering_holds_through_retries() {
    // Every third request fails: many deliveries need a retry.
    let rx = Receiver::start(|_, nth| if nth % 3 == 2 { Reply::status(503) } else { Reply::ok() });
    let route = webhook(&format!("{}/ordered", rx.url)).retry(&["20ms"; 6]).per_key_ordering();
    let h = start(vec![tenant("acme", "pass_through", vec![("default", route)])]);
    let (runs, steps) = (5u64, 20u64);
    for step in 0..steps {
        let batch: Vec<Value> =
            (0..runs).map(|r| tool_end(&format!("run{r}"), &format!("t{r}-{step}"), step, json!({}))).collect();
        send(&h, "acme", &batch);
    }
    let got = rx.wait_delivered("ordered", (runs * steps) as usize, Duration::from_secs(30));
    assert_eq!(got.len(), (runs * steps) as usize);
    assert!(rx.on("ordered").len() > got.len(), "the endpoint really was flaky");
    for r in 0..runs {
        let root = format!("run{r}");
        let order: Vec<u64> = got
            .iter()
            .map(Received::json)
            .filter(|p| p["root_run_id"] == root.as_str())
            .map(|p| p["step"].as_u64().unwrap())
            .collect();
        assert_eq!(order, (0..steps).collect::<Vec<_>>(), "run {root} delivered out of order");
    }
}

#[test]
fn the_same_batch_twice_delivers_once() {
    let rx = Receiver::start(|_, _| Reply::ok());
    let h = start(vec![tenant("acme", "pass_through", vec![("default", webhook(&format!("{}/d", rx.url)))])]);
    let batch: Vec<Value> = (0..5).map(|i| tool_end("root", &format!("r{i}"), i, json!({"i": i}))).collect();
    let first = send(&h, "acme", &batch);
    assert_eq!(first["duplicates"], 0);
    let second = send(&h, "acme", &batch);
    assert_eq!(second["duplicates"], 5);
    assert!(second["events"].as_array().unwrap().iter().all(|e| e["duplicate"] == true));
    rx.wait_delivered("d", 5, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.on("d").len(), 5, "each event delivered once");

    let metrics = reqwest::blocking::get(format!("{}/metrics", h.url)).unwrap().text().unwrap();
    for line in [
        "hostd_events_accepted_total{tenant=\"acme\"} 5",
        "hostd_events_duplicate_total{tenant=\"acme\"} 5",
        "hostd_deliveries_delivered_total{tenant=\"acme\",route=\"default\"} 5",
        "hostd_spool_depth 0",
        "hostd_dlq_depth 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "/metrics lacks `{line}`:\n{metrics}");
    }
    assert!(metrics.contains("hostd_delivery_latency_seconds_bucket"), "latency histogram");
    let ready: Value = reqwest::blocking::get(format!("{}/readyz", h.url)).unwrap().json().unwrap();
    assert_eq!(ready["status"], "ready");
}

#[test]
fn dlq_list_show_replay_purge_by_cli_and_api() {
    // acme's and globex's endpoints reject their first three requests, then accept.
    let rx = Receiver::start(|path, nth| match path {
        "acme" | "globex" if nth <= 3 => Reply::status(422).with_body("not yet"),
        _ => Reply::ok(),
    });
    let routes = |p: &str| vec![("default", webhook(&format!("{}/{p}", rx.url)))];
    // fixme's policy is wrong at first (it names a route that does not exist).
    let tenants = |fixme_policy: &str| {
        vec![
            tenant("acme", "pass_through", routes("acme")),
            tenant("globex", "pass_through", routes("globex")),
            tenant("fixme", fixme_policy, routes("fixme")),
        ]
    };
    let mut h = start(tenants("hostile_unknown_route"));
    for i in 0..3 {
        send(&h, "acme", &[tool_end("root", &format!("r{i}"), i, json!({"i": i}))]);
    }
    send(&h, "globex", &[tool_end("groot", "g", 0, json!({}))]);
    send(&h, "fixme", &[tool_end("froot", "f", 0, json!({"fixed": true}))]);
    assert_eq!(wait_dlq_for(&h, "acme", 3).len(), 3);
    assert_eq!(wait_dlq_for(&h, "fixme", 1)[0]["reason"], "unknown_route");

    // list and show, by the CLI.
    let (ok, out, err) = dlq_cli(&h, ADMIN, &["list", "--tenant", "acme"]);
    assert!(ok, "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["last_status"] == 422 && l["reason"] == "rejected"));
    let first_id = lines[0]["id"].as_i64().unwrap();
    let (ok, out, _) = dlq_cli(&h, ADMIN, &["show", &first_id.to_string()]);
    assert!(ok);
    let shown: Value = serde_json::from_str(&out).unwrap();
    // The original event. The three dead-letter in whichever order the route's
    // workers finish them, so the first listed is any of them.
    assert!(["r0", "r1", "r2"].contains(&shown["event"]["run_id"].as_str().unwrap_or_default()), "{shown}");

    // A tenant token sees only its own entries.
    let (ok, out, _) = dlq_cli(&h, &tenant_token("globex"), &["list"]);
    assert!(ok);
    assert!(out.lines().all(|l| l.contains("\"tenant\":\"globex\"")) && out.lines().count() == 1);
    let (ok, _, err) = dlq_cli(&h, &tenant_token("globex"), &["show", &first_id.to_string()]);
    assert!(!ok && err.contains("HTTP 403"), "{err}");
    let (ok, _, err) = dlq_cli(&h, &tenant_token("globex"), &["replay", &first_id.to_string(), "--as-is"]);
    assert!(!ok && err.contains("HTTP 403"), "{err}");
    let (ok, _, err) = dlq_cli(&h, &tenant_token("globex"), &["list", "--tenant", "acme"]);
    assert!(!ok && err.contains("HTTP 403"), "{err}");
    let no_token = reqwest::blocking::get(format!("{}/admin/v1/dlq", h.url)).unwrap();
    assert_eq!(no_token.status().as_u16(), 401);

    // Replay as-is: the endpoint now accepts, so all three arrive.
    let (ok, out, err) = dlq_cli(&h, ADMIN, &["replay", "--all", "--tenant", "acme", "--as-is"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"replayed\":3"), "{out}");
    assert_eq!(rx.wait_delivered("acme", 3, WAIT).len(), 3);
    assert!(dlq_for(&h, "acme").is_empty());

    // Purge by the admin API.
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/admin/v1/dlq/purge", h.url))
        .bearer_auth(ADMIN)
        .json(&json!({"all": true, "tenant": "globex"}))
        .send()
        .unwrap();
    assert_eq!(resp.json::<Value>().unwrap()["purged"], 1);

    // The policy was wrong: deploy a fixed one, restart, replay through it.
    let (ok, _, err) = dlq_cli(&h, ADMIN, &["replay", "--all", "--tenant", "fixme", "--as-is"]);
    assert!(ok, "{err}");
    assert_eq!(dlq_for(&h, "fixme").len(), 1, "a policy fault has no payload to resend as-is");
    h.rewrite_config(&config(tenants("pass_through")).to_toml());
    h.restart();
    let (ok, out, err) = dlq_cli(&h, ADMIN, &["replay", "--all", "--tenant", "fixme", "--through-policy"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"replayed\":1"), "{out}");
    let got = rx.wait_delivered("fixme", 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["data"]["fixed"], true);
    assert_eq!(
        got[0].header("webhook-id"),
        message_id("fixme", "default", "froot:on_tool_end:0"),
        "the replay keeps the idempotency key"
    );
    assert!(dlq_for(&h, "fixme").is_empty());
}
