//! The same policy contract in five guests: the Rust `redact_pii` and `pass_through`, and
//! the non-Rust policies of plugins/guests.mk (JavaScript via jco/QuickJS, Python via
//! componentize-py, C via wit-bindgen). For each it prints the component's size, its
//! compile time (`Component::new`, Cranelift), the time to instantiate and configure
//! an instance, `evaluate` on a reused instance with the ~1 KB `on_tool_end` event of
//! benches/policy.rs, and the memory one instance holds.
//!
//! Run with `cargo bench -p hostd --bench languages` after `make plugins`.

/// The allocator the hostd binary uses, so in-process numbers match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use hostd::config::PolicyLimits;
use hostd::contract::{EventPolicy, EventPolicyPre};
use hostd::policy::decision::RouteSet;
use hostd::policy::sandbox::{GuestLog, GuestState};
use hostd::policy::{Outcome, PolicyEngine, PolicyEvent, PolicyVersion};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::Store;

#[path = "sample/mod.rs"]
mod sample;
use sample::sample_event;

/// An `on_llm_end` of about the same size, which the usage meter delivers rather than drops.
fn llm_end_event() -> PolicyEvent {
    let mut e = sample_event();
    let size = e.data.len();
    e.kind = "on_llm_end".into();
    e.name = String::new();
    let mut data = serde_json::json!({
        "model": "gpt-4o-mini",
        "token_usage": {"input_tokens": 812, "output_tokens": 64, "total_tokens": 876},
        "tool_calls": [{"name": "crm_lookup", "args": {"customer": "cus_8f2k1"}, "id": "call_Q2x9aB7c"}],
        "text": "",
    });
    let pad = size.saturating_sub(data.to_string().len());
    data["text"] = serde_json::Value::String("The customer has three recent orders. ".repeat(pad / 38 + 1));
    e.data = data.to_string();
    e
}

struct Guest {
    label: &'static str,
    path: PathBuf,
}

fn guests() -> Vec<Guest> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/target");
    let rust = |label, file: &str| Guest { label, path: root.join("wasm32-wasip2/release").join(file) };
    let other = |label, file: &str| Guest { label, path: root.join("guests").join(file) };
    vec![
        rust("rust redact_pii", "redact_pii.wasm"),
        rust("rust pass_through", "pass_through.wasm"),
        other("js route_by_tool", "route_by_tool.wasm"),
        other("python usage_meter", "usage_meter.wasm"),
        other("c allow_list", "allow_list.wasm"),
    ]
}

