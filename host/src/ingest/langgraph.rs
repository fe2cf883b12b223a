//! LangGraph Platform run webhooks: `POST /v1/hooks/langgraph?token=...`. LangGraph
//! Platform calls a run's `webhook` URL with the Run object when the run finishes, and
//! authenticates by a token in the URL. The run becomes event `run_end` (name = the
//! assistant id, idempotency key `{run_id}:run_end:0`) and goes through the tenant's
//! policy like any other event.

use super::event::parse_event;
use super::ApiError;
use crate::app::App;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, value::RawValue, Value};
use std::collections::HashMap;
use std::sync::Arc;

#[tracing::instrument(skip_all)]
pub async fn post_run(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if app.is_draining() {
        return Err(ApiError::unavailable("hostd is shutting down; retry against the restarted instance"));
    }
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let token = query.get("token").ok_or_else(|| unauthorized("missing `token` query parameter"))?;
    let tenant = app.tokens().find(token).ok_or_else(|| unauthorized("the token matches no tenant"))?;
    let bytes = super::read_body(body, &headers, app.body_limit()).await?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_run", m);
    let run: Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("the Run payload is not JSON (line {} column {}): {e}", e.line(), e.column())))?;
    let Value::Object(fields) = &run else {
        return Err(bad("the Run payload must be a JSON object".into()));
    };
    let run_id = match fields.get("run_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(bad("field `run_id` must be a non-empty string".into())),
        None => return Err(bad("missing required field `run_id` in the Run payload".into())),
    };
    let assistant = fields.get("assistant_id").and_then(Value::as_str).unwrap_or_default();
    let metadata = match fields.get("metadata") {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => json!({}),
    };
    let mut tags = Vec::new();
    if let Some(status) = fields.get("status").and_then(Value::as_str) {
        tags.push(format!("status:{status}"));
    }
    let event = json!({
        "event": "run_end",
        "name": assistant,
        "run_id": run_id,
        "root_run_id": run_id,
        "step": 0,
        "tags": tags,
        "metadata": metadata,
        "data": run,
        "idempotency_key": format!("{run_id}:run_end:0"),
    });
    let raw = RawValue::from_string(event.to_string()).expect("serialised JSON");
    let tenant_id = app.tenant(tenant).id.clone();
    let accepted_event = parse_event(&raw, &tenant_id).map_err(|e| bad(e.message().to_string()))?;
    let key = accepted_event.idempotency_key.clone();
    let accepted = app.accept(tenant, vec![accepted_event]).await.map_err(|e| {
        tracing::error!("{e}");
        ApiError::unavailable(format!("the spool could not store the run, nothing was accepted: {}", e.message))
    })?;
    let duplicate = accepted.first().is_some_and(|a| a.duplicate);
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": 1, "idempotency_key": key, "duplicate": duplicate})))
        .into_response())
}
