//! A typed builder for hostd's config file: a test names what it configures and the
//! `toml` crate writes the text, so no test pastes TOML together by hand. `{dir}` in a
//! value stands for the test's temp dir, as in [`crate::Hostd::with_config`].
//!
//! ```ignore
//! let config = Config::new()
//!     .admin_token("ADMIN_TOKEN", "admin-token")
//!     .tenant(Tenant::new("acme", plugin("pass_through")).route("default", Route::file("{dir}/out.jsonl")));
//! let hostd = Hostd::from_config(&config);
//! ```

use serde::Serialize;
use std::path::Path;
use toml::{Table, Value};

/// A whole config file, with the environment hostd needs for it (the tokens and secrets
/// its `*_env` keys name).
#[derive(Clone, Debug)]
pub struct Config {
    server: Table,
    tenants: Vec<Tenant>,
    envs: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

impl Config {
    /// `[server]` with `data_dir = "{dir}/data"`, no tenants yet.
    pub fn new() -> Config {
        Config { server: Table::new(), tenants: Vec::new(), envs: Vec::new() }.server("data_dir", "{dir}/data")
    }

    /// `data_dir`, when it is not `{dir}/data`.
    pub fn data_dir(self, path: &str) -> Config {
        self.server("data_dir", path)
    }

    /// `admin_token_env = env`, with `token` in the environment.
    pub fn admin_token(self, env: &str, token: &str) -> Config {
        self.server("admin_token_env", env).env(env, token)
    }

    /// `metrics_token_env = env`, with `token` in the environment.
    pub fn metrics_token(self, env: &str, token: &str) -> Config {
        self.server("metrics_token_env", env).env(env, token)
    }

    /// `metrics_listen`: `/metrics` and `/readyz` on their own listener.
    pub fn metrics_listen(self, addr: &str) -> Config {
        self.server("metrics_listen", addr)
    }

    /// `secret_key_env = env`, with `key` (64 hex digits) in the environment: what
    /// hostd encrypts the signing secrets it keeps with.
    pub fn secret_key(self, env: &str, key: &str) -> Config {
        self.server("secret_key_env", env).env(env, key)
    }

    /// `allow_private_targets = true`: the tests' receivers listen on loopback.
    pub fn allow_private_targets(self) -> Config {
        self.server("allow_private_targets", true)
    }

    /// `allowed_private_targets`: the private address ranges webhooks may reach.
    pub fn allowed_private_targets(self, ranges: &[&str]) -> Config {
        self.server("allowed_private_targets", strings(ranges))
    }

    /// `http_proxy`: the forward proxy for webhooks.
    pub fn http_proxy(self, url: &str) -> Config {
        self.server("http_proxy", url)
    }

    /// `body_limit` (`"64KiB"`).
    pub fn body_limit(self, size: &str) -> Config {
        self.server("body_limit", size)
    }

    /// `drain_timeout` (`"2s"`).
    pub fn drain_timeout(self, duration: &str) -> Config {
        self.server("drain_timeout", duration)
    }

    /// `policy_idle_ttl` (`"1s"`).
    pub fn policy_idle_ttl(self, duration: &str) -> Config {
        self.server("policy_idle_ttl", duration)
    }

    /// `policy_memory_budget` (`"64KiB"`).
    pub fn policy_memory_budget(self, size: &str) -> Config {
        self.server("policy_memory_budget", size)
    }

    /// `max_events_per_request`.
    pub fn max_events_per_request(self, n: i64) -> Config {
        self.server("max_events_per_request", n)
    }

