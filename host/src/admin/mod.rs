//! The admin API: the DLQ (list, show, replay, purge) and, in [`policy`], tenants'
//! live policies. The admin token
//! (`[server] admin_token_env`) sees every tenant; a tenant's own token sees only its
//! own entries and gets 403 on anyone else's.
//!
//! Every handler takes [`Caller`] as its first extractor after the state: axum runs
//! extractors in order and the body one last, so a request without a valid token gets
//! its 401 before a byte of its body is read.

pub mod cli;
pub mod policy;

use crate::api_error::ApiError;
use crate::app::{evaluate_all, App};
use crate::clock::now_ms;
use crate::event::parse_event;
use crate::store::{DlqEntry, DlqFilter};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Entries one `GET /admin/v1/dlq` answers without a `limit`.
pub const DEFAULT_PAGE: usize = 100;
/// Most entries one page may hold, and most `ids` one request may name.
pub const MAX_PAGE: usize = 1000;

/// Who is calling the admin API. As an extractor it authenticates the request from its
/// headers alone (401 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Admin,
    Tenant(usize),
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        caller(app, &parts.headers)
    }
}

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/v1/dlq", get(list))
        .route("/admin/v1/dlq/replay", post(replay))
        .route("/admin/v1/dlq/purge", post(purge))
        .route("/admin/v1/dlq/{id}", get(show).delete(delete))
        .merge(policy::router())
}

