//! Issue 9, sinks: what leaves hostd is exactly what the policy produced (no `null` for
//! JSON a `Value` cannot hold), downstream ids are scoped by tenant, a receiver's endless
//! error body cannot pin a worker, and admin requests are authenticated before their
//! body is read.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hostd_e2e::receiver::{Receiver, Reply};
use hostd_e2e::*;
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token";
const SECRET: &str = "whsec_c2luay1oYXJkZW5pbmctc2VjcmV0LTAxMjM=";
const WAIT: Duration = Duration::from_secs(15);

/// hostd with one tenant per `(id, route)`, each on pass_through, token `{id}-token`.
fn start(tenants: &[(&str, Route)]) -> Hostd {
    let config = Config::new().admin_token("ADMIN_TOKEN", ADMIN).allow_private_targets().env("WH", SECRET);
    let config = tenants.iter().fold(config, |c, (id, route)| {
        c.tenant(Tenant::new(id, plugin("pass_through")).route("default", route.clone()))
    });
    Hostd::from_config(&config)
}

fn webhook_route(url: &str) -> Route {
    Route::webhook(url, "WH")
}

fn hmac_of(body_parts: &[&[u8]]) -> Vec<u8> {
    let key = base64::engine::general_purpose::STANDARD.decode(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    for p in body_parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn json_a_value_cannot_hold_arrives_byte_exact_and_signed() {
    let rx = Receiver::start(|_, _| Reply::ok());
    let h = start(&[("acme", webhook_route(&format!("{}/hook", rx.url)))]);
    // What Python and JS emit and `serde_json::Value` refuses or rounds.
    let body = r#"{"event":"on_tool_end","name":"lookup","run_id":"r1","root_run_id":"root","step":1,"ts":1767225600000,
        "data":{"s":"\ud800 lone","inf":1e400,"big":123456789012345678901234567890,"f":1.0,"e":"\u00e9","z":{"b":2,"a":1}}}"#;
    let (status, answer) = h.post(Some("acme-token"), "application/json", body.replace('\n', ""));
    assert_eq!(status, 202, "{answer}");
    let got = rx.wait_delivered("hook", 1, WAIT);
    assert_eq!(got.len(), 1, "delivered");
    let r = &got[0];
    let text = String::from_utf8(r.body.clone()).unwrap();
    // The envelope pass_through builds, keys sorted, every value as written.
    let want = concat!(
        r#"{"data":{"big":123456789012345678901234567890,"e":"\u00e9","f":1.0,"inf":1e400,"s":"\ud800 lone","z":{"a":1,"b":2}},"#,
        r#""event":"on_tool_end","metadata":{},"name":"lookup","parent_run_id":null,"root_run_id":"root","run_id":"r1","#,
        r#""step":1,"tags":[],"ts":1767225600000}"#
    );
    assert_eq!(text, want);
    let (id, ts) = (r.header("webhook-id"), r.header("webhook-timestamp"));
    let signed = hmac_of(&[id.as_bytes(), b".", ts.as_bytes(), b".", &r.body]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(signed);
    assert_eq!(r.header("webhook-signature"), format!("v1,{b64}"));
    assert_eq!(r.header("x-signature-256"), format!("sha256={}", hex::encode(hmac_of(&[&r.body]))));
}

#[test]
fn nesting_is_bounded_at_ingest_and_the_deepest_event_accepted_is_delivered_whole() {
    // 128 levels (with the event object) are accepted and arrive; 129 are refused with a
    // 400 naming the limit, instead of being accepted and later becoming `null`.
    let rx = Receiver::start(|_, _| Reply::ok());
    let h = start(&[("acme", webhook_route(&format!("{}/hook", rx.url)))]);
    let nested = |levels: usize| {
        format!(r#"{{"event":"a","run_id":"r","step":{levels},"data":{}1{}}}"#, "[".repeat(levels), "]".repeat(levels))
    };
    let (status, answer) = h.post(Some("acme-token"), "application/json", nested(127));
    assert_eq!(status, 202, "{answer}");
    let got = rx.wait_delivered("hook", 1, WAIT);
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0].body).contains(&format!("{}1{}", "[".repeat(127), "]".repeat(127))));
    let (status, answer) = h.post(Some("acme-token"), "application/json", nested(128));
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert_eq!(message, "event 0: arrays and objects nest 129 levels deep; the limit is 128");
}

#[test]
fn tenants_sharing_a_receiver_get_distinct_ids_for_the_same_key() {
    let rx = Receiver::start(|_, _| Reply::ok());
    let url = format!("{}/shared", rx.url);
    let h = start(&[("acme", webhook_route(&url)), ("globex", webhook_route(&url))]);
    let event = json!({"event": "on_tool_end", "run_id": "r", "idempotency_key": "order-1", "data": {"n": 1}});
    // globex first: it must not pre-claim acme's id.
    for tenant in ["globex", "acme"] {
        let (status, answer) = h.post_json(Some(&format!("{tenant}-token")), &event);
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["idempotency_keys"][0], "order-1");
    }
    let got = rx.wait_delivered("shared", 2, WAIT);
    assert_eq!(got.len(), 2);
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort();
    let mut want = vec![message_id("acme", "default", "order-1"), message_id("globex", "default", "order-1")];
    want.sort();
    assert_eq!(ids, want, "one id per tenant, as documented");
    assert!(got.iter().all(|r| r.header("idempotency-key") == r.header("webhook-id")));
    assert!(got.iter().all(|r| r.header("webhook-id").len() == 68));
}

/// A receiver that answers every request `500` with an endless chunked body of lines
/// that try to forge log entries. Bounded: it stops writing after 30 s.
struct EndlessErrors {
    url: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    sent_bytes: Arc<Mutex<usize>>,
}