    /// Puts `key=value` in the environment hostd starts with.
    pub fn env(mut self, key: &str, value: &str) -> Config {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Adds a `[[tenants]]` entry, and its token to the environment.
    pub fn tenant(mut self, tenant: Tenant) -> Config {
        if let Some((env, token)) = &tenant.token {
            self = self.env(env, token);
        }
        self.tenants.push(tenant);
        self
    }

    /// The tenants' ids, in the order they were added.
    pub fn tenant_ids(&self) -> Vec<&str> {
        self.tenants.iter().map(|t| t.id.as_str()).collect()
    }

    /// The environment: the tokens and secrets, as [`crate::Hostd::with_config`] takes them.
    pub fn envs(&self) -> Vec<(&str, &str)> {
        self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// The config file's text.
    pub fn to_toml(&self) -> String {
        let mut root = Table::new();
        root.insert("server".into(), Value::Table(self.server.clone()));
        if !self.tenants.is_empty() {
            let tenants = self.tenants.iter().map(|t| Value::Table(t.to_table())).collect();
            root.insert("tenants".into(), Value::Array(tenants));
        }
        toml::to_string(&root).expect("a table of TOML values serializes")
    }

    fn server(mut self, key: &str, value: impl Into<Value>) -> Config {
        self.server.insert(key.into(), value.into());
        self
    }
}

/// One `[[tenants]]` entry.
#[derive(Clone, Debug)]
pub struct Tenant {
    id: String,
    table: Table,
    limits: Table,
    routes: Table,
    /// `(env, token)` to put in the environment.
    token: Option<(String, String)>,
}

impl Tenant {
    /// Tenant `id` running `policy` (a path; `{dir}` allowed), its token `{id}-token` in
    /// `TOKEN_{ID}` (see [`tenant_token`]).
    pub fn new(id: &str, policy: impl AsRef<Path>) -> Tenant {
        let policy = policy.as_ref().to_str().expect("a UTF-8 policy path").to_string();
        let mut table = Table::new();
        table.insert("id".into(), id.into());
        table.insert("policy".into(), policy.into());
        let tenant = Tenant { id: id.into(), table, limits: Table::new(), routes: Table::new(), token: None };
        tenant.token(&format!("TOKEN_{}", id.to_uppercase()), &tenant_token(id))
    }

    /// The token: `token_env = env`, with `token` in the environment.
    pub fn token(self, env: &str, token: &str) -> Tenant {
        let mut t = self.token_env(env);
        t.token = Some((env.into(), token.into()));
        t
    }

    /// `token_env = env` with nothing put in the environment: the test sets it, or
    /// leaves it unset on purpose.
    pub fn token_env(mut self, env: &str) -> Tenant {
        self.token = None;
        self.set("token_env", env)
    }

    /// `policy_config`, from anything that serializes to a table (`json!({...})`).
    pub fn policy_config(self, config: impl Serialize) -> Tenant {
        let config = Table::try_from(config).expect("policy_config serializes to a TOML table");
        self.set("policy_config", config)
    }

    /// `policy_tests`: the fixtures a new version must pass.
    pub fn policy_tests(self, path: &str) -> Tenant {
        self.set("policy_tests", path)
    }

    /// `on_policy_error` (`"drop"`).
    pub fn on_policy_error(self, what: &str) -> Tenant {
        self.set("on_policy_error", what)
    }

    /// `keep_original`.
    pub fn keep_original(self, keep: bool) -> Tenant {
        self.set("keep_original", keep)
    }

    /// `[tenants.limits]` `deadline`: the policy's CPU time per call.
    pub fn deadline(self, duration: &str) -> Tenant {
        self.limit("deadline", duration)
    }

    /// `[tenants.limits]` `wall_deadline`.
    pub fn wall_deadline(self, duration: &str) -> Tenant {
        self.limit("wall_deadline", duration)
    }

    /// `[tenants.limits]` `memory`.
    pub fn memory(self, size: &str) -> Tenant {
        self.limit("memory", size)
    }

    /// `[tenants.routes.<name>]`.
    pub fn route(mut self, name: &str, route: Route) -> Tenant {
        self.routes.insert(name.into(), Value::Table(route.0));
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn set(mut self, key: &str, value: impl Into<Value>) -> Tenant {
        self.table.insert(key.into(), value.into());
        self
    }

    fn limit(mut self, key: &str, value: &str) -> Tenant {
        self.limits.insert(key.into(), value.into());
        self
    }

    fn to_table(&self) -> Table {
        let mut table = self.table.clone();
        if !self.limits.is_empty() {
            table.insert("limits".into(), Value::Table(self.limits.clone()));
        }
        if !self.routes.is_empty() {
            table.insert("routes".into(), Value::Table(self.routes.clone()));
        }
        table
    }
}

/// The token [`Tenant::new`] gives tenant `id`: `{id}-token`.
pub fn tenant_token(id: &str) -> String {
    format!("{id}-token")
}

/// One route: its `type` and options.
#[derive(Clone, Debug)]
pub struct Route(Table);

impl Route {
    /// A JSON-lines file at `path` (`{dir}` allowed).
    pub fn file(path: &str) -> Route {
        Route::of("file").set("path", path)
    }

    pub fn stdout() -> Route {
        Route::of("stdout")
    }

    /// A webhook to `url`, signed with the secret in the environment variable `secret_env`.
    pub fn webhook(url: &str, secret_env: &str) -> Route {
        Route::of("webhook").set("url", url).set("secret_env", secret_env)
    }

    /// A Kafka topic.
    pub fn kafka(brokers: &str, topic: &str) -> Route {
        Route::of("kafka").set("brokers", brokers).set("topic", topic)
    }

    /// A Redis stream.
    pub fn redis_stream(url: &str, stream: &str) -> Route {
        Route::of("redis-stream").set("url", url).set("stream", stream)
    }

    /// `secret_env` as a list: during a rotation every secret signs.
    pub fn secret_envs(self, envs: &[&str]) -> Route {
        self.set("secret_env", strings(envs))
    }

    /// `retry`: the waits between attempts (`["200ms", "400ms"]`).
    pub fn retry(self, schedule: &[&str]) -> Route {
        self.set("retry", strings(schedule))
    }

    /// `timeout` of one attempt.
    pub fn timeout(self, duration: &str) -> Route {
        self.set("timeout", duration)
    }

    /// `concurrency`: deliveries in flight at once.
    pub fn concurrency(self, n: i64) -> Route {
        self.set("concurrency", n)
    }

    /// `ordering = "per-key"`.
    pub fn per_key_ordering(self) -> Route {
        self.set("ordering", "per-key")
    }

    /// A webhook's extra `headers`.
    pub fn headers(self, headers: &[(&str, &str)]) -> Route {
        self.set("headers", pairs(headers))
    }

    /// Kafka's `message_timeout`.
    pub fn message_timeout(self, duration: &str) -> Route {
        self.set("message_timeout", duration)
    }

    /// Kafka's `librdkafka` options.
    pub fn librdkafka(self, options: &[(&str, &str)]) -> Route {
        self.set("librdkafka", pairs(options))
    }

    /// Redis' `dedupe = true`.
    pub fn dedupe(self) -> Route {
        self.set("dedupe", true)
    }

    fn of(kind: &str) -> Route {
        Route(Table::new()).set("type", kind)
    }

    fn set(mut self, key: &str, value: impl Into<Value>) -> Route {
        self.0.insert(key.into(), value.into());
        self
    }
}

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}

fn pairs(items: &[(&str, &str)]) -> Value {
    Value::Table(items.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_the_tables_hostd_reads() {
        let config = Config::new()
            .admin_token("ADMIN_TOKEN", "admin")
            .allow_private_targets()
            .tenant(
                Tenant::new("acme", "/p/a.wasm")
                    .policy_config(serde_json::json!({"routes": ["hook"], "patterns": {"bad": "("}}))
                    .deadline("50ms")
                    .route("hook", Route::webhook("http://x/hook", "WH").retry(&["1s", "2s"]).headers(&[("X-A", "b")])),
            )
            .tenant(Tenant::new("globex", "/p/b.wasm").token("G", "g").route("default", Route::file("{dir}/g.jsonl")));
        let text = config.to_toml();
        let back: Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back["server"]["data_dir"].as_str(), Some("{dir}/data"));
        assert_eq!(back["server"]["allow_private_targets"].as_bool(), Some(true));
        let tenants = back["tenants"].as_array().unwrap();
        let acme = &tenants[0];
        assert_eq!(acme["token_env"].as_str(), Some("TOKEN_ACME"));
        assert_eq!(acme["policy_config"]["patterns"]["bad"].as_str(), Some("("));
        assert_eq!(acme["limits"]["deadline"].as_str(), Some("50ms"));
        let hook = &acme["routes"]["hook"];
        assert_eq!(hook["type"].as_str(), Some("webhook"));
        assert_eq!(hook["retry"].as_array().map(Vec::len), Some(2));
        assert_eq!(hook["headers"]["X-A"].as_str(), Some("b"));
        assert_eq!(tenants[1]["routes"]["default"]["path"].as_str(), Some("{dir}/g.jsonl"));
        assert_eq!(config.tenant_ids(), ["acme", "globex"]);
        assert_eq!(config.envs(), [("ADMIN_TOKEN", "admin"), ("TOKEN_ACME", "acme-token"), ("G", "g")]);
    }
}
