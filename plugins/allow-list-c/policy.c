// hostd policy in C (wit-bindgen's C generator + clang/wasi-libc; see README.md here).
//
// An allow-list filter: an event whose kind is in the list is delivered unchanged, as the
// standard envelope the Rust policies deliver, to the route; any other event is dropped.
//
// policy_config: {"allow": ["on_tool_end", ...], "route": "default"}; both optional
// (`allow` defaults to DEFAULT_ALLOW, `route` to "default").
//
// The module uses only wasi-libc's malloc and string functions, so it imports nothing
// from WASI: the component's only import is hostd:policy/log.

#include "event_policy.h"

#include <stdlib.h>
#include <string.h>

static const char *const DEFAULT_ALLOW[] = {
    "on_tool_end", "on_tool_error", "on_chain_end", "on_chain_error",
    "on_llm_end",  "on_llm_error",  "on_custom_event", "run_end",
};

// ---- a growable byte buffer ------------------------------------------------------------

typedef struct {
  char *ptr;
  size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra) cap *= 2;
  char *p = realloc(b->ptr, cap);
  if (!p) abort();
  b->ptr = p;
  b->cap = cap;
}

static void buf_put(buf_t *b, const void *s, size_t n) {
  buf_reserve(b, n);
  memcpy(b->ptr + b->len, s, n);
  b->len += n;
}

static void buf_puts(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_putc(buf_t *b, char c) { buf_put(b, &c, 1); }

static void buf_put_u64(buf_t *b, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  buf_reserve(b, n);
  while (n) b->ptr[b->len++] = tmp[--n];
}

// A JSON string literal, escaped like the Rust SDK's `push_json_str`.
static void buf_put_json_str(buf_t *b, const uint8_t *s, size_t n) {
  static const char HEX[] = "0123456789abcdef";
  buf_reserve(b, n + 2);
  buf_putc(b, '"');
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = s[i];
    const char *esc = NULL;
    switch (c) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      default:
        if (c >= 0x20) continue;
    }
    buf_put(b, s + start, i - start);
    if (esc) {
      buf_puts(b, esc);
    } else {
      char u[6] = {'\\', 'u', '0', '0', HEX[c >> 4], HEX[c & 15]};
      buf_put(b, u, 6);
    }
    start = i + 1;
  }
  buf_put(b, s + start, n - start);
  buf_putc(b, '"');
}

static void buf_put_str(buf_t *b, const event_policy_string_t *s) { buf_put_json_str(b, s->ptr, s->len); }

// Hands the buffer over as a component string (freed by the post-return function).
static event_policy_string_t buf_take(buf_t *b) {
  event_policy_string_t s = {(uint8_t *)b->ptr, b->len};
  if (b->len == 0) {
    free(b->ptr);
    s.ptr = NULL;
  }
  b->ptr = NULL;
  b->len = b->cap = 0;
  return s;
}

// ---- just enough JSON for the config -------------------------------------------------------

typedef struct {
  const uint8_t *p, *end;
  const char *error;
} json_t;

static void skip_ws(json_t *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int fail(json_t *j, const char *error) {
  if (!j->error) j->error = error;
  return 0;
}

static int expect(json_t *j, char c) {
  skip_ws(j);
  if (j->p < j->end && *j->p == (uint8_t)c) {
    j->p++;
    return 1;
  }
  return fail(j, "policy_config is not valid JSON");
}

static int hex4(json_t *j, uint32_t *out) {
  if (j->end - j->p < 4) return fail(j, "policy_config: bad \\u escape");
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    uint8_t c = *j->p++;
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return fail(j, "policy_config: bad \\u escape");
  }
  *out = v;
  return 1;
}

static void put_utf8(buf_t *b, uint32_t cp) {
  if (cp < 0x80) {
    buf_putc(b, (char)cp);
  } else if (cp < 0x800) {
    char u[2] = {(char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F))};
    buf_put(b, u, 2);
  } else if (cp < 0x10000) {
    char u[3] = {(char)(0xE0 | (cp >> 12)), (char)(0x80 | ((cp >> 6) & 0x3F)), (char)(0x80 | (cp & 0x3F))};
    buf_put(b, u, 3);
  } else {
    char u[4] = {(char)(0xF0 | (cp >> 18)), (char)(0x80 | ((cp >> 12) & 0x3F)), (char)(0x80 | ((cp >> 6) & 0x3F)),
                 (char)(0x80 | (cp & 0x3F))};
    buf_put(b, u, 4);
  }
}

