#!/usr/bin/env python3
"""A bounded soak of the real hostd binary, loopback only.

For SOAK_MINUTES it runs mixed load against a release hostd:

- tenants `alpha` (pass_through -> a flaky webhook), `beta` (redact_pii -> a webhook)
  and `gamma` (fan_out -> a flaky webhook and a Redis stream with dedupe);
- tenant `hostile` (hostile/arbitrary-decision): well-behaved deliveries mixed with
  traps, runaway loops, memory bombs, giant error strings, too many deliveries,
  oversize payloads, unknown routes, bad JSON, and thousands of deliveries aliasing one
  1 MiB string;
- a flaky receiver (random 500 / 503 / slow answers / answers after hostd's timeout);
- a private redis-server (AOF, fsync always) it kills and restarts every few minutes;
- hostd itself `kill -9`'d and restarted on the same data dir every few minutes.

It keeps an exact ledger of every event acknowledged with a 202. After the load stops
it waits for the spool to drain, then checks that every acknowledged event was
delivered to each route it should reach (at least once; duplicates are counted
separately) or is in the DLQ with the expected reason (the hostile tenant's faults),
that nothing else is in the DLQ, and that hostd's RSS and open files stayed flat within
each incarnation (sampled every few seconds from /proc). It prints a summary, writes
it to summary.json in its work dir, and exits non-zero on any violation.

Every socket is on 127.0.0.1; every loop is bounded in count and time.

Environment (all optional): SOAK_MINUTES (30), SOAK_HOSTD (target/release/hostd),
SOAK_PLUGINS (plugins/target/wasm32-wasip2/release), SOAK_DIR (a new temp dir),
SOAK_RATE (events/s per well-behaved tenant, 40), SOAK_KILL_EVERY (seconds between
hostd kill -9s, 240 or a third of the run), SOAK_REDIS_EVERY (seconds between Redis
restarts, 180 or a quarter of the run), SOAK_DRAIN_SECONDS (240), SOAK_SEED,
SOAK_RSS_GROWTH_MIB (256: growth allowed within one incarnation after its warm-up),
SOAK_FD_GROWTH (64), SOAK_RSS_MAX_MIB (2048).
"""

import http.server
import json
import os
import random
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_num(name, default, kind=float):
    v = os.environ.get(name)
    return kind(v) if v not in (None, "") else default


MINUTES = env_num("SOAK_MINUTES", 30.0)
DURATION = MINUTES * 60
HOSTD = os.path.abspath(os.environ.get("SOAK_HOSTD") or os.path.join(ROOT, "target/release/hostd"))
PLUGINS = os.path.abspath(os.environ.get("SOAK_PLUGINS") or os.path.join(ROOT, "plugins/target/wasm32-wasip2/release"))
RATE = env_num("SOAK_RATE", 40.0)
KILL_EVERY = env_num("SOAK_KILL_EVERY", min(240.0, DURATION / 3))
REDIS_EVERY = env_num("SOAK_REDIS_EVERY", min(180.0, DURATION / 4))
DRAIN_SECONDS = env_num("SOAK_DRAIN_SECONDS", 240.0)
SAMPLE_EVERY = 3.0
RSS_GROWTH = env_num("SOAK_RSS_GROWTH_MIB", 256.0) * (1 << 20)
RSS_MAX = env_num("SOAK_RSS_MAX_MIB", 2048.0) * (1 << 20)
FD_GROWTH = env_num("SOAK_FD_GROWTH", 64, int)
SEED = env_num("SOAK_SEED", int(time.time()), int)
BATCH = 10
ADMIN_TOKEN = "soak-admin-token-5f1d0c"
TOKENS = {t: f"soak-{t}-token-{i}a9c3e" for i, t in enumerate(["alpha", "beta", "gamma", "hostile"])}
# The routes each tenant's events must reach: (tenant, route) -> where they land.
GOOD_ROUTES = {"alpha": ["default"], "beta": ["default"], "gamma": ["hook", "stream"]}
RETRY = '["100ms", "200ms", "500ms", "1s", "2s", "3s", "5s", "5s", "5s", "5s", "5s", "5s", "5s", "5s", "5s", "5s", "5s", "5s", "5s", "5s"]'

