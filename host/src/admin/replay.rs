//! `POST /admin/v1/dlq/replay`: DLQ entries sent again, as they were or through the
//! tenant's current policy.

use super::{resolve, spool_error, AdminState, Resolved, Selection, MAX_PAGE};
use crate::api_error::{ApiError, ErrorBody};
use crate::event::parse_event;
use crate::store::{DlqEntry, DlqFilter};
use crate::tenants::ManageCaller;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(super) enum ReplayMode {
    /// Re-send the last payload as it was.
    AsIs,
    /// Re-run the tenant's current policy on the original event.
    ThroughPolicy,
}

/// `mode` and a selection (`ids`, or `all` with filters).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ReplayRequest {
    mode: Option<ReplayMode>,
    #[serde(flatten)]
    selection: Selection,
}

/// Refuses a replay through the policy that would need an original event a tenant does
/// not keep, naming the tenant and the setting. Checked before anything is replayed.
async fn check_originals_kept(app: &AdminState, resolved: &Resolved) -> Result<(), ApiError> {
    let refuse = |tenant: &str| {
        ApiError::conflict(
            "original_not_kept",
            format!(
                "tenant `{tenant}` has `keep_original = false`: hostd does not store its original events, so its DLQ \
                 entries cannot be replayed through the policy; replay them as-is, or set keep_original = true for \
                 entries dead-lettered from then on"
            ),
        )
    };
    let not_kept: Vec<_> = app.tenants.all().into_iter().filter(|t| !t.keep_original()).collect();
    match resolved {
        Resolved::Ids { entries, .. } => {
            for t in &not_kept {
                if entries.iter().any(|e| e.tenant == *t.id) {
                    return Err(refuse(&t.id));
                }
            }
        }
        Resolved::All(filter) => {
            for t in &not_kept {
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

/// What a replay did: how many entries went back to their route queues, and each one
/// skipped with the reason.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Replayed {
    replayed: usize,
    skipped: Vec<Skipped>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Skipped {
    id: i64,
    reason: String,
}

/// Sends DLQ entries again: `as-is` (the last payload) or `through-policy` (the tenant's
/// current policy on the original event).
#[utoipa::path(post, path = "/admin/v1/dlq/replay", operation_id = "replay_dlq", tag = "dlq", request_body = ReplayRequest,
    responses((status = 200, body = Replayed), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn replay(
    State(app): State<AdminState>,
    ManageCaller(caller): ManageCaller,
    Json(req): Json<ReplayRequest>,
) -> Result<Json<Replayed>, ApiError> {
    let mode = req.mode.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_replay",
            "say `mode`: \"as-is\" (resend the last payload) or \"through-policy\" (re-run the current policy)",
        )
    })?;
    let resolved = resolve(&app, &caller, req.selection).await?;
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
            skipped.extend(out.skipped.into_iter().map(|id| Skipped { id, reason: fault_reason.to_string() }));
            app.pipeline.dispatch(out.deliveries).await;
        }
        (ReplayMode::AsIs, Resolved::All(filter)) => {
            let mut pages = Pages::start(&app, filter).await?;
            while let Some(page) = pages.next_page() {
                let out = app.spool().dlq_requeue(&page).await.map_err(spool_error)?;
                let Some(last) = out.last_id else { break };
                pages.advance(last, out.deliveries.len() + out.skipped.len());
                replayed += out.deliveries.len();
                skipped.extend(out.skipped.into_iter().map(|id| Skipped { id, reason: fault_reason.to_string() }));
                app.pipeline.dispatch(out.deliveries).await;
            }
        }
        (ReplayMode::ThroughPolicy, Resolved::Ids { entries, .. }) => {
            for entry in entries {
                match replay_through_policy(&app, &entry).await {
                    Ok(()) => replayed += 1,
                    Err(reason) => skipped.push(Skipped { id: entry.id, reason }),
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
                        Err(reason) => skipped.push(Skipped { id: entry.id, reason }),
                    }
                }
            }
        }
    }
    Ok(Json(Replayed { replayed, skipped }))
}

/// A filtered DLQ walked page by page, up to the entries that existed when the walk
/// began, so a replay never loops on entries it dead-letters itself.
struct Pages {
    filter: DlqFilter,
    through: i64,
    remaining: usize,
}

impl Pages {
    async fn start(app: &AdminState, filter: DlqFilter) -> Result<Pages, ApiError> {
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
async fn replay_through_policy(app: &AdminState, entry: &DlqEntry) -> Result<(), String> {
    let tenant =
        app.tenants.get(&entry.tenant).ok_or_else(|| format!("tenant `{}` is no longer configured", entry.tenant))?;
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
    let item = app.pipeline.reevaluate(&tenant, event).await;
    let deliveries = app
        .spool()
        .dlq_replace(entry.id, tenant.id.clone(), item)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("DLQ entry {} is gone (purged or replayed meanwhile)", entry.id))?;
    app.pipeline.dispatch(deliveries).await;
    Ok(())
}