/// A cap well above every guest's needs, so no instance is recycled mid-measurement
/// (the pool drops an instance that grew past half the cap; the default cap is 32 MiB).
fn limits() -> PolicyLimits {
    PolicyLimits { memory: 256 << 20, deadline: Duration::from_secs(1), ..PolicyLimits::default() }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// ns per `evaluate` on a reused instance: the median of 7 batches of ~300 ms each.
fn ns_per_evaluate(pool: &PolicyVersion, event: &PolicyEvent) -> (f64, &'static str) {
    let outcome = match pool.evaluate(event).expect("evaluate") {
        Outcome::Drop(_) => "drop",
        Outcome::Deliver(_) => "deliver",
    };
    let warm = Instant::now();
    let mut n = 0u64;
    while warm.elapsed() < Duration::from_millis(300) {
        black_box(pool.evaluate(black_box(event)).unwrap());
        n += 1;
    }
    let per_batch = n.max(10);
    let batches = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                black_box(pool.evaluate(black_box(event)).unwrap());
            }
            t.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    (median(batches), outcome)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

struct InstanceCost {
    instantiate_us: f64,
    linear_memory: u64,
    rss_per_instance: u64,
}

/// Instantiates `N` instances the way the pool does (deny-all WASI, `log`, memory
/// limiter), configures each and runs one `evaluate`; reports the median time to
/// instantiate + configure, the linear memory of one instance, and the resident memory
/// the N instances held, per instance: the RSS drop when they are freed, read back to
/// back (a growth measured from before would blur with the allocator returning the
/// compiler's garbage to the OS meanwhile).
fn instance_cost(engine: &PolicyEngine, component: &Component, event: &PolicyEvent) -> InstanceCost {
    const N: usize = 16;
    let mut linker: Linker<GuestState> = Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    EventPolicy::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
    let pre = EventPolicyPre::new(linker.instantiate_pre(component).unwrap()).unwrap();
    let log = GuestLog::new("bench".into(), "bench".into());
    let mut kept = Vec::with_capacity(N);
    let mut times = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        let mut store = Store::new(engine.engine(), GuestState::new(log.clone(), limits().memory));
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(u64::MAX / 2);
        let bindings = pre.instantiate(&mut store).unwrap();
        bindings.call_configure(&mut store, "{}").unwrap().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        bindings.call_evaluate(&mut store, event).unwrap().unwrap();
        kept.push((store, bindings));
    }
    let linear_memory = kept[0].0.data().limiter.high_water;
    let rss_with = rss_bytes();
    drop(kept);
    let rss_without = rss_bytes();
    InstanceCost {
        instantiate_us: median(times),
        linear_memory,
        rss_per_instance: rss_with.saturating_sub(rss_without) / N as u64,
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn kib(b: u64) -> String {
    format!("{} KiB", b / 1024)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such
    // flag: then only check that every guest loads.
    let quick = !std::env::args().any(|a| a == "--bench");
    let engine = PolicyEngine::new().unwrap();
    let event = sample_event();
    let llm_end = llm_end_event();
    println!(
        "event: on_tool_end, {} B (data + metadata); usage_meter also on on_llm_end, {} B",
        event.data.len() + event.metadata.len(),
        llm_end.data.len() + llm_end.metadata.len()
    );
    if !quick {
        println!(
            "{:<20} {:>10} {:>11} {:>15} {:>19} {:>12} {:>12}",
            "policy", "size", "compile", "inst+configure", "evaluate (reused)", "linear mem", "RSS/inst"
        );
    }
    for g in guests() {
        let bytes = match std::fs::read(&g.path) {
            Ok(b) => b,
            Err(e) => panic!("{}: {e}: run `make plugins` first", g.path.display()),
        };
        let runs = if quick { 1 } else { 3 };
        let compiles: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                black_box(Component::new(engine.engine(), &bytes).expect("compile"));
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let component = Component::new(engine.engine(), &bytes).unwrap();
        let pool = PolicyVersion::load(&engine, "bench", &bytes, "{}".into(), limits(), RouteSet::Any)
            .unwrap_or_else(|e| panic!("{}: {e}", g.label));
        if quick {
            pool.evaluate(&event).unwrap_or_else(|e| panic!("{}: {e}", g.label));
            println!("{:<20} loads and evaluates", g.label);
            continue;
        }
        let cost = instance_cost(&engine, &component, &event);
        let mut rows = vec![(g.label.to_string(), ns_per_evaluate(&pool, &event))];
        if g.label.contains("usage_meter") {
            rows.push(("  (on_llm_end)".to_string(), ns_per_evaluate(&pool, &llm_end)));
        }
        for (i, (label, (ns, outcome))) in rows.into_iter().enumerate() {
            if i == 0 {
                println!(
                    "{:<20} {:>10} {:>8.0} ms {:>12.0} µs {:>9.0} ns {:<7} {:>12} {:>12}",
                    label,
                    format!("{:.1} KB", bytes.len() as f64 / 1000.0),
                    median(compiles.clone()),
                    cost.instantiate_us,
                    ns,
                    outcome,
                    mib(cost.linear_memory),
                    kib(cost.rss_per_instance),
                );
            } else {
                println!("{:<20} {:>10} {:>11} {:>15} {:>9.0} ns {:<7}", label, "", "", "", ns, outcome);
            }
        }
    }
}
