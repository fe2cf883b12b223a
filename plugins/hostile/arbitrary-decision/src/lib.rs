//! Returns whatever decision the event's `data` asks for, so a fuzzer (or the soak)
//! controls exactly what the host has to lift and check: thousands of deliveries that
//! all point at one large string in guest memory, giant error or drop strings, unknown
//! routes, payloads that are not JSON, log spam, traps and runaway loops.
//!
//! `data` is a JSON object; every key is optional:
//!
//! - `mode`: `deliver` (the default when `deliveries` is given), `drop`, `error`,
//!   `trap`, `loop` (spin until the deadline), `grow` (allocate until the memory cap).
//!   Anything else, or `data` not an object: drop with a reason saying so.
//! - `deliveries`: how many deliveries (default 1).
//! - `payload`, `route`, `key`, `redaction`, `reason`, `error`, `log`, `stdout`: text.
//!   A string is used as it is; `{"prefix": P, "repeat": R, "times": K, "suffix": S}`
//!   is `P + R×K + S` (how a small event asks for a 1 MiB payload); any other JSON is
//!   used as its serialisation. `key: null` or no `key` means no key.
//! - `routes`: a list of route names, delivery `i` getting `routes[i % len]`
//!   (overrides `route`).
//! - `redactions`: how many redaction entries each delivery carries (default 0).
//! - `alias`: when true every delivery's strings point at the same bytes in guest
//!   memory (legal in the canonical ABI, and what a hostile guest does to make the
//!   host copy far more than the guest holds); otherwise each delivery owns copies.
//! - `logs`: how many times to call the `log` import with `log` before deciding.
//!
//! `configure` accepts any config.
wit_bindgen::generate!({ path: "../../../wit", world: "event-policy" });

use hostd::policy::log::{log, Level};
use hostd::policy::types::Delivery;
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Largest text a spec may ask for; more traps like any failed allocation would.
const MAX_TEXT: usize = 1 << 30;

/// The system allocator, except that frees inside the pinned arena are ignored. The
/// generated post-return code frees every lowered string once per delivery; aliased
/// strings all live in the arena, which is freed once, by the next call.
struct ArenaAwareAlloc;

static PINNED_START: AtomicUsize = AtomicUsize::new(0);
static PINNED_END: AtomicUsize = AtomicUsize::new(0);

fn pinned(ptr: *mut u8) -> bool {
    let p = ptr as usize;
    p >= PINNED_START.load(Ordering::Relaxed) && p < PINNED_END.load(Ordering::Relaxed)
}

unsafe impl GlobalAlloc for ArenaAwareAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !pinned(ptr) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        assert!(!pinned(ptr), "aliased strings are never reallocated");
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: ArenaAwareAlloc = ArenaAwareAlloc;

/// The bytes the aliased strings of the last decision point into.
static ARENA: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Frees the previous arena and pins `bytes` as the new one; returns its start.
fn pin_arena(bytes: Vec<u8>) -> *mut u8 {
    let mut arena = ARENA.lock().unwrap_or_else(|p| p.into_inner());
    PINNED_START.store(0, Ordering::Relaxed);
    PINNED_END.store(0, Ordering::Relaxed);
    *arena = bytes;
    let start = arena.as_mut_ptr();
    PINNED_START.store(start as usize, Ordering::Relaxed);
    PINNED_END.store(start as usize + arena.len(), Ordering::Relaxed);
    start
}

/// A `String` over `len` bytes of the pinned arena at `offset` (valid UTF-8: each field
/// was copied in whole).
fn alias(start: *mut u8, offset: usize, len: usize) -> String {
    if len == 0 {
        return String::new();
    }
    // SAFETY: the range lies inside the pinned arena, which outlives this decision
    // (it is replaced only by the next call, after post-return); frees of it are
    // ignored by the allocator, and lowering never reallocates a string whose length
    // equals its capacity.
    unsafe { String::from_raw_parts(start.add(offset), len, len) }
}

