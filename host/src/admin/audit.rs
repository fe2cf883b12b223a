//! `GET /admin/v1/audit`: every change made through the API — who (admin or a token's
//! id), what, when, and the resource before and after (never a secret).

use super::resources::require_admin;
use super::AdminState;
use crate::api_error::{ApiError, ErrorBody};
use crate::store::control::AuditEntry;
use crate::tenants::Caller;
use axum::extract::{Query, State};
use axum::Json;

/// A page of the audit log, oldest first.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<i64>,
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Entries after this id.
    pub after: Option<i64>,
    /// Entries per page (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The audit log (admin token).
#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit", operation_id = "list_audit", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn list_audit(
    State(app): State<AdminState>,
    caller: Caller,
    Query(params): Query<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    require_admin(&caller, "reading the audit log")?;
    let limit = params.limit.unwrap_or(super::DEFAULT_PAGE);
    if limit == 0 || limit > super::MAX_PAGE {
        return Err(ApiError::bad_request("invalid_filter", format!("`limit`: 1 to {}", super::MAX_PAGE)));
    }
    let entries = app.spool().audit_page(params.after, limit + 1).await.map_err(super::spool_error)?;
    let mut entries = entries;
    let next = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(AuditPage { entries, next }))
}