rng = random.Random(SEED)
stop = threading.Event()


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# The flaky receiver


class Receiver:
    """Webhook receiver on 127.0.0.1. `flaky` paths answer 500 / 503 / slowly / after
    hostd's 1 s timeout at random; every 2xx answer is recorded by soak id."""

    FLAKY = {"alpha", "gamma"}

    def __init__(self, seed):
        self.lock = threading.Lock()
        self.delivered = defaultdict(Counter)  # path -> soak id -> 2xx answers
        self.statuses = Counter()
        self.unknown = Counter()
        self.samples = {}
        self.altered = {}  # soak id -> a body that differs from what was sent
        self.rng = random.Random(seed)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.strip("/")
                status, delay = receiver.decide(path)
                if 200 <= status < 300:
                    receiver.record(path, body)
                with receiver.lock:
                    receiver.statuses[(path, status, delay > 1.0)] += 1
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # hostd gave up first (its timeout): the delivery still happened

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def decide(self, path):
        with self.lock:
            r = self.rng.random()
        if path in self.FLAKY:
            if r < 0.08:
                return 500, 0
            if r < 0.14:
                return 503, 0
            if r < 0.18:
                return 200, 0.05 + r  # slow, within the timeout
            if r < 0.20:
                return 200, 1.5  # after hostd's 1 s timeout: a duplicate follows
            return 200, 0
        if path == "beta" and r < 0.03:
            return 500, 0
        return 200, 0

    def record(self, path, body):
        try:
            payload = json.loads(body)
        except ValueError:
            with self.lock:
                self.unknown[(path, "not json")] += 1
            return
        soak_id = soak_id_of(payload)
        data = payload.get("data") if isinstance(payload, dict) else None
        altered = isinstance(data, dict) and "big" in data and (data.get("big") != 10 ** 30
                                                                 or data.get("odd") != "\ud800 lone surrogate")
        with self.lock:
            if soak_id is None:
                self.unknown[(path, "no soak id")] += 1
                self.samples.setdefault((path, "no soak id"), body[:200])
            else:
                self.delivered[path][soak_id] += 1
            if altered:
                self.altered[soak_id] = body[:300]

    def snapshot(self):
        with self.lock:
            return {p: Counter(c) for p, c in self.delivered.items()}


def soak_id_of(payload):
    if isinstance(payload, dict):
        if isinstance(payload.get("soak_id"), str):
            return payload["soak_id"]
        data = payload.get("data")
        if isinstance(data, dict) and isinstance(data.get("soak_id"), str):
            return data["soak_id"]
    return None


# ---------------------------------------------------------------------------
# Redis, restarted on its own port with its AOF kept


class PrivateRedis:
    def __init__(self, work):
        self.port = free_port()
        self.dir = os.path.join(work, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.restarts = 0
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir, "--protected-mode", "yes"],
            stdout=open(os.path.join(self.dir, "redis.log"), "a"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, down_for):
        self.kill()
        time.sleep(down_for)
        self.start()
        self.restarts += 1

    def stream_ids(self, stream):
        import redis  # the test venv's client

        conn = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        seen = Counter()
        unknown = 0
        last = "-"
        while True:
            batch = conn.xrange(stream, min=last, max="+", count=5000)
            if last != "-":
                batch = batch[1:]
            if not batch:
                break
            for entry_id, fields in batch:
                try:
                    sid = soak_id_of(json.loads(fields.get(b"payload", b"null")))
                except ValueError:
                    sid = None
                if sid is None:
                    unknown += 1
                else:
                    seen[sid] += 1
            last = batch[-1][0].decode()
        return seen, unknown


