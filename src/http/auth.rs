//! Tokens. The ingest token guards writes and event intake, the admin token guards recovery,
//! runs and reloads, and reads (events, issues, monitors, deliveries) take the read token or
//! the admin token as soon as any token is configured. Without a configured token an endpoint
//! is open.
//!
//! [`check_token`] takes `Authorization: Bearer <token>` (admin and custom-event endpoints).
//! [`check_write_token`] and [`check_read_token`] also take the forms InfluxDB clients send
//! (`Token <t>`, Basic auth with the token as the password, `u`/`p` query parameters), so
//! `influxdb-client`, Telegraf and v1 clients authenticate without changes. Every comparison is
//! constant-time; no credential at all is 401, a wrong one 403, and both messages list the
//! forms accepted.

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::custom::sign::ct_eq;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

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

/// The credential forms of [`check_write_token`] and [`check_read_token`], for messages.
pub const TOKEN_FORMS: &str = "Authorization: Bearer <token>, Authorization: Token <token>, \
     Basic auth with the token as the password (any user name), or the query parameters \
     u=<any>&p=<token>";

/// One credential a request offers: where it came from (saying what was wrong with it when
/// it cannot be read), and the secret (`None` when unreadable: an unknown scheme, Basic that
/// is not base64 of user:password).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Offered {
    form: String,
    secret: Option<Vec<u8>>,
}

/// Every credential of the request, in the forms InfluxDB accepts: the `Authorization` header
/// (`Bearer`, `Token`, `Basic` user:password; schemes compared ignoring case) and the `p`
/// query parameter (`u`, the user name, is not checked).
fn offered(headers: &HeaderMap, query: Option<&str>) -> Vec<Offered> {
    let mut out = Vec::new();
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        let text = String::from_utf8_lossy(h.as_bytes());
        let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
        let rest = rest.trim();
        let offer = match scheme.to_ascii_lowercase().as_str() {
            "bearer" | "token" => Offered {
                form: format!("Authorization: {scheme}"),
                secret: Some(rest.as_bytes().to_vec()),
            },
            "basic" => {
                let password = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .ok()
                    .and_then(|userpass| {
                        let colon = userpass.iter().position(|&b| b == b':')?;
                        Some(userpass[colon + 1..].to_vec())
                    });
                Offered {
                    form: match password {
                        Some(_) => "Authorization: Basic".into(),
                        None => "Authorization: Basic (not base64 of user:password)".into(),
                    },
                    secret: password,
                }
            }
            _ => Offered {
                form: format!("Authorization: {scheme} (an unknown scheme)"),
                secret: None,
            },
        };
        out.push(offer);
    }
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "p" {
            out.push(Offered {
                form: "query parameter p".into(),
                secret: Some(v.as_bytes().to_vec()),
            });
        }
    }
    out
}

/// Whether any offered secret equals any accepted token. Every pair is compared (in constant
/// time), so the time taken does not tell which matched.
fn any_matches(offered: &[Offered], accepted: &[&str]) -> bool {
    let mut hit = false;
    for o in offered {
        for t in accepted {
            if let Some(s) = &o.secret {
                hit |= ct_eq(s, t.as_bytes());
            }
        }
    }
    hit
}

fn forms_given(offered: &[Offered]) -> String {
    offered
        .iter()
        .map(|o| o.form.as_str())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Checks the ingest token of a write (or of `/query`) in any of [`TOKEN_FORMS`]; `query` is
/// the URI's query string (for `p`). No token configured: open. No credential: 401; a wrong
/// one: 403.
pub fn check_write_token(
    headers: &HeaderMap,
    query: Option<&str>,
    token: Option<&str>,
) -> ApiResult<()> {
    let Some(token) = token else { return Ok(()) };
    let offered = offered(headers, query);
    if offered.is_empty() {
        return Err(ApiError::Unauthorized(format!(
            "missing token: send the ingest_token as {TOKEN_FORMS}"
        )));
    }
    if any_matches(&offered, &[token]) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "wrong token in {}: writes take the ingest_token as {TOKEN_FORMS}",
            forms_given(&offered)
        )))
    }
}

/// The tokens a read is checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadTokens<'a> {
    /// `read_token`
    pub read: Option<&'a str>,
    /// `admin_token` (reads too)
    pub admin: Option<&'a str>,
    /// `ingest_token`: never reads, but when set the reads are guarded
    pub ingest: Option<&'a str>,
}

impl<'a> ReadTokens<'a> {
    /// The tokens of the app state.
    pub fn of(st: &'a AppState) -> ReadTokens<'a> {
        ReadTokens {
            read: st.read_token.as_deref(),
            admin: st.admin_token.as_deref(),
            ingest: st.ingest_token.as_deref(),
        }
    }
}

/// Checks a read: once any token is configured (ingest, admin or read), reads need the
/// `read_token` or the `admin_token` in any of [`TOKEN_FORMS`]. The ingest token does not read:
/// writers' credentials sit on many machines, and events and deliveries say more than metrics.
/// With no token configured at all, reads are open (the loopback-only default).
pub fn check_read_token(
    headers: &HeaderMap,
    query: Option<&str>,
    tokens: ReadTokens<'_>,
) -> ApiResult<()> {
    if tokens.read.is_none() && tokens.admin.is_none() && tokens.ingest.is_none() {
        return Ok(());
    }
    let accepted: Vec<&str> = [tokens.read, tokens.admin].into_iter().flatten().collect();
    let offered = offered(headers, query);
    if offered.is_empty() {
        let hint = if accepted.is_empty() {
            " (this server sets neither read_token nor admin_token: set read_token in its config to allow reads)"
        } else {
            ""
        };
        return Err(ApiError::Unauthorized(format!(
            "reads need a token: send the read_token or the admin_token as {TOKEN_FORMS}{hint}"
        )));
    }
    if any_matches(&offered, &accepted) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "wrong token in {}: reads take the read_token or the admin_token (the ingest_token does not read)",
            forms_given(&offered)
        )))
    }
}

