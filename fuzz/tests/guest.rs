//! Fuzzes the policy boundary through a real guest: `hostile/arbitrary-decision` builds
//! its decision from the event's `data`, so each input decides what the guest returns
//! — thousands of deliveries aliasing one large string in guest memory, giant error
//! and drop strings, unknown routes, payloads that are not JSON, log spam with line
//! breaks, traps, runaway loops and memory bombs — and the host loads and evaluates it
//! in-process (`PolicyVersion::load_file` / `evaluate`, as hostd does).
//!
//! Properties: no panic; a decision within the limits comes back unchanged, anything
//! else is a fault naming the tenant and version; guest strings are capped; guest log
//! lines stay one line; and the host's resident memory stays bounded (VmHWM from
//! `/proc/self/status`): a guest cannot make the host hold more than the caps allow.

use hostd::config::PolicyLimits;
use hostd::policy::decision::RouteSet;
use hostd::policy::{Outcome, PolicyEngine, PolicyEvent, PolicyFault, PolicyVersion};
use hostd_fuzz::rss::{self, mib};
use hostd_fuzz::{cases, plugin, Target};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUTES: [&str; 2] = ["default", "audit"];
/// Deadline of one evaluate: generous, so a starved machine does not turn cheap
/// decisions into deadline faults (issue 9 #13); `loop` inputs are rare.
const DEADLINE: Duration = Duration::from_millis(250);
/// What one call may add to the host's resident memory beyond a fresh instance's
/// linear memory (the memory cap): the decision it keeps (max_output and capped
/// strings, a few times over for copies), the event, allocator slack.
const CALL_HEADROOM: u64 = 16 << 20;

/// A text the guest builds: as given, or `prefix + repeat × times + suffix`.
#[derive(Debug, Clone)]
enum Text {
    Given(String),
    Repeat { prefix: &'static str, repeat: &'static str, times: usize, suffix: &'static str },
}

impl Text {
    fn json(&self) -> Value {
        match self {
            Text::Given(s) => Value::String(s.clone()),
            Text::Repeat { prefix, repeat, times, suffix } => {
                json!({"prefix": prefix, "repeat": repeat, "times": times, "suffix": suffix})
            }
        }
    }

