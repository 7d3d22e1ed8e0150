//! Request bodies read under a deadline: a client that sends its body slowly (or never)
//! gets 408 after [`BODY_READ_TIMEOUT`] instead of holding a connection and, for writes, an
//! ingest slot for ever.

use super::error::ApiError;
use super::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use std::time::Duration;

/// How long a request body may take to arrive, by default.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole body, read within [`AppState::body_timeout`] and the body limit.
#[derive(Debug, Clone)]
pub struct Body(pub Bytes);

#[axum::async_trait]
impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &AppState) -> Result<Body, ApiError> {
        let limit = st.body_timeout;
        match tokio::time::timeout(limit, Bytes::from_request(req, st)).await {
            Err(_) => Err(ApiError::Timeout(limit)),
            Ok(Ok(b)) => Ok(Body(b)),
            Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
                ApiError::TooLarge(format!("body larger than {} bytes", st.max_body)),
            ),
            Ok(Err(rejection)) => Err(ApiError::BadRequest(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))),
        }
    }
}