// A string literal, unescaped into `out` (NUL-terminated; `out` may be NULL to skip it).
static int parse_string(json_t *j, buf_t *out) {
  if (!expect(j, '"')) return 0;
  while (j->p < j->end) {
    uint8_t c = *j->p++;
    if (c == '"') {
      if (out) buf_putc(out, '\0');
      return 1;
    }
    if (c < 0x20) return fail(j, "policy_config: control character in a string");
    if (c != '\\') {
      if (out) buf_putc(out, (char)c);
      continue;
    }
    if (j->p >= j->end) break;
    c = *j->p++;
    uint32_t cp = 0;
    switch (c) {
      case '"': cp = '"'; break;
      case '\\': cp = '\\'; break;
      case '/': cp = '/'; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u': {
        if (!hex4(j, &cp)) return 0;
        if (cp >= 0xD800 && cp < 0xDC00) {
          uint32_t lo;
          if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') return fail(j, "policy_config: lone surrogate");
          j->p += 2;
          if (!hex4(j, &lo)) return 0;
          if (lo < 0xDC00 || lo > 0xDFFF) return fail(j, "policy_config: lone surrogate");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return fail(j, "policy_config: lone surrogate");
        }
        break;
      }
      default: return fail(j, "policy_config: bad escape in a string");
    }
    if (out) put_utf8(out, cp);
  }
  return fail(j, "policy_config: unterminated string");
}

static int skip_value(json_t *j, int depth);

static int skip_container(json_t *j, char close, int is_object, int depth) {
  j->p++;
  skip_ws(j);
  if (j->p < j->end && *j->p == (uint8_t)close) {
    j->p++;
    return 1;
  }
  for (;;) {
    if (is_object && !(parse_string(j, NULL) && expect(j, ':'))) return 0;
    if (!skip_value(j, depth + 1)) return 0;
    skip_ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    return expect(j, close);
  }
}

static int skip_literal(json_t *j) {
  const uint8_t *start = j->p;
  while (j->p < j->end && (*j->p == '-' || *j->p == '+' || *j->p == '.' || (*j->p >= '0' && *j->p <= '9') ||
                           (*j->p >= 'a' && *j->p <= 'z') || (*j->p >= 'A' && *j->p <= 'Z')))
    j->p++;
  return j->p > start ? 1 : fail(j, "policy_config is not valid JSON");
}

static int skip_value(json_t *j, int depth) {
  if (depth > 64) return fail(j, "policy_config is nested too deeply");
  skip_ws(j);
  if (j->p >= j->end) return fail(j, "policy_config is not valid JSON");
  switch (*j->p) {
    case '"': return parse_string(j, NULL);
    case '{': return skip_container(j, '}', 1, depth);
    case '[': return skip_container(j, ']', 0, depth);
    default: return skip_literal(j);
  }
}

// ---- the policy ----------------------------------------------------------------------------

static char **allow = NULL;  // NUL-terminated kinds
static size_t allow_len = 0;
static char *route = NULL;
static int configured = 0;

static void clear_settings(void) {
  for (size_t i = 0; i < allow_len; i++) free(allow[i]);
  free(allow);
  free(route);
  allow = NULL;
  allow_len = 0;
  route = NULL;
  configured = 0;
}

static char *dup_cstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (!d) abort();
  memcpy(d, s, n);
  return d;
}

static void push_allow(const char *kind) {
  char **a = realloc(allow, (allow_len + 1) * sizeof(char *));
  if (!a) abort();
  allow = a;
  allow[allow_len++] = dup_cstr(kind);
}

static int parse_allow(json_t *j) {
  skip_ws(j);
  if (j->p >= j->end || *j->p != '[') return fail(j, "policy_config.allow must be an array of event kinds");
  j->p++;
  skip_ws(j);
  if (j->p < j->end && *j->p == ']') {
    j->p++;
    return 1;
  }
  for (;;) {
    skip_ws(j);
    if (j->p >= j->end || *j->p != '"') return fail(j, "policy_config.allow must hold strings");
    buf_t kind = {0};
    int ok = parse_string(j, &kind);
    if (ok) push_allow(kind.ptr);
    free(kind.ptr);
    if (!ok) return 0;
    skip_ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    return expect(j, ']');
  }
}

