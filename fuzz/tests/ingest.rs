//! Fuzzes `POST /v1/events` body parsing and validation (`event::parse_body`):
//! JSON objects, arrays and NDJSON of structured-but-hostile events, and raw byte
//! mutations of real bodies.
//!
//! Properties: no panic; an accepted body yields one event per object, each holding
//! exactly the fields the client sent (checked against an independent reading of the
//! raw event) and its raw text unchanged; a rejected body gets a message that names
//! the event (index, and line for NDJSON, both correct) and the field.

use hostd::event::{parse_body, AcceptedEvent, BodyFormat, InvalidEvent, MAX_IDEMPOTENCY_KEY};
use hostd_fuzz::json::{self, Piece, J};
use hostd_fuzz::{cases, mutate, Bytes, Target};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::value::RawValue;
use std::collections::HashMap;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TENANT: &str = "acme";

/// The fields `parse_event` knows.
const FIELDS: [&str; 13] = [
    "event",
    "run_id",
    "name",
    "tenant",
    "parent_run_id",
    "parent_ids",
    "root_run_id",
    "step",
    "tags",
    "metadata",
    "data",
    "ts",
    "idempotency_key",
];

const KINDS: &[&str] = &[
    "on_tool_end",
    "on_tool_start",
    "on_chain_end",
    "on_chat_model_end",
    "on_llm_end",
    "on_custom_event",
    "run_end",
    "on_retriever_end",
];

const TIMES: &[&str] = &[
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.123456789+02:00",
    "2026-01-01 00:00:00",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:60Z",
    "yesterday",
    "",
    "2026-01-01T00:00:00",
    "+10000-01-01T00:00:00Z",
];

// ---------------------------------------------------------------------------
// Structured events

#[derive(Debug, Clone)]
enum Key {
    Known(&'static str),
    Other(Vec<Piece>),
}

#[derive(Debug, Clone)]
struct EventSpec {
    fields: Vec<(Key, J)>,
}

impl EventSpec {
    fn render(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match k {
                Key::Known(name) => {
                    out.push('"');
                    out.push_str(name);
                    out.push('"');
                }
                Key::Other(pieces) => json::render_str(pieces, &mut out),
            }
            out.push(':');
            v.render_into(&mut out);
        }
        out.push('}');
        out
    }
}

fn id() -> impl Strategy<Value = J> {
    prop_oneof![
        8 => "[a-z0-9-]{1,12}".prop_map(|s| J::str(&s)),
        1 => json::string(),
        1 => json::value(),
    ]
}

fn strings() -> impl Strategy<Value = J> {
    prop_oneof![
        6 => proptest::collection::vec(json::clean_string().prop_map(|s| J::str(&s)), 0..4).prop_map(J::Arr),
        2 => proptest::collection::vec(json::leaf(), 0..4).prop_map(J::Arr),
        1 => json::value(),
    ]
}

fn field_value(name: &'static str) -> BoxedStrategy<J> {
    match name {
        "event" => prop_oneof![
            10 => proptest::sample::select(KINDS).prop_map(J::str),
            1 => Just(J::str("")),
            1 => json::string(),
            1 => json::value(),
        ]
        .boxed(),
        "run_id" | "root_run_id" | "parent_run_id" | "name" => id().boxed(),
        "tenant" => prop_oneof![
            4 => Just(J::str(TENANT)),
            1 => Just(J::str("globex")),
            1 => Just(J::Null),
            1 => json::string(),
            1 => json::value(),
        ]
        .boxed(),
        "parent_ids" | "tags" => strings().boxed(),
        "step" => prop_oneof![
            6 => (0u64..10_000).prop_map(|n| J::Num(n.to_string())),
            3 => json::number(),
            1 => json::value(),
        ]
        .boxed(),
        "metadata" => prop_oneof![
            5 => proptest::collection::vec(("[a-z_]{1,8}", json::leaf()), 0..4).prop_map(|kv| J::Obj(
                kv.into_iter().map(|(k, v)| (vec![Piece::Text(k)], v)).collect()
            )),
            2 => json::value(),
        ]
        .boxed(),
        "data" => json::value().boxed(),
        "ts" => prop_oneof![
            3 => (0u64..4_102_444_800_000).prop_map(|n| J::Num(n.to_string())),
            3 => proptest::sample::select(TIMES).prop_map(J::str),
            2 => json::number(),
            1 => json::value(),
        ]
        .boxed(),
        "idempotency_key" => prop_oneof![
            5 => "[a-z0-9:-]{1,40}".prop_map(|s| J::str(&s)),
            2 => proptest::sample::select(vec![0usize, 1, 255, 256, 257, 1024])
                .prop_map(|n| J::Str(vec![Piece::Run('k', n)])),
            1 => Just(J::Str(vec![Piece::Run('é', 128)])),
            1 => json::string(),
            1 => json::value(),
        ]
        .boxed(),
        other => unreachable!("no generator for field {other}"),
    }
}

