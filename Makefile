# hostd — the two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
PLUGIN_OUT := plugins/target/$(WASM_TARGET)/release
HOSTD := target/debug/hostd
LISTEN ?= 127.0.0.1:8787

.PHONY: all run test bench plugins build tools lint fmt clean

all: build plugins

## Install what the build needs: the wasm32-wasip2 Rust target.
tools:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

## Build every example and test policy as a Wasm component.
plugins: tools
	cd plugins && $(CARGO) build --release --target $(WASM_TARGET)

## Build the host (dependencies are optimised even in dev builds; see Cargo.toml).
build:
	$(CARGO) build --workspace --bins --tests

## Start hostd with the PII-redaction policy on embedded defaults, no external services.
run: plugins build
	$(HOSTD) --plugin $(PLUGIN_OUT)/redact_pii.wasm --listen $(LISTEN)

## Everything: tools, plugins, host, unit and end-to-end tests.
test: plugins build
	$(CARGO) test --workspace
	cd plugins && $(CARGO) test -p hostd-policy-sdk

## Benchmarks; results go in BENCHMARKS.md.
bench: plugins
	$(CARGO) bench -p hostd --bench policy

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd plugins && $(CARGO) fmt --all -- --check && $(CARGO) clippy --target $(WASM_TARGET) -- -D warnings

fmt:
	$(CARGO) fmt --all
	cd plugins && $(CARGO) fmt --all

clean:
	$(CARGO) clean
	cd plugins && $(CARGO) clean
