# Policies in other languages than Rust, each in its own folder; all their build logic
# is here. Included by the top-level Makefile (paths are relative to the repository root);
# `make plugins` builds them through `guests`.
#
#   make guests            all three → plugins/target/guests/*.wasm
#   make route-by-tool-js  JavaScript, jco (QuickJS backend)       → route_by_tool.wasm
#   make usage-meter-py    Python, componentize-py                 → usage_meter.wasm
#   make allow-list-c      C, wit-bindgen + clang/wasi-libc + wasm-tools → allow_list.wasm
#
# Each toolchain is installed on first use and never again unless its pinned version
# changes (stamp files); a policy is rebuilt only when its sources, the WIT or its
# toolchain changed. Tool versions: plugins/route-by-tool-js/package-lock.json (jco),
# plugins/usage-meter-py/requirements.txt (componentize-py) and the two below.

GUESTS_WIT := $(wildcard wit/*.wit)
GUESTS_OUT := plugins/target/guests
GUESTS_BUILD := $(GUESTS_OUT)/build
GUESTS_VENV := $(or $(VENV),.venv)
GUESTS_TOOLS := .tools
WIT_BINDGEN_CLI_VERSION := 0.63.0
# 1.262 is the wasm-tools release whose crates (wit-component 0.262, ...) wit-bindgen 0.63 uses.
WASM_TOOLS_VERSION := 1.262.0
GUESTS_CARGO := $(or $(CARGO),cargo)

.PHONY: guests route-by-tool-js usage-meter-py allow-list-c guests-c-toolchain

guests: route-by-tool-js usage-meter-py allow-list-c

route-by-tool-js: $(GUESTS_OUT)/route_by_tool.wasm
usage-meter-py: $(GUESTS_OUT)/usage_meter.wasm
allow-list-c: $(GUESTS_OUT)/allow_list.wasm

# ---- JavaScript: jco componentize, QuickJS backend ------------------------------------
# The QuickJS backend (componentize-qjs) makes a ~1.6 MB component that imports no WASI.
# jco's default StarlingMonkey backend fails here: its WIT pre-check sees no directories
# (calling componentize-js directly with stdio/random/clocks/http/fetch-event disabled
# works, but gives 12 MB and builds much slower).
# npm ci installs exactly package-lock.json; node_modules/ is not committed.
JS_DIR := plugins/route-by-tool-js

$(JS_DIR)/node_modules/.guests-installed: $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(GUESTS_OUT)/route_by_tool.wasm: $(JS_DIR)/policy.js $(GUESTS_WIT) $(JS_DIR)/node_modules/.guests-installed
	@mkdir -p $(@D)
	cd $(JS_DIR) && ./node_modules/.bin/jco componentize policy.js --wit ../../wit --world-name event-policy \
		--backend quickjs --backend-qjs-disable-async --backend-qjs-stub-wasi -o $(CURDIR)/$@.tmp
	mv $@.tmp $@

# ---- Python: componentize-py, installed into the project venv -----------------------------
PY_DIR := plugins/usage-meter-py

$(GUESTS_VENV)/.guests-componentize-py: $(PY_DIR)/requirements.txt
	test -x $(GUESTS_VENV)/bin/python || python3 -m venv $(GUESTS_VENV)
	$(GUESTS_VENV)/bin/python -m pip install -q --disable-pip-version-check -r $(PY_DIR)/requirements.txt
	touch $@

$(GUESTS_OUT)/usage_meter.wasm: $(PY_DIR)/app.py $(GUESTS_WIT) $(GUESTS_VENV)/.guests-componentize-py
	@mkdir -p $(@D)
	cd $(PY_DIR) && $(abspath $(GUESTS_VENV))/bin/componentize-py -q -d ../../wit -w event-policy \
		componentize app -p . -o $(CURDIR)/$@.tmp
	mv $@.tmp $@

# ---- C: wit-bindgen c, clang + wasi-libc (Debian), wasm-tools component new ------------------
# The core module links only wasi-libc's malloc/string code and is a reactor
# (`_initialize`, which `component new` runs at instantiation), so it imports no WASI
# and needs no preview1 adapter.
C_DIR := plugins/allow-list-c
C_BUILD := $(GUESTS_BUILD)/allow-list-c
WIT_BINDGEN := $(GUESTS_TOOLS)/bin/wit-bindgen
WASM_TOOLS := $(GUESTS_TOOLS)/bin/wasm-tools
WIT_BINDGEN_STAMP := $(GUESTS_TOOLS)/.guests-wit-bindgen-cli-$(WIT_BINDGEN_CLI_VERSION)
WASM_TOOLS_STAMP := $(GUESTS_TOOLS)/.guests-wasm-tools-$(WASM_TOOLS_VERSION)
GUESTS_CLANG := clang --target=wasm32-wasi

# Both from source (crates.io), with only the features used: the C generator, and
# `component new` / `component wit`. The stamp names the version, so a bump reinstalls.
$(WIT_BINDGEN_STAMP):
	$(GUESTS_CARGO) install --locked --force --root $(GUESTS_TOOLS) \
		wit-bindgen-cli@$(WIT_BINDGEN_CLI_VERSION) --no-default-features --features c
	rm -f $(GUESTS_TOOLS)/.guests-wit-bindgen-cli-*
	touch $@

$(WASM_TOOLS_STAMP):
	$(GUESTS_CARGO) install --locked --force --root $(GUESTS_TOOLS) \
		wasm-tools@$(WASM_TOOLS_VERSION) --no-default-features --features component
	rm -f $(GUESTS_TOOLS)/.guests-wasm-tools-*
	touch $@

# Debian's clang 14, wasm-ld, wasi-libc and compiler-rt builtins for wasm32, when missing.
guests-c-toolchain:
	@command -v clang >/dev/null && command -v wasm-ld >/dev/null \
		&& test -f "$$($(GUESTS_CLANG) -print-libgcc-file-name 2>/dev/null)" \
		&& echo '#include <stdlib.h>' | $(GUESTS_CLANG) -fsyntax-only -x c - 2>/dev/null \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			clang lld wasi-libc libclang-rt-dev-wasm32 >/dev/null; }

$(C_BUILD)/event_policy.c: $(GUESTS_WIT) $(WIT_BINDGEN_STAMP)
	@mkdir -p $(@D)
	$(WIT_BINDGEN) c wit --world event-policy --out-dir $(@D)

$(C_BUILD)/core.wasm: $(C_DIR)/policy.c $(C_BUILD)/event_policy.c | guests-c-toolchain
	$(GUESTS_CLANG) -mexec-model=reactor -O2 -Wall -Wextra -I$(C_BUILD) -Wl,--strip-all -o $@ \
		$(C_DIR)/policy.c $(C_BUILD)/event_policy.c $(C_BUILD)/event_policy_component_type.o

$(GUESTS_OUT)/allow_list.wasm: $(C_BUILD)/core.wasm $(WASM_TOOLS_STAMP)
	$(WASM_TOOLS) component new --validate $< -o $@.tmp
	@! $(WASM_TOOLS) component wit $@.tmp | grep -q 'import wasi:' \
		|| { echo "$@ imports WASI: the core module must not need a preview1 adapter" >&2; rm -f $@.tmp; exit 1; }
	mv $@.tmp $@