/// A value a client could well send for the field (valid for it, if odd).
fn clean_value(name: &'static str) -> BoxedStrategy<J> {
    let id = || "[a-z0-9-]{1,12}".prop_map(|s| J::str(&s));
    match name {
        "event" => proptest::sample::select(KINDS).prop_map(J::str).boxed(),
        "run_id" | "root_run_id" | "parent_run_id" | "name" => id().boxed(),
        "tenant" => prop_oneof![Just(J::str(TENANT)), Just(J::Null)].boxed(),
        "parent_ids" | "tags" => {
            proptest::collection::vec(json::clean_string().prop_map(|s| J::str(&s)), 0..4).prop_map(J::Arr).boxed()
        }
        "step" => (0u64..10_000).prop_map(|n| J::Num(n.to_string())).boxed(),
        "metadata" => json::syntactic_value()
            .prop_map(|v| match v {
                J::Obj(_) => v,
                other => J::Obj(vec![(vec![Piece::Text("v".into())], other)]),
            })
            .boxed(),
        "data" => json::syntactic_value().boxed(),
        "ts" => prop_oneof![
            (0u64..4_102_444_800_000).prop_map(|n| J::Num(n.to_string())),
            proptest::sample::select(&TIMES[..4]).prop_map(J::str),
        ]
        .boxed(),
        "idempotency_key" => "[a-z0-9:-]{1,40}".prop_map(|s| J::str(&s)).boxed(),
        other => unreachable!("no generator for field {other}"),
    }
}

/// An event; a `clean` one holds only values valid for their fields.
fn event_spec_of(clean: bool) -> impl Strategy<Value = EventSpec> {
    let known: Vec<BoxedStrategy<Option<(Key, J)>>> = FIELDS
        .iter()
        .map(|&name| {
            let required = name == "event" || name == "run_id";
            let value = if clean { clean_value(name) } else { field_value(name) };
            if clean && required {
                return value.prop_map(move |v| Some((Key::Known(name), v))).boxed();
            }
            let p = if required { 0.96 } else { 0.35 };
            proptest::option::weighted(p, value).prop_map(move |v| v.map(|v| (Key::Known(name), v))).boxed()
        })
        .collect();
    let unknown = proptest::collection::vec(
        (proptest::collection::vec(json::piece(), 0..3).prop_map(Key::Other), json::value()),
        0..if clean { 1 } else { 3 },
    );
    let duplicate = if clean {
        Just(None).boxed()
    } else {
        proptest::option::weighted(
            0.03,
            proptest::sample::select(FIELDS.to_vec())
                .prop_flat_map(|n| field_value(n).prop_map(move |v| (Key::Known(n), v))),
        )
        .boxed()
    };
    (known, unknown, duplicate)
        .prop_flat_map(|(known, unknown, duplicate)| {
            let mut fields: Vec<(Key, J)> = known.into_iter().flatten().collect();
            fields.extend(unknown);
            fields.extend(duplicate);
            Just(fields).prop_shuffle()
        })
        .prop_map(|fields| EventSpec { fields })
}

#[derive(Debug, Clone)]
enum Item {
    Event(EventSpec),
    Other(J),
}

impl Item {
    fn render(&self) -> String {
        match self {
            Item::Event(e) => e.render(),
            Item::Other(j) => j.render(),
        }
    }
}

fn item(clean: bool) -> impl Strategy<Value = Item> {
    let other = if clean { 0 } else { 1 };
    prop_oneof![15 => event_spec_of(clean).prop_map(Item::Event), other => json::value().prop_map(Item::Other)]
}

fn whitespace() -> impl Strategy<Value = String> {
    prop_oneof![6 => Just(String::new()), 2 => "[ \t\n\r]{1,3}", 1 => Just("\u{feff}".to_string())]
}