/// Middleware of the read routes: [`check_read_token`] before the handler runs (and before
/// a heavy read takes its turn).
pub async fn admit_read(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match check_read_token(req.headers(), req.uri().query(), ReadTokens::of(&st)) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
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

    fn basic(userpass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(userpass)
        )
    }

    /// The status and message of a write check against the ingest token `tok`.
    fn write(auth: Option<&str>, query: Option<&str>) -> Result<(), (u16, String)> {
        let h = match auth {
            Some(a) => headers(&[(header::AUTHORIZATION, a)]),
            None => HeaderMap::new(),
        };
        check_write_token(&h, query, Some("tok")).map_err(|e| (e.status().as_u16(), e.to_string()))
    }

    #[test]
    fn writes_take_every_influxdb_form() {
        for auth in [
            "Bearer tok",
            "Token tok",
            "token tok",
            "BEARER  tok ",
            &basic("telegraf:tok"),
            &basic(":tok"),
        ] {
            assert_eq!(write(Some(auth), None), Ok(()), "{auth}");
        }
        assert_eq!(write(None, Some("db=x&u=anyone&p=tok")), Ok(()));
        assert_eq!(write(None, Some("p=to%6B")), Ok(()), "percent-encoded");
        // a v1 client may send both; one right credential is enough
        assert_eq!(write(Some(&basic("u:tok")), Some("u=u&p=tok")), Ok(()));
        assert!(check_write_token(&HeaderMap::new(), None, None).is_ok());
    }

    #[test]
    fn writes_refuse_wrong_tokens_in_every_form_with_403() {
        for (auth, query, form) in [
            (Some("Bearer nope"), None, "Authorization: Bearer"),
            (Some("Token nope"), None, "Authorization: Token"),
            (
                Some(basic("tok:nope").as_str()),
                None,
                "Authorization: Basic",
            ),
            // the token as the user name is not the password
            (Some(basic("tok:").as_str()), None, "Authorization: Basic"),
            (
                Some(basic("tok").as_str()),
                None,
                "Authorization: Basic (not base64 of user:password)",
            ),
            (
                Some("Basic %%%"),
                None,
                "Authorization: Basic (not base64 of user:password)",
            ),
            (
                Some("Digest tok"),
                None,
                "Authorization: Digest (an unknown scheme)",
            ),
            (Some("Bearer"), None, "Authorization: Bearer"),
            (None, Some("u=tok&p=nope"), "query parameter p"),
            (None, Some("p="), "query parameter p"),
        ] {
            let (code, msg) = write(auth, query).unwrap_err();
            assert_eq!(code, 403, "{auth:?} {query:?}");
            assert!(msg.starts_with(&format!("wrong token in {form}:")), "{msg}");
            assert!(msg.contains(TOKEN_FORMS), "{msg}");
        }
    }

    #[test]
    fn writes_without_credentials_get_401_listing_the_forms() {
        for query in [None, Some("db=x&u=tok"), Some("precision=s")] {
            let (code, msg) = write(None, query).unwrap_err();
            assert_eq!(code, 401);
            assert_eq!(
                msg,
                format!("missing token: send the ingest_token as {TOKEN_FORMS}")
            );
        }
        for form in ["Bearer", "Token", "Basic", "u=<any>&p=<token>"] {
            assert!(TOKEN_FORMS.contains(form), "{form}");
        }
    }

    #[test]
    fn reads_take_the_read_or_admin_token_not_the_ingest_token() {
        let all = ReadTokens {
            read: Some("rd"),
            admin: Some("ad"),
            ingest: Some("in"),
        };
        let read = |tokens: ReadTokens, auth: Option<&str>| {
            let h = match auth {
                Some(a) => headers(&[(header::AUTHORIZATION, a)]),
                None => HeaderMap::new(),
            };
            check_read_token(&h, None, tokens).map_err(|e| (e.status().as_u16(), e.to_string()))
        };
        assert_eq!(read(all, Some("Bearer rd")), Ok(()));
        assert_eq!(read(all, Some("Bearer ad")), Ok(()));
        assert_eq!(read(all, Some("Token rd")), Ok(()));
        assert!(check_read_token(&HeaderMap::new(), Some("p=rd"), all).is_ok());
        let (code, msg) = read(all, Some("Bearer in")).unwrap_err();
        assert_eq!(code, 403);
        assert!(
            msg.contains("read_token or the admin_token (the ingest_token does not read)"),
            "{msg}"
        );
        let (code, msg) = read(all, None).unwrap_err();
        assert_eq!(code, 401);
        assert!(msg.starts_with("reads need a token: send the read_token or the admin_token as Authorization: Bearer"), "{msg}");
        // no token configured at all: open
        assert_eq!(read(ReadTokens::default(), None), Ok(()));
        // only the ingest token: reads are guarded, and the 401 says what to configure
        let ingest_only = ReadTokens {
            ingest: Some("in"),
            ..Default::default()
        };
        let (code, msg) = read(ingest_only, None).unwrap_err();
        assert_eq!(code, 401);
        assert!(msg.contains("set read_token in its config"), "{msg}");
        assert_eq!(read(ingest_only, Some("Bearer in")).unwrap_err().0, 403);
        // the admin token alone reads
        let admin_only = ReadTokens {
            admin: Some("ad"),
            ..Default::default()
        };
        assert_eq!(read(admin_only, Some("Bearer ad")), Ok(()));
        assert_eq!(read(admin_only, None).unwrap_err().0, 401);
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
