//! `hostd tenant|route|token|secret ...`: the management API from the command line.
//! Human tables by default, `--json` for the API's answers as they are; a refusal exits
//! non-zero with the API's message (which names the field or resource).

use super::cli::{call, request, send, urlencode, Endpoint};
use anyhow::{anyhow, Context};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Upload a policy and create a tenant with it (no routes, no tokens yet).
    Create {
        id: String,
        /// The policy component (.wasm).
        #[arg(long)]
        policy: PathBuf,
        /// The policy's config, a JSON object.
        #[arg(long)]
        policy_config: Option<String>,
        /// Sandbox limits, a JSON object like {"deadline": "5ms"}.
        #[arg(long)]
        limits: Option<String>,
        /// `dead-letter` (default) or `drop`.
        #[arg(long)]
        on_policy_error: Option<String>,
        /// Do not store original events (no replay through the policy).
        #[arg(long)]
        no_keep_original: bool,
    },
    /// Every tenant: id, source, revision, routes, policy version.
    List,
    Show {
        id: String,
    },
    /// Change an API tenant: a new policy, config or limits (checked before it is swapped in).
    Update {
        id: String,
        #[arg(long)]
        policy: Option<PathBuf>,
        #[arg(long)]
        policy_config: Option<String>,
        #[arg(long)]
        limits: Option<String>,
        #[arg(long)]
        on_policy_error: Option<String>,
    },
    /// Delete an API tenant; `--force` dead-letters what is still pending.
    Delete {
        id: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum RouteCommand {
    /// Add a route: `--spec` holds the keys of a [tenants.routes.NAME] table as JSON.
    Add {
        tenant: String,
        name: String,
        #[arg(long)]
        spec: String,
    },
    List {
        tenant: String,
    },
    Show {
        tenant: String,
        name: String,
    },
    /// Replace a route's settings; later attempts, retries included, use them.
    Update {
        tenant: String,
        name: String,
        #[arg(long)]
        spec: String,
    },
    /// Remove a route; `--force` dead-letters what is still pending on it.
    Remove {
        tenant: String,
        name: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        tenant: String,
        /// `ingest`, `manage`, `read-only`; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long)]
        label: Option<String>,
        /// Like `90d`.
        #[arg(long)]
        expires_in: Option<String>,
    },
    List {
        tenant: String,
    },
    Revoke {
        tenant: String,
        id: String,
    },
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// A new signing secret for a webhook route; the old one signs too for `--overlap`.
    Rotate {
        tenant: String,
        route: String,
        #[arg(long)]
        overlap: Option<String>,
        /// The new secret (`whsec_…`); omitted: generated.
        #[arg(long)]
        secret: Option<String>,
    },
    List {
        tenant: String,
        route: String,
    },
}

fn json_arg(flag: &str, text: &str) -> crate::Result<Value> {
    let v: Value = serde_json::from_str(text).map_err(|e| anyhow!("{flag} is not JSON: {e}"))?;
    if !v.is_object() {
        anyhow::bail!("{flag} must be a JSON object");
    }
    Ok(v)
}

async fn upload(ep: &Endpoint, file: &std::path::Path) -> crate::Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let req = request(ep, Method::POST, "/admin/v1/policies").header("content-type", "application/wasm").body(bytes);
    let v = send(ep, req).await.map_err(|e| anyhow!("uploading {}: {e:#}", file.display()))?;
    v["sha256"].as_str().map(str::to_string).ok_or_else(|| anyhow!("the upload answer has no sha256: {v}"))
}

/// Writes `v` as JSON, or as `columns` of a table (`rows` the list inside `v`).
fn print(out: &mut dyn Write, as_json: bool, v: &Value, rows: Option<&str>, columns: &[&str]) -> crate::Result<()> {
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
        return Ok(());
    }
    let items: Vec<&Value> = match rows {
        Some(key) => v[key].as_array().map(|a| a.iter().collect()).unwrap_or_default(),
        None => vec![v],
    };
    let cell = |item: &Value, c: &str| match &item[c] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let widths: Vec<usize> =
        columns.iter().map(|c| items.iter().map(|i| cell(i, c).len()).max().unwrap_or(0).max(c.len())).collect();
    let line =
        |cells: Vec<String>| cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ");
    writeln!(out, "{}", line(columns.iter().map(|c| c.to_uppercase()).collect()).trim_end())?;
    for item in items {
        writeln!(out, "{}", line(columns.iter().map(|c| cell(item, c)).collect()).trim_end())?;
    }
    Ok(())
}