fn text(spec: Option<&Value>, default: &str) -> String {
    match spec {
        None | Some(Value::Null) => default.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) if o.contains_key("repeat") || o.contains_key("times") => {
            let part = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("");
            let (prefix, repeat, suffix) = (part("prefix"), part("repeat"), part("suffix"));
            let times = o.get("times").and_then(Value::as_u64).unwrap_or(1) as usize;
            let total = repeat.len().saturating_mul(times).saturating_add(prefix.len() + suffix.len());
            if total > MAX_TEXT {
                panic!("asked for {total} bytes of text");
            }
            let mut s = String::with_capacity(total);
            s.push_str(prefix);
            s.push_str(&repeat.repeat(times));
            s.push_str(suffix);
            s
        }
        Some(other) => other.to_string(),
    }
}

fn count(spec: Option<&Value>, default: usize) -> usize {
    spec.and_then(Value::as_u64).map(|n| n.min(10_000_000) as usize).unwrap_or(default)
}

fn deliveries(data: &serde_json::Map<String, Value>) -> Vec<Delivery> {
    let n = count(data.get("deliveries"), 1);
    let payload = text(data.get("payload"), "{}");
    let routes: Vec<String> = match data.get("routes").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list.iter().map(|r| text(Some(r), "default")).collect(),
        _ => vec![text(data.get("route"), "default")],
    };
    let key = match data.get("key") {
        None | Some(Value::Null) => None,
        spec => Some(text(spec, "")),
    };
    let redaction = text(data.get("redaction"), "/data");
    let redactions = count(data.get("redactions"), 0);
    if data.get("alias").and_then(Value::as_bool) != Some(true) {
        return (0..n)
            .map(|i| Delivery {
                route: routes[i % routes.len()].clone(),
                payload: payload.clone(),
                key: key.clone(),
                redactions: vec![redaction.clone(); redactions],
            })
            .collect();
    }
    // One arena: payload, key, redaction, then every route; each delivery's strings
    // are views of it.
    let mut bytes = Vec::with_capacity(payload.len() + redaction.len() + 64);
    let mut place = |s: &str| {
        let at = bytes.len();
        bytes.extend_from_slice(s.as_bytes());
        (at, s.len())
    };
    let p = place(&payload);
    let k = key.as_deref().map(&mut place);
    let r = place(&redaction);
    let rs: Vec<(usize, usize)> = routes.iter().map(|s| place(s)).collect();
    let start = pin_arena(bytes);
    (0..n)
        .map(|i| {
            let (route_at, route_len) = rs[i % rs.len()];
            Delivery {
                route: alias(start, route_at, route_len),
                payload: alias(start, p.0, p.1),
                key: k.map(|(at, len)| alias(start, at, len)),
                redactions: (0..redactions).map(|_| alias(start, r.0, r.1)).collect(),
            }
        })
        .collect()
}

struct Policy;

impl Guest for Policy {
    fn configure(_: String) -> Result<(), String> {
        Ok(())
    }

    fn evaluate(e: Event) -> Result<Decision, String> {
        let Ok(Value::Object(data)) = serde_json::from_str::<Value>(&e.data) else {
            return Ok(Decision::Drop("arbitrary-decision: data is not a JSON object".into()));
        };
        if let Some(n) = data.get("logs").and_then(Value::as_u64) {
            let line = text(data.get("log"), "arbitrary-decision log line");
            for _ in 0..n.min(100_000) {
                log(Level::Info, &line);
            }
        }
        if let Some(out) = data.get("stdout") {
            println!("{}", text(Some(out), ""));
        }
        let mode = match data.get("mode").and_then(Value::as_str) {
            Some(m) => m,
            None if data.contains_key("deliveries") => "deliver",
            None => "",
        };
        match mode {
            "deliver" => Ok(Decision::Deliver(deliveries(&data))),
            "drop" => Ok(Decision::Drop(text(data.get("reason"), "asked to drop"))),
            "error" => Err(text(data.get("error"), "asked to fail")),
            "trap" => panic!("asked to trap"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(e.step | 1));
                    if n == 0 {
                        return Ok(Decision::Drop("wrapped".into()));
                    }
                }
            }
            "grow" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    blocks.push(std::hint::black_box(vec![7u8; 1 << 20]));
                    if blocks.len() == usize::MAX {
                        return Ok(Decision::Drop("grew".into()));
                    }
                }
            }
            other => Ok(Decision::Drop(format!("arbitrary-decision: no decision asked for (mode `{other}`)"))),
        }
    }
}

export!(Policy);
