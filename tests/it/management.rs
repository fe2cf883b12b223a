//! The management API while ~2,000 events/s flow: the route's URL changes, its signing
//! secret rotates, a second route is added, a token is revoked and another created.
//! Nothing accepted is lost or delivered twice, every event accepted after a change is
//! delivered as the change says, and the revoked token is refused within a second.

use hmac::{Hmac, Mac};
use hostd_e2e::receiver::{Received, Receiver, Reply};
use hostd_e2e::{plugin, Config, Hostd};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token-0123456789abcdef";
const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

struct Api {
    url: String,
    http: reqwest::blocking::Client,
}

impl Api {
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.url)).bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("admin API");
        let status = resp.status();
        let v: Value = resp.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    fn upload(&self, wasm: &std::path::Path) -> String {
        let bytes = std::fs::read(wasm).expect("plugin");
        let resp = self
            .http
            .post(format!("{}/admin/v1/policies", self.url))
            .bearer_auth(ADMIN)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .expect("upload");
        assert_eq!(resp.status(), 201);
        resp.json::<Value>().unwrap()["sha256"].as_str().unwrap().to_string()
    }
}

fn key_of(secret: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap()
}

/// Whether `secret` made one of the request's Standard Webhooks signatures.
fn signed_by(r: &Received, secret: &str) -> bool {
    let signed =
        [r.header("webhook-id").as_bytes(), b".", r.header("webhook-timestamp").as_bytes(), b".", &r.body].concat();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key_of(secret)).unwrap();
    mac.update(&signed);
    use base64::Engine as _;
    let want = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    r.header("webhook-signature").split(' ').any(|s| s == want)
}

fn seq(r: &Received) -> u64 {
    r.json()["data"]["seq"].as_u64().expect("seq in the payload")
}

