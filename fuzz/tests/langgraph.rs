//! Fuzzes `POST /v1/hooks/langgraph?token=...` (the LangGraph Platform run webhook)
//! through hostd's real router and `App` in-process: Runs in the `langgraph_sdk` shape
//! with hostile fields, raw byte mutations of a real Run, and odd query strings. The
//! tenant's policy is the arbitrary-decision guest, which drops a Run (its data has no
//! `mode`), so each accepted Run costs one spool commit.
//!
//! Properties: no panic and no 5xx; a JSON object with a non-empty string `run_id`
//! and the right token is accepted with key `{run_id}:run_end:0`; anything else is a
//! 400 / 401 / 413 whose JSON message names the field or the position in the body.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hostd::config::{Config, Durability, OnPolicyError, PolicyLimits, RouteConfig, ServerConfig, TenantConfig};
use hostd_fuzz::json::{self, Piece, J};
use hostd_fuzz::{cases, mutate, plugin, Bytes, Target};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use std::collections::BTreeMap;
use tower::ServiceExt;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "acme-token-0123456789";
/// `server.body_limit` by default.
const BODY_LIMIT: u64 = 1 << 20;

/// A Run as `langgraph_sdk` delivers it to a run's `webhook` URL.
fn real_run(run_id: &str) -> String {
    format!(
        r#"{{"run_id":"{run_id}","thread_id":"1ef9c9a0-0000-6000-8000-000000000002","assistant_id":"fe096781-5601-53d2-b2f6-0d3403f7e9ca","created_at":"2026-01-01T00:00:00.000000+00:00","updated_at":"2026-01-01T00:00:01.500000+00:00","status":"success","metadata":{{"graph_id":"agent","assistant_id":"fe096781-5601-53d2-b2f6-0d3403f7e9ca","user":"u-42"}},"multitask_strategy":"reject","kwargs":{{"input":{{"messages":[{{"role":"user","content":"what is the weather in SF?"}}]}},"command":null,"config":{{"configurable":{{"thread_id":"1ef9c9a0","user_id":"u-42"}},"recursion_limit":25}},"stream_mode":["values"],"interrupt_before":null,"interrupt_after":null,"webhook":"http://127.0.0.1:8787/v1/hooks/langgraph?token={TOKEN}","feedback_keys":null,"temporary":false,"subgraphs":false,"resumable":false}}}}"#
    )
}

const STATUSES: &[&str] = &["success", "error", "timeout", "interrupted", "pending", "running", ""];

/// The Run's fields, each kept, replaced by something hostile, or dropped.
fn run_fields() -> impl Strategy<Value = Vec<(String, J)>> {
    let id = prop_oneof![
        8 => "[0-9a-f-]{1,36}".prop_map(|s| J::str(&s)),
        1 => Just(J::str("")),
        1 => proptest::sample::select(vec![240usize, 244, 245, 300]).prop_map(|n| J::Str(vec![Piece::Run('r', n)])),
        1 => json::string(),
        1 => json::value(),
    ];
    let status = prop_oneof![6 => proptest::sample::select(STATUSES).prop_map(J::str), 1 => json::value()];
    let maybe = |s: BoxedStrategy<J>, p: f64| proptest::option::weighted(p, s);
    (
        maybe(id.boxed(), 0.95),
        maybe(prop_oneof![4 => "[0-9a-f-]{1,36}".prop_map(|s| J::str(&s)), 1 => json::value()].boxed(), 0.9),
        maybe(status.boxed(), 0.9),
        maybe(
            prop_oneof![
                4 => proptest::collection::vec(("[a-z_]{1,8}", json::leaf()), 0..4)
                    .prop_map(|kv| J::Obj(kv.into_iter().map(|(k, v)| (vec![Piece::Text(k)], v)).collect())),
                1 => json::value()
            ]
            .boxed(),
            0.8,
        ),
        maybe(prop_oneof![3 => json::syntactic_value(), 1 => json::value()].boxed(), 0.8),
        proptest::collection::vec(
            ("[a-z_]{1,10}", prop_oneof![3 => json::syntactic_value(), 1 => json::value()]),
            0..2,
        ),
    )
        .prop_map(|(run_id, assistant, status, metadata, kwargs, extra)| {
            let mut fields = Vec::new();
            let mut put = |k: &str, v: Option<J>| {
                if let Some(v) = v {
                    fields.push((k.to_string(), v));
                }
            };
            put("run_id", run_id);
            put("assistant_id", assistant);
            put("status", status);
            put("metadata", metadata);
            put("kwargs", kwargs);
            put("thread_id", Some(J::str("1ef9c9a0")));
            for (k, v) in extra {
                put(&k, Some(v));
            }
            fields
        })
}