const TENANT_COLUMNS: &[&str] = &["id", "source", "revision", "routes"];

pub async fn tenant(ep: &Endpoint, as_json: bool, command: TenantCommand, out: &mut dyn Write) -> crate::Result<()> {
    match command {
        TenantCommand::Create { id, policy, policy_config, limits, on_policy_error, no_keep_original } => {
            let sha256 = upload(ep, &policy).await?;
            let mut body = json!({"id": id, "policy": sha256, "keep_original": !no_keep_original});
            if let Some(c) = policy_config {
                body["policy_config"] = json_arg("--policy-config", &c)?;
            }
            if let Some(l) = limits {
                body["limits"] = json_arg("--limits", &l)?;
            }
            if let Some(o) = on_policy_error {
                body["on_policy_error"] = json!(o);
            }
            let v = call(ep, Method::POST, "/admin/v1/tenants", Some(body)).await?;
            print(out, as_json, &v, None, TENANT_COLUMNS)
        }
        TenantCommand::List => {
            let mut views = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let query = after.as_deref().map(|a| format!("?after={}", urlencode(a))).unwrap_or_default();
                let page = call(ep, Method::GET, &format!("/admin/v1/tenants{query}"), None).await?;
                for t in page["tenants"].as_array().into_iter().flatten() {
                    let id = t["tenant"].as_str().unwrap_or_default();
                    views.push(call(ep, Method::GET, &format!("/admin/v1/tenants/{}", urlencode(id)), None).await?);
                }
                match page["next"].as_str() {
                    Some(next) => after = Some(next.to_string()),
                    None => break,
                }
            }
            print(out, as_json, &json!({"tenants": views}), Some("tenants"), TENANT_COLUMNS)
        }
        TenantCommand::Show { id } => {
            let v = call(ep, Method::GET, &format!("/admin/v1/tenants/{}", urlencode(&id)), None).await?;
            print(out, as_json, &v, None, TENANT_COLUMNS)
        }
        TenantCommand::Update { id, policy, policy_config, limits, on_policy_error } => {
            let path = format!("/admin/v1/tenants/{}", urlencode(&id));
            let current = call(ep, Method::GET, &path, None).await?;
            let mut spec = current["spec"].clone();
            if !spec.is_object() {
                anyhow::bail!("tenant `{id}` is declared in the config file; change it there");
            }
            if let Some(p) = policy {
                spec["policy"] = json!(upload(ep, &p).await?);
            }
            if let Some(c) = policy_config {
                spec["policy_config"] = json_arg("--policy-config", &c)?;
            }
            if let Some(l) = limits {
                spec["limits"] = json_arg("--limits", &l)?;
            }
            if let Some(o) = on_policy_error {
                spec["on_policy_error"] = json!(o);
            }
            let revision = current["revision"].as_u64().unwrap_or(0);
            let req = request(ep, Method::PUT, &path).header("if-match", format!("\"{revision}\"")).json(&spec);
            let v = send(ep, req).await?;
            print(out, as_json, &v, None, TENANT_COLUMNS)
        }
        TenantCommand::Delete { id, force } => {
            let path = format!("/admin/v1/tenants/{}{}", urlencode(&id), if force { "?force=true" } else { "" });
            let v = call(ep, Method::DELETE, &path, None).await?;
            print(out, as_json, &v, None, &["deleted", "dead_lettered"])
        }
    }
}

const ROUTE_COLUMNS: &[&str] = &["tenant", "name", "revision"];