#[derive(Debug, Clone)]
enum Body {
    Object {
        event: Item,
        before: String,
        after: String,
    },
    Array {
        items: Vec<Item>,
        gap: String,
    },
    Ndjson {
        lines: Vec<Option<Item>>,
        crlf: bool,
        blank: String,
        final_newline: bool,
    },
    /// Many small valid-looking events in one NDJSON body.
    Large {
        event: EventSpec,
        copies: usize,
    },
}

impl Body {
    fn render(&self) -> (Vec<u8>, BodyFormat) {
        match self {
            Body::Object { event, before, after } => {
                (format!("{before}{}{after}", event.render()).into_bytes(), BodyFormat::Json)
            }
            Body::Array { items, gap } => {
                let inner: Vec<String> = items.iter().map(Item::render).collect();
                (format!("[{gap}{}{gap}]", inner.join(&format!("{gap},{gap}"))).into_bytes(), BodyFormat::Json)
            }
            Body::Ndjson { lines, crlf, blank, final_newline } => {
                let eol = if *crlf { "\r\n" } else { "\n" };
                let text: Vec<String> =
                    lines.iter().map(|l| l.as_ref().map(Item::render).unwrap_or_else(|| blank.clone())).collect();
                let mut body = text.join(eol);
                if *final_newline {
                    body.push_str(eol);
                }
                (body.into_bytes(), BodyFormat::Ndjson)
            }
            Body::Large { event, copies } => {
                let one = event.render();
                let copies = (*copies).min((4 << 20) / one.len().max(1)).max(1);
                let mut body = String::with_capacity((one.len() + 1) * copies);
                for _ in 0..copies {
                    body.push_str(&one);
                    body.push('\n');
                }
                (body.into_bytes(), BodyFormat::Ndjson)
            }
        }
    }
}

/// Half the bodies hold only clean events (so acceptance and the round trip get
/// exercised), half anything.
fn body() -> impl Strategy<Value = Body> {
    // Both built once: a strategy built per input (`prop_flat_map`) recompiles every
    // regex in it each time.
    prop_oneof![body_of(true), body_of(false)]
}

fn body_of(clean: bool) -> impl Strategy<Value = Body> {
    let item = move || item(clean);
    prop_oneof![
        12 => (item(), whitespace(), whitespace()).prop_map(|(event, before, after)| Body::Object { event, before, after }),
        9 => (proptest::collection::vec(item(), 0..6), whitespace()).prop_map(|(items, gap)| Body::Array { items, gap }),
        9 => (
            proptest::collection::vec(proptest::option::weighted(0.85, item()), 1..6),
            any::<bool>(),
            "[ \t]{0,2}",
            any::<bool>()
        )
            .prop_map(|(lines, crlf, blank, final_newline)| Body::Ndjson { lines, crlf, blank, final_newline }),
        1 => (event_spec_of(clean), prop_oneof![6 => Just(200usize), 2 => Just(2_000), 1 => Just(10_000)])
            .prop_map(|(event, copies)| Body::Large { event, copies }),
    ]
}

// ---------------------------------------------------------------------------
// Raw byte mutations of real bodies