fn render_run(fields: &[(String, J)]) -> String {
    J::Obj(fields.iter().map(|(k, v)| (vec![Piece::Text(k.clone())], v.clone())).collect()).render()
}

/// Query strings: the right token mostly, else wrong, missing, repeated, badly encoded.
fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => Just(format!("token={TOKEN}")),
        1 => Just("token=wrong".to_string()),
        1 => Just(String::new()),
        1 => Just("token=".to_string()),
        1 => Just(format!("token={TOKEN}&token=other")),
        1 => Just(format!("token=other&token={TOKEN}")),
        1 => Just(format!("tok%65n={TOKEN}")),
        1 => Just("token=%ff%fe".to_string()),
        1 => Just("token=%zz".to_string()),
        1 => Just(format!("token={TOKEN}&x=%ff")),
        1 => "[a-z=&%0-9]{0,20}",
    ]
}

#[derive(Debug, Clone)]
enum Input {
    Structured { fields: Vec<(String, J)>, query: String },
    Mutated { body: Bytes, query: String },
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => (run_fields(), query()).prop_map(|(fields, query)| Input::Structured { fields, query }),
        2 => (mutate::mutations(6), query()).prop_map(|(edits, query)| Input::Mutated {
            body: Bytes(mutate::apply(real_run("1ef9c9a0-0000-6000-8000-000000000001").as_bytes(), &edits)),
            query
        }),
    ]
}

struct Daemon {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn daemon() -> Daemon {
    let dir = tempfile::tempdir().expect("a temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let config = Config {
        server: ServerConfig {
            data_dir: dir.path().join("data"),
            durability: Durability::None,
            watch_policies: false,
            ..ServerConfig::default()
        },
        tenants: vec![TenantConfig {
            id: "acme".into(),
            token_env: None,
            token_file: None,
            policy: plugin("hostile_arbitrary_decision"),
            policy_config: None,
            policy_tests: None,
            on_policy_error: OnPolicyError::DeadLetter,
            keep_original: true,
            limits: PolicyLimits::default(),
            routes: BTreeMap::from([(
                "default".to_string(),
                RouteConfig::new(
                    "file",
                    toml::Table::from_iter([(
                        "path".to_string(),
                        dir.path().join("out.jsonl").to_str().expect("a UTF-8 temp dir").into(),
                    )]),
                ),
            )]),
            token: Some(TOKEN.into()),
        }],
    };
    let app = runtime.block_on(async { hostd::App::build(&config) }).unwrap_or_else(|e| panic!("App::build: {e:#}"));
    let router = hostd::server::router(app);
    Daemon { runtime, router, _dir: dir }
}

/// Whether the query string carries exactly our token, as `Query<HashMap>` reads it
/// (the last `token` wins).
fn token_ok(query: &str) -> Option<bool> {
    let mut last = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.contains('%') || v.contains('%') {
            return None; // percent-decoding: leave it to the server
        }
        if k == "token" {
            last = Some(v.to_string());
        }
    }
    Some(last.as_deref() == Some(TOKEN))
}

