//! LangGraph Platform run webhooks: `POST /v1/hooks/langgraph?token=...`. LangGraph
//! Platform calls a run's `webhook` URL with the Run object when the run finishes, and
//! authenticates by a token in the URL. The run becomes event `run_end` (name = the
//! assistant id, idempotency key derived from `{run_id}:run_end:0`) and goes through the
//! tenant's policy like any other event.
//!
//! The Run carries that URL back (`kwargs.webhook`), token included, so before the event
//! exists every string of the Run (keys too, at any depth) loses the token
//! ([`strip_token`]): the value of any `token` query parameter becomes `REDACTED`, and so
//! does the presented token wherever else it appears. Nothing else of the Run changes:
//! it is handled as raw text, so numbers and escapes stay as LangGraph wrote them.

use super::{Accepting, ApiError, IngestState};
use crate::event::parse_event;
use crate::json::{self, push_json_string, MAX_DEPTH};
use crate::tenants::{AuthError, TenantCaller};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, value::RawValue};
use std::collections::HashMap;

/// What a stripped token becomes.
pub const REDACTED: &str = "REDACTED";

/// Shortest token also replaced where it appears outside a `token=` parameter: shorter
/// ones would match ordinary text (and are guessable anyway).
pub const MIN_LITERAL_TOKEN: usize = 8;

/// The Run fields the event is made of, read from the stripped text (others are only
/// carried in `data`).
#[derive(Deserialize)]
struct RunFields<'a> {
    #[serde(borrow)]
    run_id: Option<&'a RawValue>,
    #[serde(borrow)]
    assistant_id: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

#[tracing::instrument(skip_all)]
pub async fn post_run(
    _: Accepting,
    State(ingest): State<IngestState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let token = query.get("token").ok_or_else(|| ApiError::unauthorized("missing `token` query parameter"))?;
    let (tenant, caller) = ingest.tenants.find_token(token).map_err(|e| match e {
        AuthError::Unknown => ApiError::unauthorized("the token matches no tenant"),
        e => ApiError::unauthorized(e.to_string()),
    })?;
    TenantCaller::require_ingest(&caller)?;
    let bytes = super::read_body(body, &headers, ingest.limits.body_limit).await?;
    let bad = |m: String| ApiError::bad_request("invalid_run", m);
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| bad(format!("the Run payload is not UTF-8 (invalid byte at offset {})", e.valid_up_to())))?;
    let event = run_event(text, token).map_err(bad)?;
    let raw = RawValue::from_string(event)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("run_end event: {e}")))?;
    let accepted_event = parse_event(&raw, &tenant.id).map_err(|e| bad(e.message().to_string()))?;
    let key = accepted_event.idempotency_key.clone();
    let accepted = ingest.pipeline.accept(&tenant, vec![accepted_event]).await.map_err(|e| {
        tracing::error!("{e}");
        ApiError::unavailable(format!("the spool could not store the run, nothing was accepted: {}", e.message))
    })?;
    let duplicate = accepted.first().is_some_and(|a| a.duplicate);
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": 1, "idempotency_key": key, "duplicate": duplicate})))
        .into_response())
}

/// The `run_end` event (JSON text) of the Run `text`, with `token` stripped from it.
/// `Err` says what is wrong with the Run.
fn run_event(text: &str, token: &str) -> Result<String, String> {
    let run: &RawValue = serde_json::from_str(text)
        .map_err(|e| format!("the Run payload is not JSON (line {} column {}): {e}", e.line(), e.column()))?;
    if !run.get().starts_with('{') {
        return Err("the Run payload must be a JSON object".into());
    }
    // The event object around it is one more level.
    if json::depth_exceeds(run.get(), MAX_DEPTH - 1) {
        return Err(format!(
            "the Run payload nests arrays and objects more than {} levels deep (the limit is {MAX_DEPTH} with the event around it)",
            MAX_DEPTH - 1
        ));
    }
    let run = strip_token(run.get(), token);
    let fields: RunFields<'_> = serde_json::from_str(&run).map_err(|e| format!("the Run payload: {e}"))?;
    let string = |raw: Option<&RawValue>| raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok());
    let run_id = match (fields.run_id, string(fields.run_id)) {
        (_, Some(s)) if !s.is_empty() => s,
        (Some(_), _) => return Err("field `run_id` must be a non-empty string".into()),
        (None, _) => return Err("missing required field `run_id` in the Run payload".into()),
    };
    let mut event = String::with_capacity(run.len() + 256);
    event.push_str("{\"event\":\"run_end\",\"name\":");
    push_json_string(&mut event, &string(fields.assistant_id).unwrap_or_default());
    event.push_str(",\"run_id\":");
    push_json_string(&mut event, &run_id);
    event.push_str(",\"root_run_id\":");
    push_json_string(&mut event, &run_id);
    event.push_str(",\"step\":0,\"tags\":[");
    if let Some(status) = string(fields.status) {
        push_json_string(&mut event, &format!("status:{status}"));
    }
    event.push_str("],\"metadata\":");
    event.push_str(fields.metadata.map(RawValue::get).filter(|m| m.starts_with('{')).unwrap_or("{}"));
    event.push_str(",\"data\":");
    event.push_str(&run);
    event.push('}');
    Ok(event)
}

