//! `hostd dlq ...` and `hostd policy status|push|rollback`: the admin API from the
//! command line. It talks to the running daemon (replay through the policy needs the
//! daemon's loaded policies), authenticating with the admin token or a tenant's token.

use anyhow::{anyhow, bail};
use serde_json::{json, Value};

/// Where the daemon is and how to authenticate.
pub struct Endpoint {
    pub url: String,
    pub token: String,
}

/// Which entries an operation applies to.
#[derive(Debug, Default)]
pub struct Selection {
    pub ids: Vec<i64>,
    pub all: bool,
    pub tenant: Option<String>,
    pub route: Option<String>,
    pub since: Option<String>,
}

impl Selection {
    fn body(&self) -> Value {
        let mut v = json!({"ids": self.ids, "all": self.all});
        for (k, val) in [("tenant", &self.tenant), ("route", &self.route), ("since", &self.since)] {
            if let Some(val) = val {
                v[k] = json!(val);
            }
        }
        v
    }
}

pub(crate) async fn call(
    ep: &Endpoint,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> crate::Result<Value> {
    let mut req = request(ep, method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    send(ep, req).await
}

pub(crate) fn request(ep: &Endpoint, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    let url = format!("{}{path}", ep.url.trim_end_matches('/'));
    reqwest::Client::new().request(method, &url).bearer_auth(&ep.token)
}

pub(crate) async fn send(ep: &Endpoint, req: reqwest::RequestBuilder) -> crate::Result<Value> {
    let resp = req.send().await.map_err(|e| anyhow!("cannot reach hostd at {}: {e}", ep.url))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let msg = value["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
        bail!("HTTP {}: {msg}", status.as_u16());
    }
    Ok(value)
}

/// One line per entry: the fields an operator scans for. Follows the listing's `next`
/// cursor page by page until `limit` entries (all, without one) were printed.
pub async fn list(
    ep: &Endpoint,
    sel: &Selection,
    limit: Option<usize>,
    out: &mut dyn std::io::Write,
) -> crate::Result<()> {
    let mut query = Vec::new();
    for (k, v) in [("tenant", &sel.tenant), ("route", &sel.route), ("since", &sel.since)] {
        if let Some(v) = v {
            query.push(format!("{k}={}", urlencode(v)));
        }
    }
    let mut remaining = limit.unwrap_or(usize::MAX);
    let mut after: Option<i64> = None;
    while remaining > 0 {
        let mut page_query = query.clone();
        page_query.push(format!("limit={}", remaining.min(crate::admin::MAX_PAGE)));
        if let Some(a) = after {
            page_query.push(format!("after={a}"));
        }
        let answer = call(ep, reqwest::Method::GET, &format!("/admin/v1/dlq?{}", page_query.join("&")), None).await?;
        for e in answer["entries"].as_array().into_iter().flatten().take(remaining) {
            let line = json!({
                "id": e["id"], "tenant": e["tenant"], "route": e["route"], "idempotency_key": e["idempotency_key"],
                "reason": e["reason"], "attempts": e["attempts"], "last_status": e["last_status"],
                "last_error": e["last_error"], "dead_ms": e["dead_ms"],
            });
            writeln!(out, "{line}")?;
            remaining -= 1;
        }
        match answer["next"].as_i64() {
            Some(next) if after.is_none_or(|a| next > a) => after = Some(next),
            _ => break,
        }
    }
    Ok(())
}

pub async fn show(ep: &Endpoint, id: i64, out: &mut dyn std::io::Write) -> crate::Result<()> {
    let answer = call(ep, reqwest::Method::GET, &format!("/admin/v1/dlq/{id}"), None).await?;
    writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
    Ok(())
}

pub async fn replay(
    ep: &Endpoint,
    sel: &Selection,
    through_policy: bool,
    out: &mut dyn std::io::Write,
) -> crate::Result<()> {
    let mut body = sel.body();
    body["mode"] = json!(if through_policy { "through-policy" } else { "as-is" });
    let answer = call(ep, reqwest::Method::POST, "/admin/v1/dlq/replay", Some(body)).await?;
    writeln!(out, "{answer}")?;
    Ok(())
}

pub async fn purge(ep: &Endpoint, sel: &Selection, out: &mut dyn std::io::Write) -> crate::Result<()> {
    let answer = call(ep, reqwest::Method::POST, "/admin/v1/dlq/purge", Some(sel.body())).await?;
    writeln!(out, "{answer}")?;
    Ok(())
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `hostd policy status [TENANT]`: one JSON line per tenant (active and previous
/// version, source, statistics).
pub async fn policy_status(ep: &Endpoint, tenant: Option<&str>, out: &mut dyn std::io::Write) -> crate::Result<()> {
    match tenant {
        Some(t) => {
            writeln!(out, "{}", call(ep, reqwest::Method::GET, &format!("/admin/v1/tenants/{t}/policy"), None).await?)?
        }
        None => {
            let all = call(ep, reqwest::Method::GET, "/admin/v1/tenants", None).await?;
            for t in all["tenants"].as_array().into_iter().flatten() {
                writeln!(out, "{t}")?;
            }
        }
    }
    Ok(())
}

/// `hostd policy push TENANT FILE [--policy-config JSON]`: compiles and checks the
/// component in the daemon and swaps it in; prints the new and previous version.
pub async fn policy_push(
    ep: &Endpoint,
    tenant: &str,
    file: &std::path::Path,
    config: Option<&str>,
    out: &mut dyn std::io::Write,
) -> crate::Result<()> {
    let bytes = std::fs::read(file).map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
    let mut req = request(ep, reqwest::Method::PUT, &format!("/admin/v1/tenants/{tenant}/policy"))
        .header("content-type", "application/wasm")
        .body(bytes);
    if let Some(c) = config {
        req = req.header(crate::admin::policy::CONFIG_HEADER, c);
    }
    let v = send(ep, req).await.map_err(|e| anyhow!("{} refused: {e:#}", file.display()))?;
    writeln!(out, "{v}")?;
    Ok(())
}

/// `hostd policy rollback TENANT`.
pub async fn policy_rollback(ep: &Endpoint, tenant: &str, out: &mut dyn std::io::Write) -> crate::Result<()> {
    let v = call(ep, reqwest::Method::POST, &format!("/admin/v1/tenants/{tenant}/policy/rollback"), None).await?;
    writeln!(out, "{v}")?;
    Ok(())
}