fn check(target: &Target, d: &Daemon, body: &[u8], query: &str) -> Result<(), TestCaseError> {
    let request = Request::post(format!("/v1/hooks/langgraph?{query}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .map_err(|e| TestCaseError::reject(format!("not a request: {e}")))?;
    let (status, answer) = d.runtime.block_on(async {
        let response = d.router.clone().oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, bytes)
    });
    let answer_text = String::from_utf8_lossy(&answer).to_string();
    let json: Option<Value> = serde_json::from_slice(&answer).ok();
    target.count(&format!("status {}", status.as_u16()));
    target.check("langgraph.status", matches!(status.as_u16(), 202 | 400 | 401 | 413), || {
        format!("answered {status}: {answer_text}")
    })?;
    // The oracle: what the body and query are, read independently.
    let run: Option<Value> = serde_json::from_slice(body).ok();
    let run_id = run.as_ref().and_then(|r| r.get("run_id")).and_then(Value::as_str).filter(|s| !s.is_empty());
    let too_large = body.len() as u64 > BODY_LIMIT;
    let valid = !too_large
        && run.as_ref().is_some_and(Value::is_object)
        && run_id.is_some_and(|r| r.len() + ":run_end:0".len() <= 256);
    match token_ok(query) {
        Some(true) if too_large => {
            target.check("langgraph.body_limit", status == StatusCode::PAYLOAD_TOO_LARGE, || {
                format!("a {}-byte body got {status}: {answer_text}", body.len())
            })?;
        }
        Some(true) if valid => {
            // A Run naming a field twice is refused by name (a Value keeps the last one).
            let duplicate = status == StatusCode::BAD_REQUEST && answer_text.contains("duplicate field `");
            target.check("langgraph.accepts_valid_runs", status == StatusCode::ACCEPTED || duplicate, || {
                format!("refused a valid run ({status}): {answer_text}")
            })?;
        }
        Some(false) => {
            target.check("langgraph.checks_the_token", status == StatusCode::UNAUTHORIZED, || {
                format!("answered {status} to query {query:?}: {answer_text}")
            })?;
        }
        _ => {}
    }
    if status == StatusCode::ACCEPTED {
        target.accepted();
        let key = json.as_ref().and_then(|j| j["idempotency_key"].as_str()).unwrap_or_default().to_string();
        // hostd reads the Run as raw JSON: it keeps what a `serde_json::Value` refuses
        // (lone surrogates, 1e400), where this oracle cannot read the run id.
        if run.is_some() {
            let want = run_id.map(|r| hostd::event::derived_idempotency_key(r, "run_end", 0));
            target.check("langgraph.key_from_run_id", Some(key.clone()) == want, || {
                format!("accepted with key {key:?}, expected {want:?}")
            })?;
        } else {
            target.count("accepted a Run serde_json::Value cannot read");
        }
        return Ok(());
    }
    target.rejected();
    let message = json.as_ref().and_then(|j| j["error"]["message"].as_str()).map(str::to_string);
    target.check("langgraph.error_is_json", message.is_some(), || {
        format!("{status} with a body that is not hostd's JSON error: {answer_text:?} (query {query:?})")
    })?;
    let m = message.unwrap_or_default();
    if status == StatusCode::BAD_REQUEST {
        // Each error names the field, or says where in the Run payload it went wrong
        // (line/column, byte offset, depth) or what the payload is not.
        let named = m.contains("`run_id`")
            || m.contains("`idempotency_key`")
            || (m.starts_with("the Run payload")
                && (m.contains(" line ")
                    || m.contains(" offset ")
                    || m.contains("levels deep")
                    || m.contains("must be")));
        target
            .count(&format!("400: {}", m.chars().take_while(|c| *c != '(' && *c != '`').take(40).collect::<String>()));
        target.check("langgraph.error_names_field", named, || format!("{m:?}"))?;
    }
    Ok(())
}

#[test]
fn runs() {
    let target = Target::new("langgraph");
    let d = daemon();
    target.run(cases("langgraph", 0.09), input, |i| match i {
        Input::Structured { fields, query } => check(&target, &d, render_run(&fields).as_bytes(), &query),
        Input::Mutated { body, query } => check(&target, &d, &body.0, &query),
    });
}