static const char *parse_config(const uint8_t *text, size_t len) {
  json_t j = {text, text + len, NULL};
  int saw_allow = 0;
  skip_ws(&j);
  if (j.p == j.end) goto done;  // empty config: the defaults
  if (*j.p != '{') return "policy_config must be a JSON object";
  j.p++;
  skip_ws(&j);
  if (j.p < j.end && *j.p == '}') {
    j.p++;
  } else {
    for (;;) {
      buf_t key = {0};
      int ok = parse_string(&j, &key) && expect(&j, ':');
      if (ok && strcmp(key.ptr, "allow") == 0) {
        saw_allow = 1;
        ok = parse_allow(&j);
      } else if (ok && strcmp(key.ptr, "route") == 0) {
        buf_t r = {0};
        skip_ws(&j);
        if (j.p >= j.end || *j.p != '"') {
          ok = fail(&j, "policy_config.route must be a string");
        } else if ((ok = parse_string(&j, &r))) {
          free(route);
          route = r.ptr;
        } else {
          free(r.ptr);
        }
      } else if (ok) {
        ok = skip_value(&j, 1);
      }
      free(key.ptr);
      if (!ok) return j.error;
      skip_ws(&j);
      if (j.p < j.end && *j.p == ',') {
        j.p++;
        continue;
      }
      if (!expect(&j, '}')) return j.error;
      break;
    }
  }
  skip_ws(&j);
  if (j.p != j.end) return "policy_config has trailing characters";
done:
  if (!saw_allow)
    for (size_t i = 0; i < sizeof DEFAULT_ALLOW / sizeof DEFAULT_ALLOW[0]; i++) push_allow(DEFAULT_ALLOW[i]);
  if (!route) route = dup_cstr("default");
  if (!route[0]) return "policy_config.route must not be empty";
  return NULL;
}

bool exports_event_policy_configure(event_policy_string_t *config, event_policy_string_t *err) {
  clear_settings();
  const char *error = parse_config(config->ptr, config->len);
  event_policy_string_free(config);
  if (error) {
    clear_settings();
    event_policy_string_dup(err, error);
    return false;
  }
  configured = 1;
  return true;
}

static int allowed(const event_policy_string_t *kind) {
  for (size_t i = 0; i < allow_len; i++)
    if (strlen(allow[i]) == kind->len && memcmp(allow[i], kind->ptr, kind->len) == 0) return 1;
  return 0;
}

// The standard envelope with `metadata` and `data` exactly as received.
static event_policy_string_t envelope(const event_policy_event_t *e) {
  buf_t b = {0};
  buf_reserve(&b, 192 + e->kind.len + e->name.len + e->run_id.len + e->root_run_id.len + e->metadata.len +
                      e->data.len);
  buf_puts(&b, "{\"event\":");
  buf_put_str(&b, &e->kind);
  buf_puts(&b, ",\"name\":");
  buf_put_str(&b, &e->name);
  buf_puts(&b, ",\"run_id\":");
  buf_put_str(&b, &e->run_id);
  buf_puts(&b, ",\"root_run_id\":");
  buf_put_str(&b, &e->root_run_id);
  buf_puts(&b, ",\"parent_run_id\":");
  if (e->parent_run_id.is_some) buf_put_str(&b, &e->parent_run_id.val);
  else buf_puts(&b, "null");
  buf_puts(&b, ",\"step\":");
  buf_put_u64(&b, e->step);
  buf_puts(&b, ",\"tags\":[");
  for (size_t i = 0; i < e->tags.len; i++) {
    if (i) buf_putc(&b, ',');
    buf_put_str(&b, &e->tags.ptr[i]);
  }
  buf_puts(&b, "],\"metadata\":");
  if (e->metadata.len) buf_put(&b, e->metadata.ptr, e->metadata.len);
  else buf_puts(&b, "{}");
  buf_puts(&b, ",\"data\":");
  if (e->data.len) buf_put(&b, e->data.ptr, e->data.len);
  else buf_puts(&b, "null");
  buf_puts(&b, ",\"ts\":");
  buf_put_u64(&b, e->timestamp_ms);
  buf_putc(&b, '}');
  return buf_take(&b);
}

bool exports_event_policy_evaluate(event_policy_event_t *event, event_policy_decision_t *ret,
                                   event_policy_string_t *err) {
  if (!configured) {
    event_policy_event_free(event);
    event_policy_string_dup(err, "evaluate called before configure");
    return false;
  }
  if (allowed(&event->kind)) {
    hostd_policy_types_delivery_t *d = calloc(1, sizeof *d);
    if (!d) abort();
    event_policy_string_dup(&d->route, route);
    d->payload = envelope(event);
    ret->tag = HOSTD_POLICY_TYPES_DECISION_DELIVER;
    ret->val.deliver.ptr = d;
    ret->val.deliver.len = 1;
  } else {
    buf_t reason = {0};
    buf_put(&reason, event->kind.ptr, event->kind.len);
    buf_puts(&reason, " not in allow");
    ret->tag = HOSTD_POLICY_TYPES_DECISION_DROP;
    ret->val.drop = buf_take(&reason);
  }
  event_policy_event_free(event);
  return true;
}