const SEEDS: &[(&str, BodyFormat)] = &[
    (
        r#"{"event":"on_tool_end","name":"search","run_id":"7c1f","parent_ids":["root-1","chain-2"],"tags":["seq:step:2"],"metadata":{"langgraph_node":"tools","thread_id":"t-9"},"data":{"output":"Paris is the capital of France. Call +33 1 23 45 67 89.","input":{"query":"capital of france"}},"step":4,"ts":1767225600000}"#,
        BodyFormat::Json,
    ),
    (
        r#"[{"event":"on_chat_model_end","run_id":"m1","root_run_id":"root","step":1,"data":{"output":{"content":"hi","usage_metadata":{"input_tokens":12,"output_tokens":3}}}},{"event":"on_custom_event","name":"progress","run_id":"c1","tenant":"acme","data":{"pct":42.5},"ts":"2026-01-01T00:00:00Z","idempotency_key":"root:progress:42"}]"#,
        BodyFormat::Json,
    ),
    (
        "{\"event\":\"on_chain_end\",\"run_id\":\"a\",\"step\":0,\"data\":{\"outputs\":[1,2,{\"x\":null}]}}\n\n{\"event\":\"on_tool_end\",\"run_id\":\"b\",\"parent_run_id\":\"a\",\"data\":\"\\u00e9\\ud83d\\ude00\"}\r\n{\"event\":\"run_end\",\"run_id\":\"c\",\"metadata\":null,\"tags\":[]}\n",
        BodyFormat::Ndjson,
    ),
    (r#"{"event":"on_tool_end","run_id":"x","data":null}"#, BodyFormat::Ndjson),
];

// ---------------------------------------------------------------------------
// Properties

fn check_body(target: &Target, body: &[u8], format: BodyFormat) -> Result<(), TestCaseError> {
    let before = now_ms();
    let result = parse_body(body, format, TENANT);
    let after = now_ms();
    match result {
        Ok(events) => {
            target.accepted();
            check_accepted(target, body, format, &events, (before, after))
        }
        Err(e) => {
            target.rejected();
            check_rejected(target, body, format, &e)
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn non_blank_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(n, l)| (n + 1, l)).collect()
}

/// The raw text of each event in an accepted body, as an independent reader finds them.
fn raw_events(text: &str, format: BodyFormat) -> Result<Vec<String>, String> {
    match format {
        BodyFormat::Json if text.trim_start().starts_with('[') => serde_json::from_str::<Vec<&RawValue>>(text)
            .map(|v| v.iter().map(|r| r.get().to_string()).collect())
            .map_err(|e| format!("accepted a body that is not a JSON array: {e}")),
        BodyFormat::Json => serde_json::from_str::<&RawValue>(text)
            .map(|r| vec![r.get().to_string()])
            .map_err(|e| format!("accepted a body that is not one JSON value: {e}")),
        BodyFormat::Ndjson => non_blank_lines(text)
            .into_iter()
            .map(|(n, l)| {
                serde_json::from_str::<&RawValue>(l)
                    .map(|r| r.get().to_string())
                    .map_err(|e| format!("accepted line {n}, which is not JSON: {e}"))
            })
            .collect(),
    }
}

fn check_accepted(
    target: &Target,
    body: &[u8],
    format: BodyFormat,
    events: &[AcceptedEvent],
    clock: (u64, u64),
) -> Result<(), TestCaseError> {
    let text = std::str::from_utf8(body);
    target.check("ingest.accepted_is_utf8", text.is_ok(), || "accepted a body that is not UTF-8".into())?;
    let text = text.unwrap_or_default();
    let raws = raw_events(text, format);
    target.check("ingest.accepted_is_json", raws.is_ok(), || raws.clone().err().unwrap_or_default())?;
    let raws = raws.unwrap_or_default();
    target.check("ingest.one_event_per_object", raws.len() == events.len() && !events.is_empty(), || {
        format!("{} events accepted from {} objects", events.len(), raws.len())
    })?;
    for (i, (raw, event)) in raws.iter().zip(events).enumerate() {
        // A body of thousands of copies: the first and last hundred stand for the rest.
        if i >= 100 && i + 100 < events.len() {
            continue;
        }
        target.check("ingest.raw_kept_exactly", event.raw.get() == raw, || {
            format!("event {i}: kept raw {:?}, the body had {:?}", event.raw.get(), raw)
        })?;
        let verdict = roundtrip(event, raw, clock);
        target.check("ingest.fields_roundtrip", verdict.is_ok(), || {
            format!("event {i}: {}; raw {raw}", verdict.clone().err().unwrap_or_default())
        })?;
    }
    Ok(())
}

/// Reads the raw event independently of `parse_event` and checks that every field of
/// the accepted event is what the client sent (or the documented default).
fn roundtrip(e: &AcceptedEvent, raw: &str, (before, after): (u64, u64)) -> Result<(), String> {
    let map: HashMap<String, Box<RawValue>> =
        serde_json::from_str(raw).map_err(|err| format!("accepted an event that is not an object: {err}"))?;
    let present = |k: &str| map.get(k).map(|r| r.get()).filter(|t| *t != "null");
    let string = |k: &str| -> Result<Option<String>, String> {
        present(k).map(|t| serde_json::from_str::<String>(t).map_err(|err| format!("`{k}` is {t}: {err}"))).transpose()
    };
    let strings = |k: &str| -> Result<Vec<String>, String> {
        present(k)
            .map(|t| serde_json::from_str::<Vec<String>>(t).map_err(|err| format!("`{k}` is {t}: {err}")))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let ev = &e.event;
    same("tenant", ev.tenant.as_str(), TENANT)?;
    if let Some(claimed) = string("tenant")? {
        same("claimed tenant", claimed.as_str(), TENANT)?;
    }
    let kind = string("event")?.unwrap_or_default();
    let run_id = string("run_id")?.unwrap_or_default();
    if kind.is_empty() || run_id.is_empty() {
        return Err("accepted without a non-empty `event` and `run_id`".into());
    }
    same("event", &ev.kind, &kind)?;
    same("run_id", &ev.run_id, &run_id)?;
    same("name", &ev.name, &string("name")?.unwrap_or_default())?;
    same("tags", &ev.tags, &strings("tags")?)?;
    let parents = strings("parent_ids")?;
    let root = string("root_run_id")?.or_else(|| parents.first().cloned()).unwrap_or_else(|| run_id.clone());
    same("root_run_id", &ev.root_run_id, &root)?;
    same("parent_run_id", &ev.parent_run_id, &string("parent_run_id")?.or_else(|| parents.last().cloned()))?;
    let step = match present("step") {
        None => 0,
        Some(t) => serde_json::from_str::<u64>(t).map_err(|err| format!("accepted `step` {t}: {err}"))?,
    };
    same("step", &ev.step, &step)?;
    same("metadata", ev.metadata.as_str(), present("metadata").unwrap_or("{}"))?;
    same("data", ev.data.as_str(), map.get("data").map(|r| r.get()).unwrap_or("null"))?;
    match present("ts") {
        None if (before..=after).contains(&ev.timestamp_ms) => {}
        None => return Err(format!("no `ts`, yet timestamp {} is not the time of the call", ev.timestamp_ms)),
        Some(t) if t.starts_with('"') => {
            let s: String = serde_json::from_str(t).map_err(|err| err.to_string())?;
            let want = humantime::parse_rfc3339_weak(&s)
                .map_err(|err| format!("accepted `ts` {s:?} that is not RFC 3339: {err}"))?
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| format!("accepted `ts` {s:?} before 1970"))?
                .as_millis() as u64;
            same("ts", &ev.timestamp_ms, &want)?;
        }
        Some(t) => {
            let want = serde_json::from_str::<u64>(t)
                .ok()
                .or_else(|| serde_json::from_str::<f64>(t).ok().filter(|f| *f >= 0.0).map(|f| f as u64))
                .ok_or_else(|| format!("accepted `ts` {t}"))?;
            same("ts", &ev.timestamp_ms, &want)?;
        }
    }
    let key = match string("idempotency_key")? {
        Some(k) if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY => {
            return Err(format!("accepted an idempotency key of {} bytes", k.len()))
        }
        Some(k) => k,
        None => hostd::event::derived_idempotency_key(&root, &kind, step),
    };
    same("idempotency_key", &e.idempotency_key, &key)
}

/// `got == want`, or an error that shows both.
fn same<T: PartialEq<U> + std::fmt::Debug + ?Sized, U: std::fmt::Debug + ?Sized>(
    what: &str,
    got: &T,
    want: &U,
) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let (g, w) = (format!("{got:?}"), format!("{want:?}"));
    Err(format!("{what}: accepted {}, sent {}", hostd_fuzz::clip(&g, 200), hostd_fuzz::clip(&w, 200)))
}

/// Splits `event N: rest` / `event N (line L): rest`.
fn event_prefix(message: &str) -> Option<(usize, Option<usize>, &str)> {
    let rest = message.strip_prefix("event ")?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let index: usize = rest[..digits].parse().ok()?;
    let rest = &rest[digits..];
    if let Some(r) = rest.strip_prefix(": ") {
        return Some((index, None, r));
    }
    let r = rest.strip_prefix(" (line ")?;
    let d = r.find(|c: char| !c.is_ascii_digit())?;
    let line: usize = r[..d].parse().ok()?;
    Some((index, Some(line), r[d..].strip_prefix("): ")?))
}

/// Longest rejection message that is not an echo of the client's input.
const MESSAGE_MAX: usize = 1024;

fn check_rejected(target: &Target, body: &[u8], format: BodyFormat, e: &InvalidEvent) -> Result<(), TestCaseError> {
    let m = e.message.as_str();
    target.check("ingest.error_bounded", m.len() <= MESSAGE_MAX, || {
        format!("a {}-byte message: {}", m.len(), hostd_fuzz::clip(m, 300))
    })?;
    target.check(
        "ingest.wrong_tenant_flag",
        e.wrong_tenant == m.contains("but the token belongs to tenant"),
        || format!("wrong_tenant = {} for {m:?}", e.wrong_tenant),
    )?;
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(utf8) => {
            let want = format!("body is not UTF-8 (invalid byte at offset {})", utf8.valid_up_to());
            return target.check("ingest.error_names_offset", m == want, || format!("{m:?}, expected {want:?}"));
        }
    };
    if let Some((index, line, rest)) = event_prefix(m) {
        target.count(&format!("rejected: {}", reason_class(rest)));
        check_event_location(target, text, format, index, line, m)?;
        let names_field = FIELDS.iter().any(|f| rest.contains(&format!("`{f}`")))
            || rest.starts_with("must be a JSON object, got ")
            || (line.is_some() && rest.starts_with("malformed JSON at column "));
        return target.check("ingest.error_names_field", names_field, || format!("{m:?} for body {text:?}"));
    }
    target.count(&format!("rejected: body: {}", reason_class(m)));
    let lines = text.lines().count().max(1);
    let body_level = match format {
        BodyFormat::Json => {
            (m.starts_with("body is empty") && text.trim_start().is_empty())
                || (m == "the array holds no events"
                    && serde_json::from_str::<Vec<&RawValue>>(text).is_ok_and(|v| v.is_empty()))
                || m.strip_prefix("malformed JSON at line ").is_some_and(|r| {
                    let n: usize = r.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
                    (1..=lines + 1).contains(&n)
                })
        }
        BodyFormat::Ndjson => m == "the NDJSON body holds no events" && non_blank_lines(text).is_empty(),
    };
    target.check("ingest.error_names_event", body_level, || format!("unexplained rejection {m:?} of {text:?}"))
}

