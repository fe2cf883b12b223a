//! Bad input at the door: each answers the right status with a message naming the
//! problem, and nothing of a rejected batch is delivered.

use hostd_e2e::*;

const ACME: &str = "acme-token";
const GLOBEX: &str = "globex-token";

fn start() -> Hostd {
    let tenant = |id: &str, env: &str, token: &str| {
        let out = format!("{{dir}}/{id}.jsonl");
        Tenant::new(id, plugin("pass_through")).token(env, token).route("default", Route::file(&out))
    };
    let config = Config::new().body_limit("64KiB").tenant(tenant("acme", "ACME_TOKEN", ACME)).tenant(tenant(
        "globex",
        "GLOBEX_TOKEN",
        GLOBEX,
    ));
    Hostd::from_config(&config)
}

fn message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or_else(|| panic!("no error message in {body}")).to_string()
}

fn ev(i: u64) -> Value {
    tool_end("root", &format!("run-{i}"), i, json!({"output": i}))
}

#[test]
fn every_bad_request_is_named_and_nothing_is_delivered() {
    let h = start();
    // (what, token, content type, body, expected status, expected message fragment)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Some(ACME),
            "application/json",
            b"{\"event\": \"on_tool_end\",".to_vec(),
            400,
            "malformed JSON at line 1",
        ),
        (
            "missing event",
            Some(ACME),
            "application/json",
            json!([ev(1), {"run_id": "x"}]).to_string().into(),
            400,
            "event 1: missing required field `event`",
        ),
        (
            "run_id of the wrong type",
            Some(ACME),
            "application/json",
            json!({"event": "on_tool_end", "run_id": 12}).to_string().into(),
            400,
            "event 0: field `run_id` must be a string, got a number",
        ),
        (
            "bad NDJSON line 3 of 5",
            Some(ACME),
            "application/x-ndjson",
            format!("{}\n{}\n{{\"event\": nope}}\n{}\n{}\n", ev(1), ev(2), ev(4), ev(5)).into(),
            400,
            "event 2 (line 3): malformed JSON",
        ),
        (
            "oversize body",
            Some(ACME),
            "application/json",
            vec![b' '; 70 * 1024],
            413,
            "exceeds the limit of 65536 bytes",
        ),
        (
            "no token",
            None,
            "application/json",
            ev(1).to_string().into(),
            401,
            "missing `Authorization: Bearer <token>` header",
        ),
        (
            "bad token",
            Some("nope"),
            "application/json",
            ev(1).to_string().into(),
            401,
            "the bearer token matches no tenant",
        ),
        (
            "another tenant's token",
            Some(GLOBEX),
            "application/json",
            json!({"event": "on_tool_end", "run_id": "x", "tenant": "acme"}).to_string().into(),
            403,
            "field `tenant` is `acme` but the token belongs to tenant `globex`",
        ),
        (
            "wrong content type",
            Some(ACME),
            "text/plain",
            ev(1).to_string().into(),
            415,
            "Content-Type `text/plain` is not accepted",
        ),
    ];
    for (what, token, ctype, body, want_status, want_message) in cases {
        let (status, answer) = h.post(token, ctype, body);
        assert_eq!(status, want_status, "{what}: {answer}");
        let msg = message(&answer);
        assert!(msg.contains(want_message), "{what}: `{msg}` should contain `{want_message}`");
    }
    // The good events in the rejected batches (run-1, run-2, run-4, run-5) went nowhere.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(read_jsonl(&h.path("acme.jsonl")).is_empty());
    assert!(read_jsonl(&h.path("globex.jsonl")).is_empty());
    assert!(h.healthy());

    // And a good batch still goes through, each tenant to its own route.
    assert_eq!(h.post_json(Some(ACME), &json!([ev(1), ev(2)])).0, 202);
    assert_eq!(h.post_json(Some(GLOBEX), &ev(3)).0, 202);
    let wait = std::time::Duration::from_secs(10);
    assert_eq!(wait_for_lines(&h.path("acme.jsonl"), 2, wait).len(), 2);
    let globex = wait_for_lines(&h.path("globex.jsonl"), 1, wait);
    assert_eq!(globex.len(), 1);
    assert_eq!(globex[0]["tenant"], "globex");
}

#[test]
fn chunked_oversize_body_is_refused_too() {
    let h = start();
    // No Content-Length: the limit is enforced while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..100).map(|_| Ok(vec![b' '; 1024])).collect();
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(
        chunks.into_iter().flat_map(|c| c.unwrap()).collect::<Vec<u8>>(),
    ));
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/events", h.url))
        .bearer_auth(ACME)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
}
