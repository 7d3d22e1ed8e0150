//! Bearer tokens: the ingest token guards writes and event intake, the admin token guards
//! recovery, runs and reloads. Without a configured token an endpoint is open.

use super::error::{ApiError, ApiResult};
use crate::custom::sign::ct_eq;
use axum::http::{header, HeaderMap};

/// Checks `Authorization: Bearer <token>` when a token is configured: 401 without, 403 wrong.
pub fn check_token(headers: &HeaderMap, token: Option<&str>) -> ApiResult<()> {
    let Some(token) = token else { return Ok(()) };
    let Some(h) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::Unauthorized(
            "missing Authorization: Bearer <token>".into(),
        ));
    };
    let given = h
        .to_str()
        .unwrap_or("")
        .strip_prefix("Bearer ")
        .unwrap_or("");
    if ct_eq(given.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("wrong token".into()))
    }
}

/// Requires a JSON body (`application/json` or `application/*+json`, parameters allowed), so
/// that a web page cannot post to the endpoint cross-site with a simple form request.
pub fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            given: ct,
            want: "Content-Type: application/json",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens() {
        assert!(check_token(&HeaderMap::new(), None).is_ok());
        let st = |h: &HeaderMap| check_token(h, Some("tok")).map_err(|e| e.status().as_u16());
        assert_eq!(st(&HeaderMap::new()), Err(401));
        assert_eq!(
            st(&headers(&[(header::AUTHORIZATION, "Bearer nope")])),
            Err(403)
        );
        assert_eq!(
            st(&headers(&[(header::AUTHORIZATION, "Bearer tok")])),
            Ok(())
        );
    }

    #[test]
    fn json_content_types() {
        let ok = |ct: &str| require_json(&headers(&[(header::CONTENT_TYPE, ct)])).is_ok();
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(ok("application/cloudevents+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!ok("multipart/form-data; boundary=x"));
        let e = require_json(&HeaderMap::new()).unwrap_err();
        assert_eq!(e.status().as_u16(), 415);
    }
}
