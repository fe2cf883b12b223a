//! The ingest stage: HTTP routes, tenant auth ([`TenantCaller`]), body limits and
//! event validation; accepted events go through the [`Pipeline`].

pub mod langgraph;
pub mod pipeline;

pub use crate::event::{self, AcceptedEvent, BodyFormat};
pub use pipeline::Pipeline;

pub use crate::api_error::ApiError;
use crate::tenants::{TenantCaller, TenantRegistry};
use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// What the ingest handlers use.
#[derive(Clone)]
pub struct IngestState {
    pub pipeline: Arc<Pipeline>,
    pub tenants: Arc<TenantRegistry>,
    pub limits: IngestLimits,
}

/// Request limits from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// `server.body_limit`.
    pub body_limit: u64,
    /// `server.max_events_per_request`.
    pub max_events_per_request: usize,
}

impl FromRef<IngestState> for Arc<TenantRegistry> {
    fn from_ref(state: &IngestState) -> Self {
        state.tenants.clone()
    }
}

/// The ingest routes.
pub fn router() -> Router<IngestState> {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/hooks/langgraph", post(langgraph::post_run))
        .fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint; events go to POST /v1/events")
}

/// As the first extractor: 503 while hostd drains, before auth or the body.
pub struct Accepting;

impl FromRequestParts<IngestState> for Accepting {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &IngestState) -> Result<Self, ApiError> {
        match state.pipeline.is_draining() {
            true => Err(ApiError::unavailable("hostd is shutting down; retry against the restarted instance")),
            false => Ok(Accepting),
        }
    }
}

/// The body format named by `Content-Type`.
fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => {
            Ok(BodyFormat::Ndjson)
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type `{}` is not accepted; send application/json (an event or an array) or application/x-ndjson",
                if value.is_empty() { "(none)" } else { value }
            ),
        )),
    }
}

/// Past the limit, how much more of a body is read and discarded so the client gets
/// a clean 413 instead of a connection reset, as a multiple of the limit.
const DRAIN_FACTOR: u64 = 4;

/// Reads the body up to the limit; 413 past it.
pub async fn read_body(mut body: Body, headers: &HeaderMap, limit: u64) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || {
        ApiError::too_large(
            "payload_too_large",
            format!("request body exceeds the limit of {limit} bytes (server.body_limit)"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(8192).min(limit) as usize);
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request("body_read_failed", format!("cannot read the body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len() as u64;
        if seen > limit.saturating_mul(DRAIN_FACTOR + 1) {
            break;
        }
        if seen <= limit {
            buf.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// 413 when a batch has more events than `server.max_events_per_request`: checked
/// before any policy runs, it bounds the policy time one request can take.
fn check_event_count(count: usize, limit: usize) -> Result<(), ApiError> {
    if count <= limit {
        return Ok(());
    }
    Err(ApiError::too_large(
        "too_many_events",
        format!(
            "the batch has {count} events; at most {limit} are accepted per request \
             (server.max_events_per_request): split it, nothing of it was accepted"
        ),
    ))
}

#[tracing::instrument(skip_all)]
async fn post_events(
    _: Accepting,
    TenantCaller(tenant): TenantCaller,
    State(ingest): State<IngestState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let format = body_format(&headers)?;
    let bytes = read_body(body, &headers, ingest.limits.body_limit).await?;
    let events = event::parse_body(&bytes, format, &tenant.id).map_err(|e| match e.wrong_tenant {
        true => ApiError::new(StatusCode::FORBIDDEN, "wrong_tenant", e.message),
        false => ApiError::bad_request("invalid_event", e.message),
    })?;
    check_event_count(events.len(), ingest.limits.max_events_per_request)?;
    let keys: Vec<String> = events.iter().map(|e| e.idempotency_key.clone()).collect();
    let accepted = ingest.pipeline.accept(&tenant, events).await.map_err(|e| {
        tracing::error!("{e}");
        ApiError::unavailable(format!("the spool could not store the batch, nothing was accepted: {}", e.message))
    })?;
    let duplicates = accepted.iter().filter(|a| a.duplicate).count();
    let per_event: Vec<_> =
        keys.iter().zip(&accepted).map(|(k, a)| json!({"idempotency_key": k, "duplicate": a.duplicate})).collect();
    let body = json!({"accepted": keys.len(), "duplicates": duplicates, "idempotency_keys": keys, "events": per_event});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_count_is_capped_with_both_numbers() {
        assert!(check_event_count(1000, 1000).is_ok());
        let e = check_event_count(37_000, 1000).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.code, "too_many_events");
        assert!(e.message.contains("37000 events; at most 1000"), "{}", e.message);
    }
}
