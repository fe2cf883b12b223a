//! The wire event and its validation. Field names follow the LangChain callback /
//! `astream_events` v2 shape. Every error names the event (index, and line for NDJSON)
//! and the field.

use crate::contract::Event as PolicyEvent;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Longest idempotency key accepted from a client, and longest derived one.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// The idempotency key of an event that names none: `{root_run_id}:{event}:{step}`,
/// with `%` and `:` in the two names written `%25` and `%3A`, so the two `:` are the
/// only separators and distinct triples never give the same key (`("r", "x:y", 0)` is
/// `r:x%3Ay:0`, `("r:x", "y", 0)` is `r%3Ax:y:0`). Names without `%` or `:` read as
/// before. Past [`MAX_IDEMPOTENCY_KEY`] bytes the key is
/// `{escaped root, cut to 64 bytes}~sha256-{hex of the full key}`: bounded, still
/// distinct (it has no `:`, so it never equals an unhashed derived key).
pub fn derived_idempotency_key(root_run_id: &str, kind: &str, step: u64) -> String {
    fn escape(name: &str) -> std::borrow::Cow<'_, str> {
        if name.contains(['%', ':']) {
            name.replace('%', "%25").replace(':', "%3A").into()
        } else {
            name.into()
        }
    }
    let root = escape(root_run_id);
    let key = format!("{root}:{}:{step}", escape(kind));
    if key.len() <= MAX_IDEMPOTENCY_KEY {
        return key;
    }
    let mut cut = root.len().min(64);
    while !root.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = crate::json::length_prefixed_sha256("hostd-derived-key-v1", &[&key]);
    format!("{}~sha256-{}", &root[..cut], hex::encode(digest))
}

/// An event that passed validation.
#[derive(Debug, Clone)]
pub struct AcceptedEvent {
    /// The record handed to the policy.
    pub event: PolicyEvent,
    pub idempotency_key: String,
    /// The event exactly as received, kept for dead letters and replay.
    pub raw: Box<RawValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object, or an array of them.
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// A body that cannot be accepted; the message names the event and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidEvent {
    pub message: String,
    /// The event names a tenant other than the token's: a 403, not a 400.
    pub wrong_tenant: bool,
}

impl InvalidEvent {
    fn new(message: String) -> Self {
        InvalidEvent { message, wrong_tenant: false }
    }
}

/// An event-level error before it is placed in the batch.
pub struct EventError {
    message: String,
    wrong_tenant: bool,
}

impl EventError {
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for EventError {
    fn from(message: String) -> Self {
        EventError { message, wrong_tenant: false }
    }
}

impl From<&str> for EventError {
    fn from(message: &str) -> Self {
        EventError { message: message.to_string(), wrong_tenant: false }
    }
}

/// Parses and validates a whole body. Any bad event rejects the whole batch.
pub fn parse_body(body: &[u8], format: BodyFormat, tenant: &str) -> Result<Vec<AcceptedEvent>, InvalidEvent> {
    let text = std::str::from_utf8(body)
        .map_err(|e| InvalidEvent::new(format!("body is not UTF-8 (invalid byte at offset {})", e.valid_up_to())))?;
    match format {
        BodyFormat::Json => parse_json(text, tenant),
        BodyFormat::Ndjson => parse_ndjson(text, tenant),
    }
}

fn parse_json(text: &str, tenant: &str) -> Result<Vec<AcceptedEvent>, InvalidEvent> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(InvalidEvent::new("body is empty; send an event object, an array of events, or NDJSON".into()));
    }
    let malformed = |e: serde_json::Error| {
        InvalidEvent::new(format!("malformed JSON at line {} column {}: {e}", e.line(), e.column()))
    };
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(malformed)?;
        if items.is_empty() {
            return Err(InvalidEvent::new("the array holds no events".into()));
        }
        items.iter().enumerate().map(|(i, raw)| parse_event(raw, tenant).map_err(|e| at(i, None, e))).collect()
    } else {
        let raw: &RawValue = serde_json::from_str(text).map_err(malformed)?;
        Ok(vec![parse_event(raw, tenant).map_err(|e| at(0, None, e))?])
    }
}

fn parse_ndjson(text: &str, tenant: &str) -> Result<Vec<AcceptedEvent>, InvalidEvent> {
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let index = events.len();
        let raw: &RawValue = serde_json::from_str(line)
            .map_err(|e| at(index, Some(n + 1), format!("malformed JSON at column {}: {e}", e.column()).into()))?;
        events.push(parse_event(raw, tenant).map_err(|e| at(index, Some(n + 1), e))?);
    }
    if events.is_empty() {
        return Err(InvalidEvent::new("the NDJSON body holds no events".into()));
    }
    Ok(events)
}

fn at(index: usize, line: Option<usize>, e: EventError) -> InvalidEvent {
    let message = match line {
        Some(line) => format!("event {index} (line {line}): {}", e.message),
        None => format!("event {index}: {}", e.message),
    };
    InvalidEvent { message, wrong_tenant: e.wrong_tenant }
}

/// Validates one event object. The error names the field.
/// The known fields of a wire event, borrowed from the body (unknown fields are
/// ignored, for forward compatibility). Each is type-checked on its own below so the
/// error can name it.
#[derive(Deserialize)]
struct WireFields<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    run_id: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    tenant: Option<&'a RawValue>,
    #[serde(borrow)]
    parent_run_id: Option<&'a RawValue>,
    #[serde(borrow)]
    parent_ids: Option<&'a RawValue>,
    #[serde(borrow)]
    root_run_id: Option<&'a RawValue>,
    #[serde(borrow)]
    step: Option<&'a RawValue>,
    #[serde(borrow)]
    tags: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    ts: Option<&'a RawValue>,
    #[serde(borrow)]
    idempotency_key: Option<&'a RawValue>,
}