/// The event index (and NDJSON line) an error names is where that event is.
fn check_event_location(
    target: &Target,
    text: &str,
    format: BodyFormat,
    index: usize,
    line: Option<usize>,
    m: &str,
) -> Result<(), TestCaseError> {
    let ok = match (format, line) {
        (BodyFormat::Ndjson, Some(l)) => {
            let lines = non_blank_lines(text);
            lines.get(index).is_some_and(|(n, _)| *n == l)
        }
        (BodyFormat::Json, None) if text.trim_start().starts_with('[') => {
            match serde_json::from_str::<Vec<&RawValue>>(text) {
                // The first event that fails is the one named.
                Ok(items) => {
                    index < items.len() && items[..index].iter().all(|r| hostd::event::parse_event(r, TENANT).is_ok())
                }
                Err(_) => false,
            }
        }
        (BodyFormat::Json, None) => index == 0,
        _ => false,
    };
    target.check("ingest.error_names_event", ok, || format!("{m:?} does not locate the event in {text:?}"))
}

/// A short class of a rejection reason, for the summary.
fn reason_class(rest: &str) -> String {
    let plain: String = rest.chars().filter(|c| !c.is_ascii_digit()).collect();
    let plain = plain.replace("at line  column ", "").replace("at column : ", "");
    let mut class: String = plain.chars().take_while(|c| *c != '`' && *c != ',' && *c != '(').take(48).collect();
    if let Some(f) = FIELDS.iter().find(|f| rest.contains(&format!("`{f}`"))) {
        class.push_str(f);
    }
    class.trim().to_string()
}

#[test]
fn structured_bodies() {
    let target = Target::new("ingest/structured");
    target.run(cases("ingest/structured", 0.12), body, |b| {
        let (bytes, format) = b.render();
        check_body(&target, &bytes, format)
    });
}

#[test]
fn mutated_bytes() {
    let target = Target::new("ingest/bytes");
    let strategy = || {
        (0..SEEDS.len(), any::<bool>(), mutate::mutations(8)).prop_map(|(seed, swap_format, edits)| {
            let (text, format) = SEEDS[seed];
            let format = match (format, swap_format) {
                (BodyFormat::Json, true) => BodyFormat::Ndjson,
                (BodyFormat::Ndjson, true) => BodyFormat::Json,
                (f, false) => f,
            };
            (Bytes(mutate::apply(text.as_bytes(), &edits)), format)
        })
    };
    target.run(cases("ingest/bytes", 0.46), strategy, |(bytes, format)| check_body(&target, &bytes.0, format));
}