    fn expand(&self) -> String {
        match self {
            Text::Given(s) => s.clone(),
            Text::Repeat { prefix, repeat, times, suffix } => format!("{prefix}{}{suffix}", repeat.repeat(*times)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Text::Given(s) => s.len(),
            Text::Repeat { prefix, repeat, times, suffix } => prefix.len() + repeat.len() * times + suffix.len(),
        }
    }
}

fn sizes(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        400 => 0usize..64,
        80 => proptest::sample::select(vec![255usize, 256, 1023, 1024, 4096, 65_536]),
        1 => 0usize..=max,
        1 => Just(max),
    ]
}

/// Payloads: JSON, JSON only a raw-value parser takes, not JSON, big, deep.
fn payload() -> impl Strategy<Value = Text> {
    prop_oneof![
        6 => hostd_fuzz::json::value().prop_filter("small", |j| !matches!(j, hostd_fuzz::json::J::Deep { depth, .. } if *depth > 10_000))
            .prop_map(|j| Text::Given(j.render())),
        3 => sizes(2 << 20).prop_map(|times| Text::Repeat { prefix: "\"", repeat: "x", times, suffix: "\"" }),
        1 => sizes(1 << 20).prop_map(|times| Text::Repeat { prefix: "\"\\ud800", repeat: "é", times, suffix: "\"" }),
        1 => prop_oneof![Just(127usize), Just(129), Just(100_000)]
            .prop_map(|times| Text::Repeat { prefix: "", repeat: "[", times, suffix: "" }),
        1 => Just(Text::Given("{not json".into())),
    ]
}

/// Route names, keys, redactions, reasons and errors: short, hostile, or huge.
fn string(max: usize) -> impl Strategy<Value = Text> {
    prop_oneof![
        6 => hostd_fuzz::json::text().prop_map(Text::Given),
        1 => Just(Text::Given("line one\nFAKE level=ERROR tenant=other injected\r\n\u{1b}[2J".into())),
        2 => (sizes(max), proptest::sample::select(vec!["x", "é", "\n", "\u{0}"]))
            .prop_map(|(times, repeat)| Text::Repeat { prefix: "", repeat, times, suffix: "" }),
    ]
}

fn route() -> impl Strategy<Value = Text> {
    prop_oneof![10 => proptest::sample::select(ROUTES.to_vec()).prop_map(|r| Text::Given(r.into())), 1 => string(1 << 20)]
}

#[derive(Debug, Clone)]
struct GuestSpec {
    mode: &'static str,
    deliveries: usize,
    payload: Text,
    routes: Vec<Text>,
    key: Option<Text>,
    redactions: usize,
    redaction: Text,
    alias: bool,
    text: Text,
    logs: usize,
    log: Text,
}

fn guest_spec() -> impl Strategy<Value = GuestSpec> {
    let mode = prop_oneof![
        1600 => Just("deliver"),
        240 => Just("drop"),
        240 => Just("error"),
        24 => Just("trap"),
        1 => Just("loop"),
        16 => Just("grow"),
        16 => Just("bogus"),
    ];
    let deliveries = prop_oneof![
        320 => 0usize..4,
        80 => proptest::sample::select(vec![16usize, 17]),
        40 => 0usize..100,
        8 => proptest::sample::select(vec![1_000usize, 10_000]),
        1 => Just(100_000usize),
    ];
    (
        (mode, deliveries, payload(), proptest::collection::vec(route(), 1..3)),
        (
            proptest::option::weighted(0.3, string(1 << 20)),
            prop_oneof![6 => Just(0usize), 1 => 0usize..5, 1 => Just(10_000)],
            string(4096),
        ),
        (
            proptest::bool::weighted(0.5),
            string(20 << 20),
            prop_oneof![8 => Just(0usize), 1 => 1usize..4],
            string(1 << 20),
        ),
    )
        .prop_map(
            |((mode, deliveries, payload, routes), (key, redactions, redaction), (alias, text, logs, log))| GuestSpec {
                mode,
                deliveries,
                payload,
                routes,
                key,
                redactions,
                redaction,
                alias,
                text,
                logs,
                log,
            },
        )
}

impl GuestSpec {
    fn data(&self) -> String {
        json!({
            "mode": self.mode,
            "deliveries": self.deliveries,
            "payload": self.payload.json(),
            "routes": self.routes.iter().map(Text::json).collect::<Vec<_>>(),
            "key": self.key.as_ref().map(Text::json),
            "redactions": self.redactions,
            "redaction": self.redaction.json(),
            "alias": self.alias,
            "reason": self.text.json(),
            "error": self.text.json(),
            "logs": self.logs,
            "log": self.log.json(),
        })
        .to_string()
    }