fn caller(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <admin or tenant token>` header"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim()))
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    if app.is_admin_token(token) {
        return Ok(Caller::Admin);
    }
    app.tokens()
        .find(token)
        .map(Caller::Tenant)
        .ok_or_else(|| unauthorized("the bearer token is neither the admin token nor a tenant's"))
}

impl Caller {
    /// The tenant filter a caller may use: its own for a tenant (403 when it asks
    /// for another), anything for the admin.
    fn scope(self, app: &App, asked: Option<String>) -> Result<Option<String>, ApiError> {
        match self {
            Caller::Admin => Ok(asked),
            Caller::Tenant(i) => {
                let own = app.tenant(i).id.to_string();
                match asked {
                    Some(t) if t != own => Err(forbidden(&t)),
                    _ => Ok(Some(own)),
                }
            }
        }
    }

    fn may_see(self, app: &App, entry: &DlqEntry) -> Result<(), ApiError> {
        match self {
            Caller::Tenant(i) if *app.tenant(i).id != *entry.tenant => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("DLQ entry {} belongs to another tenant", entry.id),
            )),
            _ => Ok(()),
        }
    }
}

fn forbidden(tenant: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("this token may not see tenant `{tenant}`'s entries"))
}

fn spool_error(e: crate::store::StoreError) -> ApiError {
    ApiError::unavailable(e.to_string())
}

/// Filters as query parameters or a JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterParams {
    tenant: Option<String>,
    route: Option<String>,
    /// A duration back from now, like `1h`.
    since: Option<String>,
    limit: Option<usize>,
    /// Only entries with a higher id: the `next` cursor of the previous page.
    after: Option<i64>,
}

impl FilterParams {
    fn into_filter(self, caller: Caller, app: &App) -> Result<DlqFilter, ApiError> {
        let since_ms = match &self.since {
            Some(s) => {
                let d = humantime::parse_duration(s).map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_filter",
                        format!("`since`: `{s}` is not a duration like \"1h\": {e}"),
                    )
                })?;
                Some(now_ms().saturating_sub(d.as_millis() as u64))
            }
            None => None,
        };
        Ok(DlqFilter {
            tenant: caller.scope(app, self.tenant)?,
            route: self.route,
            since_ms,
            ids: None,
            after: self.after,
            through: None,
            limit: self.limit,
        })
    }
}

fn bad_limit(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_filter", message)
}

async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(params): Query<FilterParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = match params.limit {
        None => DEFAULT_PAGE,
        Some(0) => return Err(bad_limit("`limit` must be at least 1".into())),
        Some(l) if l > MAX_PAGE => {
            return Err(bad_limit(format!("`limit`: at most {MAX_PAGE} entries per page, got {l}; follow `next`")))
        }
        Some(l) => l,
    };
    let filter = params.into_filter(caller, &app)?;
    let page = app.spool().dlq_page(&filter, limit).await.map_err(spool_error)?;
    Ok(Json(json!({"entries": page.entries, "next": page.next})))
}

async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> Result<Json<DlqEntry>, ApiError> {
    let entry = app.spool().dlq_get(id).await.map_err(spool_error)?.ok_or_else(|| not_found(id))?;
    caller.may_see(&app, &entry)?;
    Ok(Json(entry))
}

async fn delete(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let entry = app.spool().dlq_get(id).await.map_err(spool_error)?.ok_or_else(|| not_found(id))?;
    caller.may_see(&app, &entry)?;
    // The delete itself carries the tenant: it can only remove this tenant's entry.
    let filter = DlqFilter { ids: Some(vec![id]), tenant: caller.scope(&app, None)?, ..DlqFilter::default() };
    let n = app.spool().dlq_purge(&filter).await.map_err(spool_error)?;
    if n == 0 {
        return Err(not_found(id));
    }
    Ok(Json(json!({"purged": n})))
}

fn not_found(id: i64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no DLQ entry {id}"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ReplayMode {
    /// Re-send the last payload as it was.
    AsIs,
    /// Re-run the tenant's current policy on the original event.
    ThroughPolicy,
}

/// Which entries: `ids`, or `all` with the filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    #[serde(default)]
    ids: Vec<i64>,
    #[serde(default)]
    all: bool,
    #[serde(flatten)]
    filter: FilterParams,
}

#[derive(Debug, Deserialize)]
struct ReplayRequest {
    mode: Option<ReplayMode>,
    #[serde(flatten)]
    selection: Selection,
}

/// What a selection resolved to.
enum Resolved {
    /// Named entries, each checked: the caller may touch it. `tenant` is the caller's
    /// scope, which every write on them carries.
    Ids { entries: Vec<DlqEntry>, tenant: Option<String> },
    /// Every entry the filter (already scoped to the caller) matches.
    All(DlqFilter),
}

/// Resolves a selection, checking the caller may touch each named entry.
async fn resolve(app: &App, caller: Caller, selection: Selection) -> Result<Resolved, ApiError> {
    if selection.ids.is_empty() && !selection.all {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_selection",
            "name entries with `ids`, or pass `all: true` with optional filters",
        ));
    }
    if selection.ids.len() > MAX_PAGE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_selection",
            format!(
                "`ids`: at most {MAX_PAGE} per request, got {}; pass `all: true` with filters",
                selection.ids.len()
            ),
        ));
    }
    let mut filter = selection.filter.into_filter(caller, app)?;
    if selection.ids.is_empty() {
        return Ok(Resolved::All(filter));
    }
    // Ids are checked one by one so a tenant learns that another's id is off limits.
    let scoped_tenant = filter.tenant.take();
    filter.ids = Some(selection.ids.clone());
    filter.limit = None;
    let mut found: HashMap<i64, DlqEntry> =
        app.spool().dlq_list(&filter).await.map_err(spool_error)?.into_iter().map(|e| (e.id, e)).collect();
    let mut entries = Vec::with_capacity(found.len());
    for id in &selection.ids {
        let Some(entry) = found.remove(id) else {
            if entries.iter().any(|e: &DlqEntry| e.id == *id) {
                continue; // named twice
            }
            return Err(not_found(*id));
        };
        caller.may_see(app, &entry)?;
        if let Some(t) = &scoped_tenant {
            if caller == Caller::Admin && entry.tenant != *t {
                return Err(not_found(*id));
            }
        }
        entries.push(entry);
    }
    Ok(Resolved::Ids { entries, tenant: scoped_tenant })
}

/// Refuses a replay through the policy that would need an original event a tenant does
/// not keep, naming the tenant and the setting. Checked before anything is replayed.
async fn check_originals_kept(app: &App, resolved: &Resolved) -> Result<(), ApiError> {
    let refuse = |tenant: &str| {
        ApiError::new(
            StatusCode::CONFLICT,
            "original_not_kept",
            format!(
                "tenant `{tenant}` has `keep_original = false`: hostd does not store its original events, so its DLQ \
                 entries cannot be replayed through the policy; replay them as-is, or set keep_original = true for \
                 entries dead-lettered from then on"
            ),
        )
    };
    let not_kept = app.tenants().iter().filter(|t| !t.keep_original());
    match resolved {
        Resolved::Ids { entries, .. } => {
            for t in not_kept {
                if entries.iter().any(|e| e.tenant == *t.id) {
                    return Err(refuse(&t.id));
                }
            }
        }
        Resolved::All(filter) => {
            for t in not_kept {
                if filter.tenant.as_deref().is_some_and(|f| f != &*t.id) {
                    continue;
                }
                let probe = DlqFilter { tenant: Some(t.id.to_string()), limit: Some(1), ..filter.clone() };
                if !app.spool().dlq_list(&probe).await.map_err(spool_error)?.is_empty() {
                    return Err(refuse(&t.id));
                }
            }
        }
    }
    Ok(())
}

async fn replay(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(req): Json<ReplayRequest>,
) -> Result<Json<Value>, ApiError> {
    let mode = req.mode.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_replay",
            "say `mode`: \"as-is\" (resend the last payload) or \"through-policy\" (re-run the current policy)",
        )
    })?;
    let resolved = resolve(&app, caller, req.selection).await?;
    if matches!(mode, ReplayMode::ThroughPolicy) {
        check_originals_kept(&app, &resolved).await?;
    }
    let mut replayed = 0usize;
    let mut skipped = Vec::new();
    let fault_reason = "policy fault: no payload to resend; replay it through-policy";
    match (mode, resolved) {
        (ReplayMode::AsIs, Resolved::Ids { entries, tenant }) => {
            let filter =
                DlqFilter { ids: Some(entries.iter().map(|e| e.id).collect()), tenant, ..DlqFilter::default() };
            let out = app.spool().dlq_requeue(&filter).await.map_err(spool_error)?;
            replayed = out.deliveries.len();
            skipped.extend(out.skipped.into_iter().map(|id| json!({"id": id, "reason": fault_reason})));
            app.dispatch(out.deliveries).await;
        }
        (ReplayMode::AsIs, Resolved::All(filter)) => {
            let mut pages = Pages::start(&app, filter).await?;
            while let Some(page) = pages.next_page() {
                let out = app.spool().dlq_requeue(&page).await.map_err(spool_error)?;
                let Some(last) = out.last_id else { break };
                pages.advance(last, out.deliveries.len() + out.skipped.len());
                replayed += out.deliveries.len();
                skipped.extend(out.skipped.into_iter().map(|id| json!({"id": id, "reason": fault_reason})));
                app.dispatch(out.deliveries).await;
            }
        }
        (ReplayMode::ThroughPolicy, Resolved::Ids { entries, .. }) => {
            for entry in entries {
                match replay_through_policy(&app, &entry).await {
                    Ok(()) => replayed += 1,
                    Err(reason) => skipped.push(json!({"id": entry.id, "reason": reason})),
                }
            }
        }
        (ReplayMode::ThroughPolicy, Resolved::All(filter)) => {
            let mut pages = Pages::start(&app, filter).await?;
            while let Some(page) = pages.next_page() {
                let entries = app.spool().dlq_list(&page).await.map_err(spool_error)?;
                let Some(last) = entries.last().map(|e| e.id) else { break };
                pages.advance(last, entries.len());
                for entry in entries {
                    match replay_through_policy(&app, &entry).await {
                        Ok(()) => replayed += 1,
                        Err(reason) => skipped.push(json!({"id": entry.id, "reason": reason})),
                    }
                }
            }
        }
    }
    Ok(Json(json!({"replayed": replayed, "skipped": skipped})))
}

/// A filtered DLQ walked page by page, up to the entries that existed when the walk
/// began, so a replay never loops on entries it dead-letters itself.
struct Pages {
    filter: DlqFilter,
    through: i64,
    remaining: usize,
}

impl Pages {
    async fn start(app: &App, filter: DlqFilter) -> Result<Pages, ApiError> {
        let through = app.spool().dlq_max_id().await.map_err(spool_error)?;
        Ok(Pages { remaining: filter.limit.unwrap_or(usize::MAX), through, filter })
    }

    /// The filter of the next page, or `None` once `limit` entries were handled.
    fn next_page(&self) -> Option<DlqFilter> {
        (self.remaining > 0).then(|| DlqFilter {
            through: Some(self.through),
            limit: Some(self.remaining.min(MAX_PAGE)),
            ..self.filter.clone()
        })
    }

    /// After a page that ended at id `last` and handled `handled` entries.
    fn advance(&mut self, last: i64, handled: usize) {
        self.remaining = self.remaining.saturating_sub(handled);
        self.filter.after = Some(last);
    }
}

/// Re-runs the tenant's current policy on the entry's original event and replaces the
/// entry with the result (deliveries, a new DLQ entry, or nothing).
async fn replay_through_policy(app: &App, entry: &DlqEntry) -> Result<(), String> {
    let index =
        app.tenant_index(&entry.tenant).ok_or_else(|| format!("tenant `{}` is no longer configured", entry.tenant))?;
    let tenant = app.tenant(index);
    let original = entry.event.as_ref().ok_or_else(|| {
        format!(
            "the original event was not stored (tenant `{}` had keep_original = false when it was dead-lettered); \
             replay it as-is",
            entry.tenant
        )
    })?;
    let mut event =
        parse_event(original, &entry.tenant).map_err(|e| format!("the stored event is invalid: {}", e.message()))?;
    event.idempotency_key = entry.idempotency_key.clone();
    let policy = tenant.policy();
    let outcome = {
        let _slot = policy.evaluation_slot().await;
        evaluate_all(&policy, std::slice::from_ref(&event)).pop().expect("one outcome per event")
    };
    let item = app.shape(tenant, &policy, event, outcome);
    let deliveries = app
        .spool()
        .dlq_replace(entry.id, tenant.id.clone(), item)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("DLQ entry {} is gone (purged or replayed meanwhile)", entry.id))?;
    app.dispatch(deliveries).await;
    Ok(())
}

async fn purge(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(selection): Json<Selection>,
) -> Result<Json<Value>, ApiError> {
    let filter = match resolve(&app, caller, selection).await? {
        Resolved::Ids { entries, tenant } => {
            DlqFilter { ids: Some(entries.iter().map(|e| e.id).collect()), tenant, ..DlqFilter::default() }
        }
        Resolved::All(filter) => filter,
    };
    let n = app.spool().dlq_purge(&filter).await.map_err(spool_error)?;
    Ok(Json(json!({"purged": n})))
}