/// The Run JSON `run` with the tenant's `token` taken out of every string, keys
/// included, at any depth:
/// - the value of every `token` query parameter (`?token=`, `&token=`, `;token=`,
///   `#token=`, a string starting `token=`, the name in any case) becomes `REDACTED`, up
///   to the next `&`, `#`, `;`, quote, `<`, `>`, backslash or whitespace; the same
///   percent-encoded (`%3Ftoken%3D…`, as in a URL inside another URL's query), up to the
///   next `%26`, `%23` or `%3B` too. This is what neutralises `kwargs.webhook`;
/// - every other occurrence of `token` itself becomes `REDACTED`, when the token is at
///   least [`MIN_LITERAL_TOKEN`] bytes.
///
/// Everything else is kept byte for byte.
pub fn strip_token(run: &str, token: &str) -> String {
    json::rewrite_strings(run, |s| {
        let literal = (token.len() >= MIN_LITERAL_TOKEN && s.contains(token)).then(|| s.replace(token, REDACTED));
        let current = literal.as_deref().unwrap_or(s);
        strip_token_params(current).or(literal)
    })
}

/// `s` with the value of every `token` query parameter replaced; `None` when it has none.
fn strip_token_params(s: &str) -> Option<String> {
    // ASCII lowercasing keeps every byte offset.
    let lower = s.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let (mut out, mut copied, mut from) = (String::new(), 0, 0);
    while let Some(found) = lower[from..].find("token") {
        let at = from + found;
        let after = at + "token".len();
        from = after;
        let (start, encoded) = match &bytes[after..] {
            [b'=', ..] => (after + 1, false),
            [b'%', b'3', b'd', ..] => (after + 3, true),
            _ => continue,
        };
        let plain_before = at == 0 || matches!(bytes[at - 1], b'?' | b'&' | b';' | b'#');
        let encoded_before = at >= 3 && [b"%3f", b"%26", b"%23", b"%3b"].iter().any(|p| &bytes[at - 3..at] == *p);
        if !(plain_before || encoded_before) {
            continue;
        }
        let mut end = start;
        while end < bytes.len() {
            let b = bytes[end];
            let ends_plain =
                matches!(b, b'&' | b'#' | b';' | b'"' | b'\'' | b'<' | b'>' | b'\\') || b.is_ascii_whitespace();
            let ends_encoded = encoded && [b"%26", b"%23", b"%3b"].iter().any(|p| bytes[end..].starts_with(*p));
            if ends_plain || ends_encoded {
                break;
            }
            end += 1;
        }
        if end > start && &s[start..end] != REDACTED {
            out.push_str(&s[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        from = end;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&s[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "lg-secret-token";

    #[test]
    fn strips_token_parameters_in_any_url() {
        let cases = [
            ("https://h/v1/hooks/langgraph?token=abc", "https://h/v1/hooks/langgraph?token=REDACTED"),
            ("https://h/x?a=1&Token=abc&b=2#f", "https://h/x?a=1&Token=REDACTED&b=2#f"),
            ("see <https://h/?token=abc> now", "see <https://h/?token=REDACTED> now"),
            ("token=abc", "token=REDACTED"),
            (
                "https://p/?next=https%3A%2F%2Fh%2F%3Ftoken%3Dabc%26x%3D1",
                "https://p/?next=https%3A%2F%2Fh%2F%3Ftoken%3DREDACTED%26x%3D1",
            ),
            ("two ?token=a and &token=b", "two ?token=REDACTED and &token=REDACTED"),
        ];
        for (input, want) in cases {
            assert_eq!(strip_token_params(input).as_deref(), Some(want), "{input}");
        }
        for unchanged in ["no tokens here", "access_token=abc", "tokens=1", "?token=", "?token=REDACTED", "é?tokenx"] {
            assert_eq!(strip_token_params(unchanged), None, "{unchanged}");
        }
    }

    #[test]
    fn strips_the_token_from_the_sdk_run_shape_and_keeps_the_rest() {
        // The Run as langgraph_sdk documents it (runs.create's example), with a hostd webhook.
        let run = r#"{"run_id":"1ef6-run","thread_id":"th-9","assistant_id":"my_assistant_id",
            "created_at":"2026-11-25T10:00:00Z","updated_at":"2026-11-25T10:00:03Z","status":"success",
            "metadata":{"user":"ada","echo":"called back at lg-secret-token"},
            "kwargs":{"input":{"messages":[{"role":"user","content":"how are you? \ud800"}]},
              "config":{"metadata":{"created_by":"system"},"configurable":{"run_id":"1ef6-run","user_id":null,
                "graph_id":"agent","thread_id":"th-9","checkpoint_id":null,"assistant_id":"my_assistant_id",
                "x-forwarded-uri":"/v1/hooks/langgraph%3Ftoken%3Dlg-secret-token"}},
              "context":{"model_name":"openai"},
              "webhook":"https://hostd.example.com/v1/hooks/langgraph?token=lg-secret-token",
              "temporary":false,"stream_mode":["values"],"feedback_keys":null,"n":123456789012345678901234567890,
              "interrupt_after":["node_to_stop_after_1"],"interrupt_before":["node_to_stop_before_1"]},
            "multitask_strategy":"interrupt"}"#;
        let stripped = strip_token(run, TOKEN);
        assert!(!stripped.contains(TOKEN), "{stripped}");
        assert!(stripped.contains(r#""webhook":"https://hostd.example.com/v1/hooks/langgraph?token=REDACTED""#));
        assert!(stripped.contains(r#""echo":"called back at REDACTED""#));
        assert!(stripped.contains(r#"langgraph%3Ftoken%3DREDACTED""#));
        assert!(stripped.contains(r#""content":"how are you? \ud800""#), "untouched strings keep their escapes");
        assert!(stripped.contains("123456789012345678901234567890"), "numbers as written");
        let event = run_event(&stripped, TOKEN).unwrap();
        assert!(event.starts_with(
            r#"{"event":"run_end","name":"my_assistant_id","run_id":"1ef6-run","root_run_id":"1ef6-run","step":0,"tags":["status:success"],"metadata":{"user":"ada","echo":"called back at REDACTED"},"data":{"run_id""#
        ), "{event}");
        assert!(!run_event(run, TOKEN).unwrap().contains(TOKEN), "run_event strips too");
    }

    #[test]
    fn a_short_token_is_stripped_only_as_a_parameter() {
        let out = strip_token(r#"{"s":"status tt","w":"http://h/?token=tt"}"#, "tt");
        assert_eq!(out, r#"{"s":"status tt","w":"http://h/?token=REDACTED"}"#);
    }

    #[test]
    fn bad_runs_are_named() {
        assert_eq!(run_event("[1]", TOKEN).unwrap_err(), "the Run payload must be a JSON object");
        assert_eq!(run_event(r#"{"run_id":5}"#, TOKEN).unwrap_err(), "field `run_id` must be a non-empty string");
        assert_eq!(run_event(r#"{"a":1}"#, TOKEN).unwrap_err(), "missing required field `run_id` in the Run payload");
        assert!(run_event("{oops", TOKEN).unwrap_err().starts_with("the Run payload is not JSON (line 1"));
        let deep = format!(r#"{{"run_id":"r","x":{}{}}}"#, "[".repeat(127), "]".repeat(127));
        assert!(run_event(&deep, TOKEN).unwrap_err().contains("more than 127 levels deep"));
        let dup = r#"{"run_id":"r","run_id":"s"}"#;
        assert!(run_event(dup, TOKEN).unwrap_err().contains("duplicate field `run_id`"));
    }
}