pub async fn route(ep: &Endpoint, as_json: bool, command: RouteCommand, out: &mut dyn Write) -> crate::Result<()> {
    let base = |t: &str| format!("/admin/v1/tenants/{}/routes", urlencode(t));
    match command {
        RouteCommand::Add { tenant, name, spec } => {
            let mut body = json_arg("--spec", &spec)?;
            body["name"] = json!(name);
            let v = call(ep, Method::POST, &base(&tenant), Some(body)).await?;
            print(out, as_json, &v, None, ROUTE_COLUMNS)
        }
        RouteCommand::List { tenant } => {
            let v = call(ep, Method::GET, &base(&tenant), None).await?;
            print(out, as_json, &v, Some("routes"), ROUTE_COLUMNS)
        }
        RouteCommand::Show { tenant, name } => {
            let v = call(ep, Method::GET, &format!("{}/{}", base(&tenant), urlencode(&name)), None).await?;
            print(out, true, &v, None, ROUTE_COLUMNS)
        }
        RouteCommand::Update { tenant, name, spec } => {
            let path = format!("{}/{}", base(&tenant), urlencode(&name));
            let current = call(ep, Method::GET, &path, None).await?;
            let revision = current["revision"].as_u64().unwrap_or(0);
            let req = request(ep, Method::PUT, &path)
                .header("if-match", format!("\"{revision}\""))
                .json(&json_arg("--spec", &spec)?);
            let v = send(ep, req).await?;
            print(out, as_json, &v, None, ROUTE_COLUMNS)
        }
        RouteCommand::Remove { tenant, name, force } => {
            let path = format!("{}/{}{}", base(&tenant), urlencode(&name), if force { "?force=true" } else { "" });
            let v = call(ep, Method::DELETE, &path, None).await?;
            print(out, as_json, &v, None, &["deleted", "dead_lettered"])
        }
    }
}

const TOKEN_COLUMNS: &[&str] = &["id", "scopes", "label", "expires_ms", "revoked_ms"];

pub async fn token(ep: &Endpoint, as_json: bool, command: TokenCommand, out: &mut dyn Write) -> crate::Result<()> {
    let base = |t: &str| format!("/admin/v1/tenants/{}/tokens", urlencode(t));
    match command {
        TokenCommand::Create { tenant, scopes, label, expires_in } => {
            let body = json!({"scopes": scopes, "label": label, "expires_in": expires_in});
            let v = call(ep, Method::POST, &base(&tenant), Some(body)).await?;
            if as_json {
                return print(out, true, &v, None, &[]);
            }
            print(out, false, &v, None, TOKEN_COLUMNS)?;
            writeln!(out, "token (shown once): {}", v["secret"].as_str().unwrap_or_default())?;
            Ok(())
        }
        TokenCommand::List { tenant } => {
            let v = call(ep, Method::GET, &base(&tenant), None).await?;
            print(out, as_json, &v, Some("tokens"), TOKEN_COLUMNS)
        }
        TokenCommand::Revoke { tenant, id } => {
            let v = call(ep, Method::DELETE, &format!("{}/{}", base(&tenant), urlencode(&id)), None).await?;
            print(out, as_json, &v, None, TOKEN_COLUMNS)
        }
    }
}

pub async fn secret(ep: &Endpoint, as_json: bool, command: SecretCommand, out: &mut dyn Write) -> crate::Result<()> {
    let base = |t: &str, r: &str| format!("/admin/v1/tenants/{}/routes/{}/secrets", urlencode(t), urlencode(r));
    match command {
        SecretCommand::Rotate { tenant, route, overlap, secret } => {
            let body = json!({"overlap": overlap, "secret": secret});
            let v = call(ep, Method::POST, &format!("{}/rotate", base(&tenant, &route)), Some(body)).await?;
            print(out, as_json, &v, None, &["id", "secret", "created_ms"])
        }
        SecretCommand::List { tenant, route } => {
            let v = call(ep, Method::GET, &base(&tenant, &route), None).await?;
            print(out, as_json, &v, Some("secrets"), &["id", "secret", "created_ms", "expires_ms"])
        }
    }
}
