//! Tenants and routes as the admin API takes them: JSON bodies, checked field by field
//! (every error names the field), and turned into the same `TenantConfig` /
//! `RouteConfig` a config file gives, so both kinds of tenant are built one way.

use crate::config::{OnPolicyError, PolicyLimits, RouteConfig, TenantConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Longest tenant id or route name. Ids and names end up in URLs, headers, log lines,
/// metrics labels and topic names, so they are kept to a safe alphabet.
pub const MAX_NAME: usize = 64;
/// Largest `metadata` object, as JSON.
pub const MAX_METADATA: usize = 16 << 10;
/// Largest `policy_tests` text.
pub const MAX_POLICY_TESTS: usize = 1 << 20;

/// A tenant created or replaced through the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// `[a-z0-9][a-z0-9_-]*`, at most 64 bytes.
    pub id: String,
    /// The sha256 (hex) of a policy component uploaded with `POST /admin/v1/policies`.
    pub policy: String,
    /// Handed to the policy's `configure` as JSON.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub policy_config: Map<String, Value>,
    #[serde(default)]
    pub on_policy_error: OnPolicyError,
    /// Store the original event beside its deliveries, for replay through the policy.
    #[serde(default = "yes")]
    pub keep_original: bool,
    /// Sandbox limits, as in the config file's `[tenants.limits]` (`deadline = "5ms"`, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub limits: Map<String, Value>,
    /// `policy_tests` fixtures, as the JSONL text a config file's `policy_tests` file
    /// holds (`{"event": {...}, "expect": {...}}` per line): every new version of the
    /// policy must pass them before it is swapped in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_tests: Option<String>,
    /// Free-form labels for the operator; hostd does not read them.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

fn yes() -> bool {
    true
}

/// A field of a body that cannot be taken, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {problem}")]
pub struct SpecError {
    pub field: String,
    pub problem: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        SpecError { field: field.into(), problem: problem.into() }
    }
}

/// Checks a tenant id or route name: `what` is the field it came from.
pub fn check_name(what: &str, name: &str) -> Result<(), SpecError> {
    let ok_first = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if name.is_empty() || name.len() > MAX_NAME || !ok_first || !ok_rest {
        let shown = crate::text::truncate(&crate::text::escape_control(name), MAX_NAME + 8).to_string();
        return Err(SpecError::new(
            what,
            format!("`{shown}` is not a valid name: 1 to {MAX_NAME} of a-z, 0-9, `-` and `_`, starting with a letter or digit"),
        ));
    }
    Ok(())
}

/// A JSON object as the TOML table the config file would hold (JSON `null` has no TOML
/// form).
pub fn toml_table(field: &str, object: &Map<String, Value>) -> Result<toml::Table, SpecError> {
    toml::Table::try_from(Value::Object(object.clone())).map_err(|e| {
        SpecError::new(
            field,
            format!("cannot be stored as configuration ({e}); JSON null has no equivalent, leave the key out"),
        )
    })
}

impl TenantSpec {
    /// Checks every field.
    pub fn check(&self) -> Result<(), SpecError> {
        check_name("id", &self.id)?;
        if self.policy.len() != 64 || !self.policy.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(SpecError::new(
                "policy",
                "must be the sha256 (64 lowercase hex digits) of an uploaded component",
            ));
        }
        toml_table("policy_config", &self.policy_config)?;
        self.policy_limits()?;
        if let Some(tests) = &self.policy_tests {
            if tests.len() > MAX_POLICY_TESTS {
                return Err(SpecError::new(
                    "policy_tests",
                    format!("{} bytes; at most {MAX_POLICY_TESTS}", tests.len()),
                ));
            }
        }
        let metadata = serde_json::to_string(&self.metadata).unwrap_or_default();
        if metadata.len() > MAX_METADATA {
            return Err(SpecError::new("metadata", format!("{} bytes; at most {MAX_METADATA}", metadata.len())));
        }
        Ok(())
    }

    /// `limits` with the defaults filled in.
    pub fn policy_limits(&self) -> Result<PolicyLimits, SpecError> {
        let table = toml_table("limits", &self.limits)?;
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| SpecError::new("limits", e.message()))
    }

    /// The tenant as a config file would declare it, with its policy at `policy_path`,
    /// its fixtures (when it has them) at `tests_path`, and its `routes`.
    pub fn to_config(
        &self,
        policy_path: PathBuf,
        tests_path: Option<PathBuf>,
        routes: BTreeMap<String, RouteConfig>,
    ) -> Result<TenantConfig, SpecError> {
        self.check()?;
        let policy_config = toml_table("policy_config", &self.policy_config)?;
        Ok(TenantConfig {
            id: self.id.clone(),
            token_env: None,
            token_file: None,
            policy: policy_path,
            policy_config: Some(policy_config),
            policy_tests: tests_path,
            on_policy_error: self.on_policy_error,
            keep_original: self.keep_original,
            limits: self.policy_limits()?,
            routes,
            token: None,
        })
    }
}