impl EndlessErrors {
    fn start() -> EndlessErrors {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let sent_bytes = Arc::new(Mutex::new(0));
        let (a, s) = (arrivals.clone(), sent_bytes.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (a, s) = (a.clone(), s.clone());
                std::thread::spawn(move || serve_endless(stream, &a, &s));
            }
        });
        EndlessErrors { url, arrivals, sent_bytes }
    }
}

fn serve_endless(mut stream: TcpStream, arrivals: &Mutex<Vec<Instant>>, sent: &Mutex<usize>) {
    let mut buf = [0u8; 65536];
    let mut seen = Vec::new();
    // Read the request head; the body is small and can be left unread.
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    arrivals.lock().unwrap().push(Instant::now());
    if stream
        .write_all(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .is_err()
    {
        return;
    }
    let line = "oops\n2026-01-01T00:00:00Z ERROR hostd: forged entry\r\n\u{1b}[2K".repeat(64);
    let chunk = format!("{:x}\r\n{line}\r\n", line.len());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if stream.write_all(chunk.as_bytes()).is_err() {
            return;
        }
        *sent.lock().unwrap() += line.len();
    }
}

#[test]
fn an_endless_error_body_is_cut_at_2_kb_at_once() {
    let rx = EndlessErrors::start();
    let h = start(&[("acme", webhook_route(&format!("{}/hook", rx.url)).timeout("30s").retry(&["100ms"]))]);
    let started = Instant::now();
    let (status, _) = h.post_json(Some("acme-token"), &tool_end("root", "r", 1, json!({})));
    assert_eq!(status, 202);
    let dead = h.wait_dlq(ADMIN, 1, Duration::from_secs(10));
    let took = started.elapsed();
    assert_eq!(dead.len(), 1, "both attempts recorded well before the 30 s route timeout");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(rx.arrivals.lock().unwrap().len(), 2, "first try and one retry");
    let e = &dead[0];
    assert_eq!(
        (e["reason"].as_str(), e["attempts"].as_u64(), e["last_status"].as_u64()),
        (Some("exhausted"), Some(2), Some(500))
    );
    let error = e["last_error"].as_str().unwrap();
    let excerpt = error.strip_prefix("HTTP 500: ").expect("status, then the excerpt");
    assert!(excerpt.len() <= 2048, "excerpt of {} bytes", excerpt.len());
    assert!(excerpt.len() > 1500, "the excerpt is kept, escaped: {excerpt}");
    assert!(!error.contains(['\n', '\r', '\u{1b}']), "control characters escaped: {error:?}");
    assert!(error.contains("oops\\n2026-01-01T00:00:00Z ERROR hostd: forged entry\\r\\n\\u{1b}[2K"), "{error}");
    assert!(
        !h.stderr().lines().any(|l| l.starts_with("2026-01-01T00:00:00Z ERROR hostd: forged")),
        "no forged log line"
    );
    println!(
        "dead-lettered after {took:?}; the receiver wrote {} bytes before hostd hung up",
        rx.sent_bytes.lock().unwrap()
    );
}

/// Sends a request head announcing a 64 MiB body and no body; returns the status line
/// hostd answers with and how long it took (`None` when it waited for the body).
fn head_only(h: &Hostd, method: &str, path: &str, token: Option<&str>) -> (Option<String>, Duration) {
    let addr = h.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{auth}content-length: 67108864\r\n\r\n"
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return (None, started.elapsed()),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    (text.lines().next().map(str::to_string), started.elapsed())
}

#[test]
fn admin_requests_are_authenticated_before_their_body_is_read() {
    let h = start(&[("acme", Route::stdout())]);
    let routes = [
        ("PUT", "/admin/v1/tenants/acme/policy"),
        ("POST", "/admin/v1/tenants/acme/policy/rollback"),
        ("POST", "/admin/v1/dlq/replay"),
        ("POST", "/admin/v1/dlq/purge"),
        ("DELETE", "/admin/v1/dlq/1"),
        ("GET", "/admin/v1/dlq"),
        ("GET", "/admin/v1/tenants"),
        ("GET", "/admin/v1/tenants/acme/policy"),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong-token")] {
            let (status, took) = head_only(&h, method, path, token);
            let status =
                status.unwrap_or_else(|| panic!("{method} {path}: no answer within 3 s: it waited for the body"));
            assert!(status.starts_with("HTTP/1.1 401"), "{method} {path} ({token:?}): {status}");
            assert!(took < Duration::from_secs(1), "{method} {path}: answered after {took:?}");
        }
    }
    // A tenant's own token may not change a policy: refused before reading, too.
    let (status, _) = head_only(&h, "PUT", "/admin/v1/tenants/acme/policy", Some("acme-token"));
    assert!(status.unwrap_or_default().starts_with("HTTP/1.1 403"));
    // The admin announcing more than the 64 MiB limit gets 413 at once.
    let addr = h.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let head = format!(
        "PUT /admin/v1/tenants/acme/policy HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN}\r\ncontent-length: 67108865\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    // Streaming a real 64 MiB body unauthenticated: the 401 comes before it is sent.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let head =
        format!("PUT /admin/v1/tenants/acme/policy HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 67108864\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut reader = stream.try_clone().unwrap();
    let answered = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let n = reader.read(&mut buf).unwrap_or(0);
        (String::from_utf8_lossy(&buf[..n]).to_string(), started.elapsed())
    });
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    for _ in 0..64 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
        if answered.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (answer, after) = answered.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(sent < 64 << 20, "answered after {after:?}, with {sent} of 64 MiB sent");
    println!("401 after {after:?}, {} MiB of the body sent by then", sent >> 20);
}