# ---------------------------------------------------------------------------
# hostd, kill -9'd and restarted on the same data dir


FUTURE_SERVER_KEYS = ["allow_private_targets = true"]


class Hostd:
    def __init__(self, work, receiver, redis_url):
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_extra = list(FUTURE_SERVER_KEYS)
        self.receiver = receiver
        self.redis_url = redis_url
        self.proc = None
        self.incarnation = 0
        self.lock = threading.Lock()
        self.write_config()

    def write_config(self):
        p = lambda name: os.path.join(PLUGINS, f"{name}.wasm")
        hook = lambda path: (f'type = "webhook"\nurl = "{self.receiver.url}/{path}"\nsecret_env = "SOAK_WH_SECRET"\n'
                             f'timeout = "1s"\nretry = {RETRY}\nconcurrency = 16\n')
        extra = "\n".join(self.server_extra)
        text = f"""
[server]
listen = "127.0.0.1:{self.port}"
data_dir = "{self.work}/data"
admin_token_env = "SOAK_ADMIN_TOKEN"
drain_timeout = "3s"
watch_policies = false
{extra}

[[tenants]]
id = "alpha"
token_env = "SOAK_TOKEN_ALPHA"
policy = "{p('pass_through')}"
[tenants.routes.default]
{hook('alpha')}

[[tenants]]
id = "beta"
token_env = "SOAK_TOKEN_BETA"
policy = "{p('redact_pii')}"
[tenants.routes.default]
{hook('beta')}

[[tenants]]
id = "gamma"
token_env = "SOAK_TOKEN_GAMMA"
policy = "{p('fan_out')}"
policy_config = {{ routes = ["hook", "stream"] }}
[tenants.routes.hook]
{hook('gamma')}
[tenants.routes.stream]
type = "redis-stream"
url = "{self.redis_url}"
stream = "soak:gamma"
dedupe = true
timeout = "500ms"
retry = {RETRY}

[[tenants]]
id = "hostile"
token_env = "SOAK_TOKEN_HOSTILE"
policy = "{p('hostile_arbitrary_decision')}"
[tenants.limits]
# Room for a memory bomb to reach the cap, or a 2 MiB payload to be built, on a busy
# machine before the deadline; `loop` still runs into it.
deadline = "200ms"
[tenants.routes.default]
{hook('hostile')}
[tenants.routes.audit]
{hook('hostile-audit')}
"""
        self.config = os.path.join(self.work, "hostd.toml")
        with open(self.config, "w") as f:
            f.write(text)

    def env(self):
        e = dict(os.environ)
        e.update({f"SOAK_TOKEN_{t.upper()}": tok for t, tok in TOKENS.items()})
        e["SOAK_ADMIN_TOKEN"] = ADMIN_TOKEN
        e["SOAK_WH_SECRET"] = "whsec_c29hay1zZWNyZXQtMDEyMzQ1Njc4OQ=="
        e["RUST_LOG"] = "warn"
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            e.pop(k, None)
        return e

    def start(self):
        while True:
            self.incarnation += 1
            errlog = os.path.join(self.work, f"hostd-{self.incarnation}.log")
            proc = subprocess.Popen([HOSTD, "--config", self.config], cwd=self.work, env=self.env(),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=open(errlog, "w"))
            deadline = time.time() + 60
            while time.time() < deadline:
                if proc.poll() is not None:
                    break
                if self.healthy():
                    with self.lock:
                        self.proc = proc
                    return
                time.sleep(0.05)
            out = open(errlog).read()
            proc.kill()
            proc.wait()
            # A key that only a newer hostd knows: drop it and try again.
            dropped = [k for k in self.server_extra if k.split(" ")[0] in out]
            if dropped:
                self.server_extra = [k for k in self.server_extra if k not in dropped]
                self.write_config()
                self.incarnation -= 1
                continue
            raise RuntimeError(f"hostd did not start:\n{out[-4000:]}")

    def healthy(self):
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def pid(self):
        with self.lock:
            return self.proc.pid if self.proc and self.proc.poll() is None else None

    def kill9(self):
        with self.lock:
            proc, self.proc = self.proc, None
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self):
        with self.lock:
            proc, self.proc = self.proc, None
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def request(self, method, path, token, body=None, content_type="application/x-ndjson", timeout=10):
        req = urllib.request.Request(f"{self.url}{path}", data=body, method=method)
        req.add_header("authorization", f"Bearer {token}")
        if body is not None:
            req.add_header("content-type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def dlq(self):
        status, body = self.request("GET", "/admin/v1/dlq?limit=1000", ADMIN_TOKEN, timeout=60)
        if status != 200:
            raise RuntimeError(f"GET /admin/v1/dlq: {status} {body[:300]!r}")
        doc = json.loads(body)
        entries = list(doc.get("entries", []))
        # Follow pagination, should the API grow it.
        cursor = doc.get("next") or doc.get("next_cursor")
        pages = 0
        while cursor and pages < 10_000:
            status, body = self.request("GET", f"/admin/v1/dlq?limit=1000&after={cursor}", ADMIN_TOKEN, timeout=60)
            doc = json.loads(body)
            entries += doc.get("entries", [])
            cursor = doc.get("next") or doc.get("next_cursor")
            pages += 1
        return entries

    def readyz(self):
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as r:
                return json.loads(r.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None


# ---------------------------------------------------------------------------
# The ledger and the load


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}  # soak id -> expectation
        self.unacked = {}  # sent, never acknowledged
        self.posts = Counter()

    def add(self, events, acked):
        with self.lock:
            for sid, expect in events:
                if acked:
                    self.acked[sid] = expect
                    self.unacked.pop(sid, None)
                elif sid not in self.acked:
                    self.unacked[sid] = expect


def good_event(tenant, client, seq):
    sid = f"{tenant}:c{client}:e{seq}"
    data = {"soak_id": sid, "output": "ok", "seq": seq}
    expect = {"deliver": [(tenant, r) for r in GOOD_ROUTES[tenant]]}
    if tenant == "beta":
        data["note"] = "reach me at soak.user@example.com or +1 415 555 0100"
    if tenant == "alpha" and seq % 97 == 13:
        # JSON that Python and JS emit but serde_json's Value refuses (issue 9 #4): it must
        # arrive as sent or be dead-lettered with a reason, never turn into `null`.
        data["odd"] = "\ud800 lone surrogate"
        data["big"] = 10 ** 30  # above u64: must not come back rounded
        expect["or_dlq"] = True
    return sid, {"event": "on_tool_end", "name": "soak", "run_id": sid, "root_run_id": f"{tenant}-c{client}-r{seq // 50}",
                 "step": seq, "idempotency_key": sid, "data": data}, expect


MIB = 1 << 20
# (weight, case): what the hostile tenant asks its guest for, and what must follow.
HOSTILE_CASES = [
    (30, "deliver"), (10, "two_routes"), (8, "drop"), (5, "trap"), (2, "loop"), (3, "grow"),
    (8, "error"), (1, "giant_error"), (8, "too_many"), (4, "oversize"), (6, "unknown_route"),
    (6, "malformed"), (1, "alias_giant"),
]
ANY_FAULT = "any policy fault"


def hostile_event(client, seq, case):
    sid = f"hostile:c{client}:e{seq}"
    payload = json.dumps({"soak_id": sid, "case": case})
    data = {"mode": "deliver", "payload": payload}
    expect = {"deliver": [("hostile", "default")]}
    if case == "two_routes":
        data.update(deliveries=2, routes=["default", "audit"])
        expect = {"deliver": [("hostile", "default"), ("hostile", "audit")]}
    elif case == "drop":
        data = {"mode": "drop", "reason": "soak drop"}
        expect = {"dropped": True}
    elif case in ("trap", "loop", "grow"):
        data = {"mode": case}
        expect = {"dlq": {"trap": ["trap"], "loop": ["deadline"], "grow": ["memory"]}[case]}
    elif case == "error":
        data = {"mode": "error", "error": "soak: the guest says no\nsecond line"}
        expect = {"dlq": ["guest_error"]}
    elif case == "giant_error":
        data = {"mode": "error", "error": {"repeat": "E", "times": 256 * 1024}}
        expect = {"dlq": ANY_FAULT}
    elif case == "too_many":
        data.update(deliveries=17)
        expect = {"dlq": ["too_many_deliveries"]}
    elif case == "oversize":
        data["payload"] = {"prefix": "\"", "repeat": "x", "times": 2 * MIB, "suffix": "\""}
        expect = {"dlq": ["oversize_output"]}
    elif case == "unknown_route":
        data.update(deliveries=2, routes=["default", "nowhere"])
        expect = {"dlq": ["unknown_route"]}
    elif case == "malformed":
        data["payload"] = "{\"soak_id\": "
        expect = {"dlq": ["malformed_payload"]}
    elif case == "alias_giant":
        data.update(deliveries=2000, alias=True,
                    payload={"prefix": "\"", "repeat": "x", "times": MIB, "suffix": "\""})
        expect = {"dlq": ANY_FAULT}
    event = {"event": "on_custom_event", "name": case, "run_id": sid, "root_run_id": f"hostile-c{client}",
             "step": seq, "idempotency_key": sid, "data": data}
    return sid, event, expect


def post_until_acked(hostd, tenant, events, ledger, give_up_after=120):
    body = "\n".join(json.dumps(e) for _, e, _ in events).encode()
    deadline = time.time() + give_up_after
    attempt = 0
    while time.time() < deadline:
        attempt += 1
        try:
            status, answer = hostd.request("POST", "/v1/events", TOKENS[tenant], body)
        except (OSError, urllib.error.URLError):
            status, answer = None, b""
        ledger.posts[(tenant, status)] += 1
        if status == 202:
            ledger.add([(sid, x) for sid, _, x in events], acked=True)
            return True
        if status not in (None, 503):
            # A rejection hostd should never give these events: report it.
            ledger.posts[(tenant, f"refused {status}: {answer[:160]!r}")] += 1
            break
        time.sleep(min(0.05 * attempt, 1.0))
    ledger.add([(sid, x) for sid, _, x in events], acked=False)
    return False


def good_client(hostd, ledger, tenant, client, rate, end):
    seq = 0
    interval = BATCH / rate
    next_at = time.time()
    while time.time() < end and not stop.is_set():
        batch = [good_event(tenant, client, seq + i) for i in range(BATCH)]
        seq += BATCH
        post_until_acked(hostd, tenant, batch, ledger)
        next_at += interval
        time.sleep(max(0.0, next_at - time.time()))


def hostile_client(hostd, ledger, client, end, seed):
    r = random.Random(seed)
    cases = [c for w, c in HOSTILE_CASES for _ in range(w)]
    seq = 0
    last_giant = 0.0
    while time.time() < end and not stop.is_set():
        batch = []
        for _ in range(5):
            case = r.choice(cases)
            if case in ("alias_giant", "giant_error", "oversize"):
                # The expensive ones at most every few seconds.
                if time.time() - last_giant < 5:
                    case = "deliver"
                else:
                    last_giant = time.time()
            batch.append(hostile_event(client, seq, case))
            seq += 1
        post_until_acked(hostd, "hostile", batch, ledger)
        time.sleep(0.25)


# ---------------------------------------------------------------------------
# Sampling hostd's RSS and open files


class Sampler:
    def __init__(self, hostd):
        self.hostd = hostd
        self.samples = defaultdict(list)  # incarnation -> [(t, rss, fds)]

    def run(self, end):
        while not stop.is_set() and time.time() < end:
            pid = self.hostd.pid()
            inc = self.hostd.incarnation
            if pid:
                try:
                    rss = 0
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                rss = int(line.split()[1]) * 1024
                    fds = len(os.listdir(f"/proc/{pid}/fd"))
                    self.samples[inc].append((time.time(), rss, fds))
                except (OSError, ValueError):
                    pass
            stop.wait(SAMPLE_EVERY)

    def report(self):
        out, violations = [], []
        for inc, s in sorted(self.samples.items()):
            if not s:
                continue
            rss = [x[1] for x in s]
            fds = [x[2] for x in s]
            # Warm-up: the first quarter (at least one sample) sets the baseline.
            warm = max(1, len(s) // 4)
            base_rss, base_fd = min(rss[warm - 1:]), min(fds[warm - 1:])
            row = {
                "incarnation": inc, "samples": len(s), "seconds": round(s[-1][0] - s[0][0], 1),
                "rss_mib": {k: round(v / MIB, 1) for k, v in
                            (("first", rss[0]), ("min", min(rss)), ("max", max(rss)), ("last", rss[-1]))},
                "fds": {"first": fds[0], "min": min(fds), "max": max(fds), "last": fds[-1]},
            }
            out.append(row)
            if max(rss) > RSS_MAX:
                violations.append(f"hostd #{inc}: RSS reached {max(rss) / MIB:.0f} MiB (limit {RSS_MAX / MIB:.0f})")
            if len(s) >= 8 and rss[-1] - base_rss > RSS_GROWTH:
                violations.append(f"hostd #{inc}: RSS grew from {base_rss / MIB:.0f} to {rss[-1] / MIB:.0f} MiB")
            if len(s) >= 8 and fds[-1] - base_fd > FD_GROWTH:
                violations.append(f"hostd #{inc}: open files grew from {base_fd} to {fds[-1]}")
        return out, violations


# ---------------------------------------------------------------------------
# Chaos: kill -9 hostd, restart Redis


def chaos(hostd, redis, end, events):
    next_kill = time.time() + KILL_EVERY
    next_redis = time.time() + REDIS_EVERY * 0.75
    while not stop.is_set() and time.time() < end:
        now = time.time()
        if now >= next_kill:
            log(f"kill -9 hostd (incarnation {hostd.incarnation})")
            hostd.kill9()
            time.sleep(rng.uniform(0.2, 1.5))
            t = time.time()
            hostd.start()
            events.append(("hostd kill -9", now, time.time() - t))
            log(f"hostd back as incarnation {hostd.incarnation} after {time.time() - t:.1f} s")
            next_kill = now + KILL_EVERY
        if now >= next_redis:
            down = rng.uniform(1.0, 4.0)
            log(f"restart redis (down {down:.1f} s)")
            redis.restart(down)
            events.append(("redis restart", now, down))
            next_redis = now + REDIS_EVERY
        stop.wait(0.5)


# ---------------------------------------------------------------------------
# The final accounting


def account(ledger, receiver, redis, dlq):
    """Returns (figures, violations, pending): pending are expectations still unmet."""
    delivered = receiver.snapshot()
    stream, stream_unknown = redis.stream_ids("soak:gamma")
    where = {("alpha", "default"): delivered.get("alpha", Counter()),
             ("beta", "default"): delivered.get("beta", Counter()),
             ("gamma", "hook"): delivered.get("gamma", Counter()),
             ("gamma", "stream"): stream,
             ("hostile", "default"): delivered.get("hostile", Counter()),
             ("hostile", "audit"): delivered.get("hostile-audit", Counter())}
    dlq_by_id = defaultdict(list)
    for e in dlq:
        dlq_by_id[e.get("idempotency_key")].append(e)
    figures = Counter()
    violations, pending = [], []
    with ledger.lock:
        acked = dict(ledger.acked)
        unacked = dict(ledger.unacked)
    for sid, expect in acked.items():
        tenant = sid.split(":")[0]
        entries = dlq_by_id.pop(sid, [])
        figures[f"acked {tenant}"] += 1
        if "deliver" in expect and expect.get("or_dlq") and entries and not any(
                where[r].get(sid) for r in expect["deliver"]):
            figures[f"dead-lettered {tenant} (JSON serde_json::Value refuses): {entries[0].get('reason')}"] += 1
        elif "deliver" in expect:
            for (t, route) in expect["deliver"]:
                n = where[(t, route)].get(sid, 0)
                if n == 0:
                    pending.append(f"{sid} never reached {t}/{route}")
                else:
                    figures[f"delivered {t}/{route}"] += 1
                    if n > 1:
                        figures[f"duplicates {t}/{route}"] += n - 1
            for e in entries:
                violations.append(f"{sid}: should be delivered, but is in the DLQ: {e.get('reason')} "
                                  f"(route {e.get('route')}): {str(e.get('last_error'))[:200]}")
        elif "dlq" in expect:
            reasons = [e.get("reason") for e in entries]
            if not entries:
                pending.append(f"{sid}: expected in the DLQ ({expect['dlq']}), not there")
            elif len(entries) > 1:
                violations.append(f"{sid}: {len(entries)} DLQ entries {reasons}")
            elif expect["dlq"] != ANY_FAULT and reasons[0] not in expect["dlq"]:
                violations.append(f"{sid}: dead-lettered as {reasons[0]!r}, expected {expect['dlq']}")
            elif entries[0].get("route") is not None:
                violations.append(f"{sid}: a policy fault dead-lettered on route {entries[0].get('route')}")
            else:
                figures[f"dead-lettered hostile/{reasons[0]}"] += 1
            for (t, route), seen in where.items():
                if seen.get(sid):
                    violations.append(f"{sid}: a policy fault, yet delivered to {t}/{route}")
        elif expect.get("dropped"):
            figures["dropped hostile"] += 1
            for (t, route), seen in where.items():
                if seen.get(sid):
                    violations.append(f"{sid}: dropped by the policy, yet delivered to {t}/{route}")
            for e in entries:
                violations.append(f"{sid}: dropped by the policy, yet in the DLQ ({e.get('reason')})")
    for sid in unacked:
        figures["sent, never acknowledged"] += 1
        if any(seen.get(sid) for seen in where.values()) or sid in dlq_by_id:
            figures["never acknowledged, stored anyway (at-least-once)"] += 1
            dlq_by_id.pop(sid, None)
    for sid, entries in dlq_by_id.items():
        for e in entries:
            violations.append(f"unaccounted DLQ entry {e.get('id')}: {sid} {e.get('tenant')}/{e.get('route')} "
                              f"{e.get('reason')}")
    figures["stream entries without a soak id"] = stream_unknown
    for (path, why), n in receiver.unknown.items():
        figures[f"receiver {path}: {why}"] = n
        violations.append(f"{n} deliveries to /{path} with {why}, e.g. {receiver.samples.get((path, why))!r}")
    for sid, body in receiver.altered.items():
        violations.append(f"{sid}: delivered, but not as sent: {body!r}")
    return figures, violations, pending


def main():
    for tool in (HOSTD, os.path.join(PLUGINS, "hostile_arbitrary_decision.wasm")):
        if not os.path.exists(tool):
            sys.exit(f"soak: {tool} is missing (make soak builds it)")
    if not shutil.which("redis-server"):
        sys.exit("soak: redis-server is not installed (make services installs it)")
    work = os.environ.get("SOAK_DIR") or tempfile.mkdtemp(prefix="hostd-soak-")
    os.makedirs(work, exist_ok=True)
    log(f"{MINUTES:g} min, seed {SEED}, work dir {work}; kill -9 every {KILL_EVERY:.0f} s, "
        f"Redis restart every {REDIS_EVERY:.0f} s, {RATE:g} events/s per good tenant")
    receiver = Receiver(SEED)
    redis = PrivateRedis(work)
    hostd = Hostd(work, receiver, redis.url())
    try:
        return run(work, receiver, redis, hostd)
    finally:
        stop.set()
        hostd.stop()
        redis.kill()
        receiver.server.shutdown()


def run(work, receiver, redis, hostd):
    hostd.start()
    ledger = Ledger()
    sampler = Sampler(hostd)
    chaos_events = []
    started = time.time()
    end = started + DURATION
    threads = [threading.Thread(target=sampler.run, args=(end + DRAIN_SECONDS + 60,), daemon=True),
               threading.Thread(target=chaos, args=(hostd, redis, end, chaos_events), daemon=True)]
    clients = []
    for tenant in GOOD_ROUTES:
        for c in range(2):
            clients.append(threading.Thread(target=good_client, args=(hostd, ledger, tenant, c, RATE / 2, end), daemon=True))
    clients.append(threading.Thread(target=hostile_client, args=(hostd, ledger, 0, end, SEED + 1), daemon=True))
    for t in threads + clients:
        t.start()
    violations = []
    last_report = time.time()
    while any(t.is_alive() for t in clients):
        time.sleep(1)
        if time.time() - last_report >= 60:
            last_report = time.time()
            log(f"{len(ledger.acked)} events acknowledged, hostd #{hostd.incarnation}, "
                f"{sum(sum(c.values()) for c in receiver.snapshot().values())} webhook deliveries")
    load_seconds = time.time() - started
    log(f"load done: {len(ledger.acked)} events acknowledged in {load_seconds:.0f} s; draining")
    # Drain: everything acknowledged must land (or be dead-lettered as expected).
    drain_start = time.time()
    last_change, last_pending = time.time(), None
    while True:
        dlq = hostd.dlq()
        figures, violations, pending = account(ledger, receiver, redis, dlq)
        ready = hostd.readyz() or {}
        idle = ready.get("spool_depth") == 0
        if len(pending) != last_pending:
            last_change, last_pending = time.time(), len(pending)
        # Done: everything landed; or the spool is empty and nothing has landed for a
        # while (what is still missing is lost); or out of time.
        if idle and (not pending or time.time() - last_change > 30):
            break
        if time.time() - drain_start > DRAIN_SECONDS:
            break
        time.sleep(2)
    drain_seconds = time.time() - drain_start
    stop.set()
    rows, rss_violations = sampler.report()
    violations += rss_violations
    violations += [f"lost: {p}" for p in pending]
    refused = {k: v for k, v in ledger.posts.items() if isinstance(k[1], str)}
    for (tenant, what), n in refused.items():
        violations.append(f"{tenant}: {n} × {what}")
    statuses = Counter()
    for (path, status, late), n in receiver.statuses.items():
        statuses[f"{path} {status}{' late' if late else ''}"] += n
    summary = {
        "minutes": MINUTES, "seed": SEED, "load_seconds": round(load_seconds), "drain_seconds": round(drain_seconds, 1),
        "acknowledged": len(ledger.acked), "figures": dict(sorted(figures.items())),
        "posts": {f"{t} {s}": n for (t, s), n in sorted(ledger.posts.items(), key=str) if not isinstance(s, str)},
        "receiver": dict(sorted(statuses.items())),
        "chaos": [{"what": w, "at_s": round(t - started), "took_s": round(d, 1)} for w, t, d in chaos_events],
        "redis_restarts": redis.restarts, "hostd_incarnations": hostd.incarnation,
        "hostd": rows, "dlq_entries": len(dlq), "violations": violations[:200],
        "violation_count": len(violations), "work_dir": work,
    }
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    log(f"{'FAIL' if violations else 'PASS'}: {len(ledger.acked)} acknowledged, {len(violations)} violations "
        f"(summary in {work}/summary.json)")
    for v in violations[:30]:
        log(f"  violation: {v}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
