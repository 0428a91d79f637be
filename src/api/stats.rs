//! Operators' numbers, behind the admin key (`Authorization: Bearer
//! <admin_key>`, compared in constant time; with no `admin_key` configured
//! the routes answer 404 `admin_api_disabled`).
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/stats?since=&format=` | tickets by outcome and reason, latency p50/p95, tokens and cost since a date or time (default: 30 days), and under `resolution` the per-conversation figures ([`crate::resolution`]); `format=csv` exports those |
//! | `GET /metrics` | the Prometheus registry (local mode only) |

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::auth::bearer;
use super::{ApiError, ApiState};
use crate::cost::{Summary, parse_since};
use crate::metrics::{CONTENT_TYPE, Metrics};

/// Proof that the request carries the admin key.
pub(super) struct Admin;

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let key = state
            .config()
            .admin_key
            .as_ref()
            .filter(|k| !k.expose().trim().is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "admin_api_disabled",
                    "stats and metrics are off: set `admin_key` in the configuration to enable them",
                )
            })?;
        let given = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_admin_key",
                "send the admin key as `Authorization: Bearer <key>`",
            )
        })?;
        // Both sides hashed first: the comparison leaks neither content nor length.
        let same: bool = Sha256::digest(key.expose().as_bytes())
            .ct_eq(&Sha256::digest(given.as_bytes()))
            .into();
        if same {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized(
                "invalid_admin_key",
                "the admin key is not valid",
            ))
        }
    }
}

#[derive(Deserialize)]
pub(super) struct StatsQuery {
    since: Option<String>,
    /// `json` (default) or `csv` (the resolution figures).
    format: Option<String>,
}

/// The period's [`Summary`] with its per-conversation
/// [`crate::resolution::Resolution`] under `resolution`.
#[derive(serde::Serialize)]
struct StatsOut {
    #[serde(flatten)]
    summary: Summary,
    resolution: crate::resolution::Resolution,
}

/// `GET /v1/stats`: the period's [`Summary`] and resolution figures as
/// JSON, or the resolution figures as CSV (`format=csv`).
pub(super) async fn stats(
    _: Admin,
    State(state): State<ApiState>,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    figures(&state, q.since.as_deref(), q.format.as_deref()).await
}

/// The stats answer, shared with the agent console.
pub(super) async fn figures(
    state: &ApiState,
    since: Option<&str>,
    format: Option<&str>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let since = parse_since(since, now).map_err(|m| ApiError::bad_request("invalid_since", m))?;
    let csv = match format.unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => {
            return Err(ApiError::bad_request(
                "invalid_format",
                format!("format {other:?}: expected json or csv"),
            ));
        }
    };
    let (summary, resolution) = crate::resolution::gather(
        state.store(),
        state.people()?,
        &state.config().pricing,
        state.config().resolution,
        since,
        now,
    )
    .await?;
    if csv {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"deskhand-resolution.csv\"",
                ),
            ],
            resolution.csv(),
        )
            .into_response());
    }
    Ok(axum::Json(StatsOut {
        summary,
        resolution,
    })
    .into_response())
}

/// `GET /metrics`: the registry in OpenMetrics text.
pub(super) async fn metrics(_: Admin, metrics: Option<Extension<Metrics>>) -> Response {
    match metrics {
        Some(Extension(m)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.render()).into_response(),
        None => ApiError::not_found("no metrics in this process").into_response(),
    }
}
