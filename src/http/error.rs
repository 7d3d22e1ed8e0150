//! The one error type of the HTTP layer. Every variant answers a 4xx/5xx with a JSON body
//! `{"error": "...", ...}` (docs/event-centre.md and the README's HTTP section): field errors
//! add `field` and `rule`, batch items add `index`, parse errors add `line` and `column`.

use crate::custom::Invalid;
use crate::ingest::remote_write::RemoteWriteError;
use crate::ingest::IngestError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no credentials where a token is configured
    #[error("{0}")]
    Unauthorized(String),
    /// 403: wrong credentials
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such thing
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not
    #[error("{method} is not allowed on {path}: it takes {}", allow.join(", "))]
    MethodNotAllowed {
        /// the method sent
        method: String,
        /// the path
        path: String,
        /// the methods the path takes (the `Allow` header)
        allow: Vec<String>,
    },
    /// 400: a request-wide problem
    #[error("{0}")]
    BadRequest(String),
    /// 400: one parameter or field broke a rule
    #[error("{field}: {rule}")]
    Field {
        /// the parameter or field
        field: String,
        /// the rule it broke
        rule: String,
    },
    /// 400: a custom event (or batch item) broke a rule
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// 400: line protocol that does not parse
    #[error("{message}")]
    Parse {
        /// what was wrong
        message: String,
        /// 1-based line
        line: usize,
        /// 1-based column
        column: usize,
    },
    /// 408: the body did not arrive in time
    #[error("request body not received within {0:?}")]
    Timeout(std::time::Duration),
    /// 413: the body is too large
    #[error("{0}")]
    TooLarge(String),
    /// 413: one event of a batch is too large
    #[error("event {index} is {size} bytes: events over {} KiB ({max} bytes) are refused", max / 1024)]
    EventTooLarge {
        /// position in the batch
        index: usize,
        /// its size
        size: usize,
        /// the limit
        max: usize,
    },
    /// 415: the body is not of the content type the endpoint takes
    #[error("Content-Type {given:?} is not accepted: send {want}")]
    UnsupportedMediaType {
        /// the content type sent
        given: String,
        /// what to send instead
        want: &'static str,
    },
    /// 415: a protocol version or body encoding the endpoint does not take (the message says
    /// what to send instead)
    #[error("{0}")]
    Unsupported(String),
    /// 422: well-formed data the store refuses because it would break a configured limit
    /// (e.g. a new series past `max_series`); nothing of the request was stored
    #[error("{message}")]
    Limit {
        /// what was refused and why
        message: String,
        /// the limit, as named in the `[limits]` config section
        limit: &'static str,
    },
    /// 429: too much in flight; Retry-After says when to come back
    #[error("{message}")]
    Busy {
        /// what is saturated
        message: String,
        /// seconds to wait
        retry_after: u64,
    },
    /// 500: something failed inside
    #[error("{0}")]
    Internal(String),
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A 400 naming a field and the rule it broke.
    pub fn field(field: &str, rule: impl Into<String>) -> ApiError {
        ApiError::Field {
            field: field.to_string(),
            rule: rule.into(),
        }
    }

    /// A 500 from any error.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_)
            | ApiError::Field { .. }
            | ApiError::Invalid(_)
            | ApiError::Parse { .. } => StatusCode::BAD_REQUEST,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) | ApiError::EventTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } | ApiError::Unsupported(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Limit { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body: `error` always, plus the details of the variant.
    pub fn body(&self) -> Value {
        let mut body = json!({"error": self.to_string()});
        match self {
            ApiError::Field { field, rule } => {
                body["field"] = json!(field);
                body["rule"] = json!(rule);
            }
            ApiError::Invalid(i) => {
                body["index"] = json!(i.index);
                body["field"] = json!(i.field);
                body["rule"] = json!(i.rule);
            }
            ApiError::Parse { line, column, .. } => {
                body["line"] = json!(line);
                body["column"] = json!(column);
            }
            ApiError::EventTooLarge { index, max, .. } => {
                body["index"] = json!(index);
                body["field"] = json!("event");
                body["rule"] = json!(format!("at most {max} bytes"));
            }
            ApiError::Limit { limit, .. } => {
                body["limit"] = json!(limit);
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                body["allow"] = json!(allow);
            }
            _ => {}
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status(), Json(self.body())).into_response();
        match &self {
            ApiError::Busy { retry_after, .. } => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                if let Ok(v) = HeaderValue::from_str(&allow.join(",")) {
                    r.headers_mut().insert(header::ALLOW, v);
                }
            }
            _ => {}
        }
        r
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        match e {
            IngestError::Parse(p) => ApiError::Parse {
                message: p.to_string(),
                line: p.line,
                column: p.column,
            },
            IngestError::Decode(m) => ApiError::BadRequest(m),
            IngestError::TooLarge(n) => ApiError::TooLarge(format!("body larger than {n} bytes")),
            e @ IngestError::BatchTooLarge { .. } => ApiError::TooLarge(e.to_string()),
            IngestError::Busy => ApiError::Busy {
                message: "ingest is saturated; retry later".into(),
                retry_after: 1,
            },
            IngestError::Refused { limit, message } => ApiError::Limit { message, limit },
            IngestError::Store(m) => ApiError::Internal(m),
        }
    }
}

impl From<RemoteWriteError> for ApiError {
    fn from(e: RemoteWriteError) -> ApiError {
        match e {
            RemoteWriteError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            e if e.is_unsupported() => ApiError::Unsupported(e.to_string()),
            e => ApiError::BadRequest(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_name_what_was_wrong() {
        let e = ApiError::field("limit", "at most 10000");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            json!({"error": "limit: at most 10000", "field": "limit", "rule": "at most 10000"})
        );
        let e = ApiError::from(Invalid::at(2, "title", "required"));
        assert_eq!(e.body()["index"], 2);
        assert_eq!(e.body()["error"], "[2].title: required");
        let e = ApiError::from(IngestError::Refused {
            limit: "max_series",
            message: "series limit reached".into(),
        });
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            e.body(),
            json!({"error": "series limit reached", "limit": "max_series"})
        );
        let r = ApiError::from(IngestError::Busy).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let e = ApiError::EventTooLarge {
            index: 1,
            size: 70_000,
            max: 65_536,
        };
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.body()["rule"], "at most 65536 bytes");
        assert_eq!(
            ApiError::Timeout(std::time::Duration::from_secs(30)).status(),
            StatusCode::REQUEST_TIMEOUT
        );
    }
}