#[test]
fn changes_under_two_thousand_events_per_second_lose_nothing_and_take_effect_at_once() {
    let rx = Receiver::start(|_, _| Reply::ok());
    let config =
        Config::new().admin_token("ADMIN_TOKEN", ADMIN).secret_key("HOSTD_SECRET_KEY", KEY).allow_private_targets();
    let h = Hostd::from_config(&config);
    let api = Api { url: h.url.clone(), http: reqwest::blocking::Client::new() };
    let sha = api.upload(&plugin("fan_out"));
    let spec = |routes: &[&str]| json!({"id": "acme", "policy": sha, "policy_config": {"routes": routes}});
    api.call(reqwest::Method::POST, "/admin/v1/tenants", Some(spec(&["default"])));
    api.call(
        reqwest::Method::POST,
        "/admin/v1/tenants/acme/routes",
        Some(json!({"name": "default", "type": "webhook", "url": format!("{}/a", rx.url)})),
    );
    let token = |api: &Api| {
        api.call(reqwest::Method::POST, "/admin/v1/tenants/acme/tokens", Some(json!({"scopes": ["ingest"]})))
    };
    let t1 = token(&api);
    let old_secret = api.call(reqwest::Method::GET, "/admin/v1/tenants/acme/routes/default/secrets", None)["secrets"]
        [0]["secret"]
        .as_str()
        .unwrap()
        .to_string();

    // The sender: batches of 40 every 20 ms (2,000 events/s), each event numbered; it
    // notes the number of every event accepted, and when.
    let current_token = Arc::new(Mutex::new(t1["secret"].as_str().unwrap().to_string()));
    let accepted: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (url, current_token, accepted, stop) =
            (h.url.clone(), current_token.clone(), accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            let mut next = 0u64;
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<u64> = (next..next + 40).collect();
                next += 40;
                let body: String = batch
                    .iter()
                    .map(|n| {
                        json!({"event": "on_tool_end", "run_id": format!("r{n}"), "root_run_id": format!("root{}", n % 64),
                               "step": n, "data": {"seq": n}})
                        .to_string()
                            + "\n"
                    })
                    .collect();
                let token = current_token.lock().unwrap().clone();
                let resp = http
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(token)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .expect("post");
                assert_eq!(resp.status(), 202, "{}", resp.text().unwrap_or_default());
                let at = Instant::now();
                accepted.lock().unwrap().extend(batch.into_iter().map(|n| (n, at)));
                let due = started + Duration::from_millis(20 * (next / 40));
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        })
    };
    let pause = || std::thread::sleep(Duration::from_millis(1500));

    pause();
    api.call(
        reqwest::Method::PUT,
        "/admin/v1/tenants/acme/routes/default",
        Some(json!({"type": "webhook", "url": format!("{}/b", rx.url)})),
    );
    let url_changed = Instant::now();
    pause();
    let new_secret = api.call(
        reqwest::Method::POST,
        "/admin/v1/tenants/acme/routes/default/secrets/rotate",
        Some(json!({"overlap": "1h"})),
    )["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let rotated = Instant::now();
    pause();
    api.call(
        reqwest::Method::POST,
        "/admin/v1/tenants/acme/routes",
        Some(json!({"name": "second", "type": "webhook", "url": format!("{}/second", rx.url)})),
    );
    let current = api.call(reqwest::Method::GET, "/admin/v1/tenants/acme", None);
    let resp = api
        .http
        .put(format!("{}/admin/v1/tenants/acme", h.url))
        .bearer_auth(ADMIN)
        .header("if-match", format!("\"{}\"", current["revision"]))
        .json(&spec(&["default", "second"]))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().unwrap_or_default());
    let second_added = Instant::now();
    pause();
    let t2 = token(&api);
    *current_token.lock().unwrap() = t2["secret"].as_str().unwrap().to_string();
    api.call(reqwest::Method::DELETE, &format!("/admin/v1/tenants/acme/tokens/{}", t1["id"].as_str().unwrap()), None);
    let revoked = Instant::now();
    let refused = api
        .http
        .post(format!("{}/v1/events", h.url))
        .bearer_auth(t1["secret"].as_str().unwrap())
        .json(&json!({"event": "on_tool_end", "run_id": "late", "data": {"seq": u64::MAX}}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(revoked.elapsed() < Duration::from_secs(1), "the revoked token was refused after {:?}", revoked.elapsed());
    pause();
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();

    let accepted = accepted.lock().unwrap().clone();
    let rate = accepted.len() as f64 / accepted.last().unwrap().1.duration_since(accepted[0].1).as_secs_f64();
    eprintln!("accepted {} events at {rate:.0}/s", accepted.len());
    let after = |t: Instant| accepted.iter().filter(move |(_, at)| *at > t).map(|(n, _)| *n).collect::<BTreeSet<u64>>();
    let want_second = after(second_added);

    // Everything accepted arrives on the default route, once; the second route gets
    // every event accepted after it was added.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let default = rx.delivered("a").len() + rx.delivered("b").len();
        let second = rx.delivered("second").len();
        if (default >= accepted.len() && second >= want_second.len()) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (on_a, on_b, on_second) = (rx.delivered("a"), rx.delivered("b"), rx.delivered("second"));
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for r in on_a.iter().chain(&on_b) {
        *seen.entry(seq(r)).or_default() += 1;
    }
    let all: BTreeSet<u64> = accepted.iter().map(|(n, _)| *n).collect();
    let missing: Vec<_> = all.iter().filter(|n| !seen.contains_key(n)).take(5).collect();
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).map(|(n, _)| n).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted events never arrived, e.g. {missing:?}",
        all.len() - seen.len(),
        all.len()
    );
    assert!(twice.is_empty(), "events delivered twice: {twice:?}");
    assert_eq!(seen.len(), all.len());

    // After the URL change, every event accepted arrives at B, none at A.
    let late_on_a: Vec<u64> = on_a.iter().map(seq).filter(|n| after(url_changed).contains(n)).collect();
    assert!(late_on_a.is_empty(), "events accepted after the URL change went to A: {late_on_a:?}");
    assert!(!on_a.is_empty() && !on_b.is_empty(), "a: {}, b: {}", on_a.len(), on_b.len());

    // Every delivery is signed by a secret the receiver holds; those accepted after the
    // rotation by both (the overlap), those before it by the old one.
    let after_rotation = after(rotated);
    for r in on_a.iter().chain(&on_b) {
        let n = seq(r);
        assert!(signed_by(r, &old_secret), "event {n} is not signed with the old secret inside the overlap");
        if after_rotation.contains(&n) {
            assert!(
                signed_by(r, &new_secret),
                "event {n}, accepted after the rotation, is not signed with the new secret"
            );
        }
    }

    // The second route: every event accepted after it was added, once.
    let got_second: BTreeSet<u64> = on_second.iter().map(seq).collect();
    assert_eq!(on_second.len(), got_second.len(), "duplicates on the second route");
    let lacking: Vec<_> = want_second.difference(&got_second).take(5).collect();
    assert!(lacking.is_empty(), "events accepted after the second route was added never reached it: {lacking:?}");
    assert!(!want_second.is_empty());
}