impl<'a> WireFields<'a> {
    fn field(&self, name: &str) -> Option<&'a RawValue> {
        match name {
            "event" => self.event,
            "run_id" => self.run_id,
            "name" => self.name,
            "tenant" => self.tenant,
            "parent_run_id" => self.parent_run_id,
            "parent_ids" => self.parent_ids,
            "root_run_id" => self.root_run_id,
            "step" => self.step,
            "tags" => self.tags,
            "metadata" => self.metadata,
            "data" => self.data,
            "ts" => self.ts,
            "idempotency_key" => self.idempotency_key,
            _ => None,
        }
    }
}

pub fn parse_event(raw: &RawValue, tenant: &str) -> Result<AcceptedEvent, EventError> {
    // Before any field is parsed: `RawValue` accepts any depth, later readers may not.
    crate::json::check_depth(raw.get())?;
    let fields: WireFields<'_> = serde_json::from_str(raw.get()).map_err(|e| {
        if raw.get().trim_start().starts_with('{') {
            format!("{e}")
        } else {
            format!("must be a JSON object, got {}", type_name_of_raw(raw))
        }
    })?;
    let get = |name: &str| -> Result<Option<Value>, String> {
        match fields.field(name) {
            None => Ok(None),
            Some(r) => {
                let v: Value = serde_json::from_str(r.get()).map_err(|e| format!("field `{name}`: {e}"))?;
                Ok(if v.is_null() { None } else { Some(v) })
            }
        }
    };
    let string = |name: &str| -> Result<Option<String>, String> {
        match get(name)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("field `{name}` must be a string, got {}", type_name(&other))),
        }
    };
    let required = |name: &str| -> Result<String, String> {
        match string(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(format!("field `{name}` must not be empty")),
            None => Err(format!("missing required field `{name}`")),
        }
    };

    let kind = required("event")?;
    let run_id = required("run_id")?;
    if let Some(claimed) = string("tenant")? {
        if claimed != tenant {
            return Err(EventError {
                message: format!(
                    "field `tenant` is `{}` but the token belongs to tenant `{tenant}`",
                    crate::text::capped(&claimed, 128)
                ),
                wrong_tenant: true,
            });
        }
    }
    let parent_ids: Vec<String> = match get("parent_ids")? {
        None => vec![],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(format!("field `parent_ids` must hold strings, got {}", type_name(&other))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!("field `parent_ids` must be an array of strings, got {}", type_name(&other)).into())
        }
    };
    let root_run_id = string("root_run_id")?.or_else(|| parent_ids.first().cloned()).unwrap_or_else(|| run_id.clone());
    let parent_run_id = string("parent_run_id")?.or_else(|| parent_ids.last().cloned());
    let step = match get("step")? {
        None => 0,
        Some(v) => {
            v.as_u64().ok_or_else(|| format!("field `step` must be a non-negative integer, got {}", describe(&v)))?
        }
    };
    let tags: Vec<String> = match get("tags")? {
        None => vec![],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(format!("field `tags` must hold strings, got {}", type_name(&other))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!("field `tags` must be an array of strings, got {}", type_name(&other)).into())
        }
    };
    let metadata = match fields.metadata.map(|r| r.get()) {
        None | Some("null") => "{}".to_string(),
        Some(text) if text.trim_start().starts_with('{') => text.to_string(),
        Some(_) => {
            return Err(format!(
                "field `metadata` must be an object, got {}",
                type_name(&get("metadata")?.unwrap_or(Value::Null))
            )
            .into())
        }
    };
    let data = fields.data.map(|r| r.get().to_string()).unwrap_or_else(|| "null".to_string());
    let name = string("name")?.unwrap_or_default();
    let timestamp_ms = match get("ts")? {
        None => crate::clock::now_ms(),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0 && *f < u64::MAX as f64).map(|f| f as u64))
            .ok_or_else(|| format!("field `ts` must be milliseconds since the epoch, got {n}"))?,
        Some(Value::String(s)) => humantime::parse_rfc3339_weak(&s)
            .map_err(|e| format!("field `ts` is not an RFC 3339 time (`{}`): {e}", crate::text::capped(&s, 64)))?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .map_err(|_| format!("field `ts` is before 1970: `{}`", crate::text::capped(&s, 64)))?,
        Some(other) => {
            return Err(
                format!("field `ts` must be a number (ms) or an RFC 3339 string, got {}", type_name(&other)).into()
            )
        }
    };
    let idempotency_key = match string("idempotency_key")? {
        Some(k) if k.is_empty() => return Err("field `idempotency_key` must not be empty".into()),
        Some(k) if k.len() > MAX_IDEMPOTENCY_KEY => {
            return Err(
                format!("field `idempotency_key` is {} bytes, the limit is {MAX_IDEMPOTENCY_KEY}", k.len()).into()
            )
        }
        Some(k) => k,
        None => derived_idempotency_key(&root_run_id, &kind, step),
    };
    Ok(AcceptedEvent {
        event: PolicyEvent {
            tenant: tenant.to_string(),
            kind,
            name,
            run_id,
            root_run_id,
            parent_run_id,
            step,
            tags,
            metadata,
            data,
            timestamp_ms,
        },
        idempotency_key,
        raw: raw.to_owned(),
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("{n}"),
        other => type_name(other).to_string(),
    }
}

fn type_name_of_raw(raw: &RawValue) -> &'static str {
    serde_json::from_str::<Value>(raw.get()).map(|v| type_name(&v)).unwrap_or("invalid JSON")
}

#[cfg(test)]
mod tests;
