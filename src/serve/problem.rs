//! RFC 9457 problem details: every error the service answers.
//!
//! - `detail` is one of our own one-line messages (the CLI's, for report
//!   questions), never a library's text: database, Parquet and object-store
//!   errors are logged with the request id and answered as a bare 500.
//! - A problem carries the request's id, so a user's report can be matched
//!   to the log line.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Serialize;

use crate::report;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_days: Option<Vec<NaiveDate>>,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            title,
            status: status.as_u16(),
            detail: detail.into(),
            request_id: None,
            missing_days: None,
        }
    }

    pub fn bad_parameter(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "urn:account-usage:problem:bad-parameter",
            "Bad parameter",
            detail,
        )
    }

    pub fn unauthorized() -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "urn:account-usage:problem:unauthorized",
            "Unauthorized",
            "a valid bearer token is required",
        )
    }

    /// The same body for an account that does not exist and one the token
    /// does not grant, so a response says nothing about other tenants.
    pub fn unknown_account(account: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "urn:account-usage:problem:not-found",
            "Not found",
            format!("unknown account {account}: it is not in the published data"),
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "urn:account-usage:problem:not-found",
            "Not found",
            detail,
        )
    }

    pub fn not_ready() -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "urn:account-usage:problem:unavailable",
            "Unavailable",
            "the warehouse snapshot is not loaded yet; retry shortly",
        )
    }

    pub fn timed_out() -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "urn:account-usage:problem:timeout",
            "Request timed out",
            "the answer took longer than the request timeout; retry, or ask for a shorter range",
        )
    }

    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "urn:account-usage:problem:internal",
            "Internal error",
            "the server failed to answer; the request id identifies it in the server's log",
        )
    }

    pub fn method_not_allowed() -> Self {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "urn:account-usage:problem:method-not-allowed",
            "Method not allowed",
            "only GET (and HEAD) are served",
        )
    }

    /// A report error as the client may see it: its own message for what
    /// the question got wrong, nothing of the rest.
    pub fn of_report(e: &report::Error, account: i64) -> Self {
        match e {
            report::Error::UnknownTimeZone(_)
            | report::Error::FromAfterTo { .. }
            | report::Error::RangeTooLong { .. }
            | report::Error::TooManyRows { .. } => Problem::bad_parameter(e.to_string()),
            report::Error::UnknownAccount(_) | report::Error::EmptyWarehouse => {
                Problem::unknown_account(&account.to_string())
            }
            report::Error::UnknownChannel { .. } => Problem::not_found(e.to_string()),
            report::Error::MissingDays(days) => {
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "urn:account-usage:problem:missing-days",
                    "Days not published",
                    e.to_string(),
                );
                p.missing_days = Some(days.clone());
                p
            }
            _ => Problem::internal(),
        }
    }

    pub fn with_request_id(mut self, id: Option<&str>) -> Self {
        self.request_id = id.map(str::to_string);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"account-usage\""),
            );
        }
        response
    }
}