/// A route as the admin API takes it: the same keys as a `[tenants.routes.NAME]` table
/// (`type`, the transport's own keys, `retry`, `concurrency`, `ordering`), as JSON.
pub fn route_config(spec: &Map<String, Value>) -> Result<RouteConfig, SpecError> {
    let table = toml_table("route", spec)?;
    if !table.contains_key("type") {
        return Err(SpecError::new(
            "type",
            "missing: say which transport (webhook, kafka, redis-stream, sns, file, stdout)",
        ));
    }
    toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| SpecError::new("route", e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> Result<TenantSpec, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_good_spec_becomes_the_config_a_file_would_give() {
        let s = spec(json!({"id": "acme-1", "policy": SHA, "policy_config": {"patterns": {"t": "TCK-\\d+"}},
                             "limits": {"deadline": "5ms", "memory": "16MiB"}, "on_policy_error": "drop"}))
        .unwrap();
        let tc = s.to_config("p.wasm".into(), None, BTreeMap::new()).unwrap();
        assert_eq!(tc.id, "acme-1");
        assert_eq!(tc.limits.deadline, std::time::Duration::from_millis(5));
        assert_eq!(tc.limits.memory, 16 << 20);
        assert_eq!(tc.on_policy_error, OnPolicyError::Drop);
        assert!(tc.keep_original);
        assert_eq!(crate::config::Config::policy_config_json(&tc), r#"{"patterns":{"t":"TCK-\\d+"}}"#);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({"id": "Acme", "policy": SHA}), "`id`: `Acme` is not a valid name"),
            (json!({"id": "a/../b", "policy": SHA}), "`id`"),
            (json!({"id": "", "policy": SHA}), "`id`"),
            (json!({"id": "a", "policy": "nope"}), "`policy`: must be the sha256"),
            (json!({"id": "a", "policy": SHA, "limits": {"deadlin": "5ms"}}), "`limits`: unknown field `deadlin`"),
            (json!({"id": "a", "policy": SHA, "limits": {"deadline": "soon"}}), "`limits`"),
            (json!({"id": "a", "policy": SHA, "policy_config": {"k": null}}), "`policy_config`: cannot be stored"),
        ];
        for (body, want) in cases {
            let e = spec(body.clone()).unwrap().check().unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
        assert!(spec(json!({"id": "a", "policy": SHA, "polcy": 1})).unwrap_err().contains("unknown field `polcy`"));
        let big = json!({"id": "a", "policy": SHA, "metadata": {"k": "x".repeat(MAX_METADATA)}});
        assert!(spec(big).unwrap().check().unwrap_err().to_string().starts_with("`metadata`"));
    }

    #[test]
    fn routes_take_the_config_files_keys() {
        let rc = route_config(
            json!({"type": "webhook", "url": "https://x.example/h", "retry": ["1s"], "concurrency": 4})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(rc.kind(), Some("webhook"));
        assert_eq!(rc.delivery.concurrency, 4);
        let e = route_config(json!({"url": "https://x"}).as_object().unwrap()).unwrap_err().to_string();
        assert!(e.starts_with("`type`: missing"), "{e}");
        let e = route_config(json!({"type": "file", "path": "x", "concurrency": 0}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("concurrency"), "{e}");
    }
}
