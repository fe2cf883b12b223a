//! `evaluate` of the Rust redaction policy on a 1 KB LangChain `on_tool_end` event:
//! a reused instance, a fresh instance per call, and the same redaction compiled
//! natively into the host (the `hostd-policy-sdk` code the guest itself runs).
//!
//! Run with `make bench`; results and the ratios go in BENCHMARKS.md.

/// The allocator the hostd binary uses, so in-process numbers match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hostd::config::PolicyLimits;
use hostd::policy::decision::RouteSet;
use hostd::policy::{PolicyEngine, PolicyVersion};
use hostd_policy_sdk::{event_view, Redactor};
use std::path::PathBuf;

#[path = "sample/mod.rs"]
mod sample;
use sample::sample_event;

fn plugin(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(p.exists(), "{} missing: run `make plugins`", p.display());
    p
}

fn bench_redaction(c: &mut Criterion) {
    let event = sample_event();
    let size = event.data.len() + event.metadata.len();
    let engine = PolicyEngine::new().unwrap();
    let policy = PolicyVersion::load_file(
        &engine,
        "bench",
        &plugin("redact_pii"),
        "{}".into(),
        PolicyLimits::default(),
        RouteSet::Any,
    )
    .unwrap();
    let redactor = Redactor::new();

    let mut group = c.benchmark_group(format!("redact_pii/{size}B_on_tool_end"));
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter("native"), |b| {
        b.iter(|| redactor.redact_envelope(&event_view!(std::hint::black_box(&event))).unwrap())
    });
    group.bench_function(BenchmarkId::from_parameter("wasm_reused_instance"), |b| {
        b.iter(|| policy.evaluate(std::hint::black_box(&event)).unwrap())
    });
    group.bench_function(BenchmarkId::from_parameter("wasm_fresh_instance"), |b| {
        b.iter(|| policy.evaluate_on_fresh_instance(std::hint::black_box(&event)).unwrap())
    });
    group.finish();

    // The same event through the minimal policy: what the component boundary itself costs
    // (lowering the event, the call, lifting the decision, checking the payload).
    let pass = PolicyVersion::load_file(
        &engine,
        "bench",
        &plugin("pass_through"),
        "{}".into(),
        PolicyLimits::default(),
        RouteSet::Any,
    )
    .unwrap();
    let mut group = c.benchmark_group(format!("pass_through/{size}B_on_tool_end"));
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter("native"), |b| {
        b.iter(|| event_view!(std::hint::black_box(&event)).envelope_unchanged())
    });
    group.bench_function(BenchmarkId::from_parameter("wasm_reused_instance"), |b| {
        b.iter(|| pass.evaluate(std::hint::black_box(&event)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_redaction);
criterion_main!(benches);