    /// Whether the decision asked for is within the default limits (16 deliveries,
    /// 1 MiB of payload, known routes, valid JSON), by an independent reading.
    fn within_limits(&self, limits: &PolicyLimits) -> bool {
        let routes_ok = (0..self.deliveries.min(self.routes.len()))
            .all(|i| ROUTES.contains(&self.routes[i % self.routes.len()].expand().as_str()));
        self.mode == "deliver"
            && self.deliveries <= limits.max_deliveries
            && (self.payload.len() * self.deliveries) as u64 <= limits.max_output
            && routes_ok
            && (self.deliveries == 0
                || serde_json::from_str::<&serde_json::value::RawValue>(&self.payload.expand()).is_ok())
    }
}

fn event(data: String) -> PolicyEvent {
    PolicyEvent {
        tenant: "fuzz".into(),
        kind: "on_tool_end".into(),
        name: "arbitrary".into(),
        run_id: "r1".into(),
        root_run_id: "root".into(),
        parent_run_id: None,
        step: 1,
        tags: vec![],
        metadata: "{}".into(),
        data,
        timestamp_ms: 1_767_225_600_000,
    }
}

/// Guest log output as the daemon would write it, checked line by line.
static LOG_VIOLATIONS: AtomicU64 = AtomicU64::new(0);
static LOG_EXAMPLE: Mutex<Option<String>> = Mutex::new(None);

struct LineCheck(Vec<u8>);

impl Write for LineCheck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineCheck {
    /// One formatted event: it must be one line, free of control characters.
    fn drop(&mut self) {
        let body = self.0.strip_suffix(b"\n").unwrap_or(&self.0);
        if body.iter().any(|b| b.is_ascii_control() && *b != b'\t') {
            LOG_VIOLATIONS.fetch_add(1, Ordering::Relaxed);
            let mut ex = LOG_EXAMPLE.lock().unwrap_or_else(|p| p.into_inner());
            if ex.is_none() {
                *ex = Some(hostd_fuzz::clip(&String::from_utf8_lossy(body), 300).escape_debug().to_string());
            }
        }
    }
}

fn install_log_check() {
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(|| LineCheck(Vec::new()))
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

fn fault_kind(f: &PolicyFault) -> &'static str {
    f.kind()
}

#[test]
fn arbitrary_guest_decisions() {
    install_log_check();
    let target = Target::new("guest");
    let limits = PolicyLimits { deadline: DEADLINE, ..PolicyLimits::default() };
    let engine = PolicyEngine::new().expect("a Wasm engine");
    let routes = RouteSet::Only(ROUTES.iter().map(|r| r.to_string()).collect());
    let pool = PolicyVersion::load_file(
        &engine,
        "fuzz",
        &plugin("hostile_arbitrary_decision"),
        "{}".into(),
        limits.clone(),
        routes,
    )
    .unwrap_or_else(|e| panic!("cannot load the arbitrary-decision guest: {e:#}"));
    let version = pool.version().to_string();
    // Warm up (first instances, allocator arenas), then measure from here.
    for _ in 0..4 {
        let _ = pool.evaluate(&event(json!({"mode": "deliver", "payload": "{\"a\":1}"}).to_string()));
    }
    let call_bound = limits.memory + CALL_HEADROOM;
    let baseline = rss::rss();
    let max_rss = AtomicU64::new(baseline);
    let max_growth = AtomicU64::new(0);
    let log_seen = AtomicU64::new(0);
    let slowest: Mutex<Vec<(Duration, String)>> = Mutex::new(Vec::new());
    let measured = rss::reset_peak();
    eprintln!(
        "fuzz guest: baseline RSS {:.1} MiB; one call may add at most {:.0} MiB ({} MiB guest memory + {} MiB){}",
        mib(baseline),
        mib(call_bound),
        limits.memory >> 20,
        CALL_HEADROOM >> 20,
        if measured { "" } else { " (cannot reset VmHWM here: peaks not measured)" }
    );

    // One thread: each call's peak is its own.
    let target = target.with_threads(1);
    target.run(cases("guest", 0.02), guest_spec, |spec| {
        let data = spec.data();
        rss::reset_peak();
        let before = rss::rss();
        let started = std::time::Instant::now();
        let result = pool.evaluate(&event(data));
        let took = started.elapsed();
        target.count(match took.as_micros() {
            0..=99 => "time: < 0.1 ms",
            100..=999 => "time: 0.1-1 ms",
            1_000..=9_999 => "time: 1-10 ms",
            10_000..=99_999 => "time: 10-100 ms",
            _ => "time: >= 100 ms",
        });
        let (peak, now) = (rss::peak(), rss::rss());
        {
            let mut slow = slowest.lock().unwrap_or_else(|p| p.into_inner());
            if slow.len() < 5 || slow.last().is_some_and(|(t, _)| *t < took) {
                slow.push((took, describe(&spec)));
                slow.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
                slow.truncate(5);
            }
        }
        max_rss.fetch_max(now, Ordering::Relaxed);
        let growth = peak.saturating_sub(before);
        max_growth.fetch_max(growth, Ordering::Relaxed);
        target.check("guest.rss_bounded", !measured || growth <= call_bound, || {
            format!(
                "one call raised host RSS by {:.1} MiB (limit {:.0}): mode {} × {} deliveries, alias {}, payload {} B, {} redactions",
                mib(growth),
                mib(call_bound),
                spec.mode,
                spec.deliveries,
                spec.alias,
                spec.payload.len(),
                spec.redactions
            )
        })?;
        let violations = LOG_VIOLATIONS.load(Ordering::Relaxed);
        let seen = log_seen.swap(violations, Ordering::Relaxed);
        target.check("guest.log_one_line", violations == seen, || {
            LOG_EXAMPLE.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
        })?;
        let within = spec.within_limits(&limits);
        match result {
            Ok(outcome) => {
                target.accepted();
                let (count, kept) = match &outcome {
                    Outcome::Drop(r) => (0, r.len()),
                    Outcome::Deliver(d) => (
                        d.len(),
                        d.iter()
                            .map(|x| x.route.len() + x.key.as_ref().map_or(0, String::len) + x.redactions.iter().map(String::len).sum::<usize>())
                            .sum(),
                    ),
                };
                target.count(&format!("accepted: {}", spec.mode));
                target.check("guest.strings_capped", kept as u64 <= limits.max_output + 4096, || {
                    format!("accepted {kept} bytes of guest strings ({} mode, {} deliveries)", spec.mode, count)
                })?;
                if let Outcome::Deliver(d) = &outcome {
                    let payload_bytes: usize = d.iter().map(|x| x.payload.get().len()).sum();
                    let routes_ok = d.iter().all(|x| ROUTES.contains(&x.route.as_str()));
                    target.check(
                        "guest.accepts_only_within_limits",
                        d.len() <= limits.max_deliveries && payload_bytes as u64 <= limits.max_output && routes_ok && within,
                        || format!("accepted {} deliveries, {payload_bytes} payload bytes for {}", d.len(), describe(&spec)),
                    )?;
                    let want = spec.payload.expand();
                    let key = spec.key.as_ref().map(Text::expand);
                    let same = d.iter().enumerate().all(|(i, x)| {
                        x.payload.get() == want
                            && x.route == spec.routes[i % spec.routes.len()].expand()
                            && x.key == key
                            && x.redactions.len() == spec.redactions
                    });
                    target.check("guest.delivered_unchanged", same, || format!("deliveries differ from {}", describe(&spec)))?;
                }
                if let Outcome::Drop(r) = &outcome {
                    let asked = matches!(spec.mode, "drop" | "bogus");
                    target.check("guest.drop_only_when_asked", asked, || format!("dropped ({}) for {}", hostd_fuzz::clip(r, 100), describe(&spec)))?;
                }
            }
            Err(e) => {
                target.rejected();
                let kind = fault_kind(&e.fault);
                target.count(&format!("fault: {} on {}", kind, spec.mode));
                let m = e.to_string();
                target.check("guest.fault_names_tenant", m.starts_with(&format!("tenant `fuzz`, policy {version}: ")), || m.clone())?;
                target.check("guest.strings_capped", m.len() <= 8192, || {
                    format!("a {}-byte fault message: {}", m.len(), hostd_fuzz::clip(&m, 160))
                })?;
                use hostd::policy::decision::{KEY_MAX, REDACTION_MAX, ROUTE_NAME_MAX};
                let fields_ok = spec.key.as_ref().is_none_or(|k| k.expand().len() <= KEY_MAX)
                    && (spec.redactions == 0 || spec.redaction.expand().len() <= REDACTION_MAX)
                    && spec.routes.iter().all(|r| r.expand().len() <= ROUTE_NAME_MAX)
                    && !hostd::json::depth_exceeds(&spec.payload.expand(), hostd::json::MAX_DEPTH);
                if within && spec.redactions <= 16 && fields_ok {
                    // A starved machine can still stop a cheap call at the deadline (#13).
                    if kind == "deadline" {
                        target.count("deadline on a decision within the limits (host starved?)");
                    } else {
                        target.check("guest.accepts_within_limits", false, || {
                            format!("refused ({}) a decision within the limits: {}", hostd_fuzz::clip(&m, 200), describe(&spec))
                        })?;
                    }
                }
            }
        }
        Ok::<(), TestCaseError>(())
    });
    for (took, what) in slowest.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        eprintln!("  slow input: {took:?} for {what}");
    }
    eprintln!(
        "fuzz guest: RSS baseline {:.1} MiB, largest after a call {:.1} MiB, final {:.1} MiB; largest rise during one call {:.1} MiB",
        mib(baseline),
        mib(max_rss.load(Ordering::Relaxed)),
        mib(rss::rss()),
        mib(max_growth.load(Ordering::Relaxed))
    );
    println!(
        "FUZZ-RSS target=guest baseline_mib={:.1} max_after_call_mib={:.1} final_mib={:.1} max_call_rise_mib={:.1}",
        mib(baseline),
        mib(max_rss.load(Ordering::Relaxed)),
        mib(rss::rss()),
        mib(max_growth.load(Ordering::Relaxed))
    );
}

fn describe(s: &GuestSpec) -> String {
    format!(
        "mode {} × {} deliveries (alias {}), payload {} B `{}`, routes {:?}, key {:?} B, {} redactions, text {} B",
        s.mode,
        s.deliveries,
        s.alias,
        s.payload.len(),
        hostd_fuzz::clip(&s.payload.expand(), 60),
        s.routes.iter().map(|r| hostd_fuzz::clip(&r.expand(), 20)).collect::<Vec<_>>(),
        s.key.as_ref().map(Text::len),
        s.redactions,
        s.text.len()
    )
}
