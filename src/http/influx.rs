//! What InfluxDB clients probe before they write, so that they write to tocsin unchanged:
//!
//! - `GET`/`HEAD /ping`: 204 with `X-Influxdb-Version` and `X-Influxdb-Build` (the v1 Python
//!   client's `ping()` returns that header and fails without it; `?verbose=true` answers
//!   200 `{"version"}` as InfluxDB does);
//! - `GET /health`: InfluxDB's health document (`influxdb-client`'s `health()`, Glances'
//!   `influxdb2` export);
//! - `GET`/`POST /query`: just enough InfluxQL for writers. `CREATE DATABASE` succeeds (every
//!   database name is accepted: all points go to the one store), `SHOW DATABASES` lists
//!   [`DATABASE`] and the database the request names (`db=`), so a client that checks its
//!   database exists (Glances) goes on; any other statement is a 400 saying tocsin only takes
//!   writes. `/query` sits behind write admission: the ingest token in any InfluxDB form.
//!
//! The version announced is InfluxDB 1.8's: 1.8 is the release that serves both the v1 API
//! and the v2 write and health endpoints tocsin implements. No client checked here
//! (`influxdb` 5.3, `influxdb-client` 1.50, Glances, Telegraf) requires a 2.x version.

use super::body::Body;
use super::error::{ApiError, ApiResult};
use super::AppState;
use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The InfluxDB version announced in `X-Influxdb-Version` and `/health`.
pub const INFLUXDB_VERSION: &str = "1.8.10";

/// The build announced in `X-Influxdb-Build` (`influxdb-client` asks whether it is `Cloud`).
pub const INFLUXDB_BUILD: &str = "OSS";

/// The database `SHOW DATABASES` always lists.
pub const DATABASE: &str = "tocsin";

/// The probe routes; `/query` behind write admission (token, then a slot).
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/query", get(query).post(query))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::write::admit_write,
        ))
        .route("/ping", get(ping).head(ping))
        .route("/health", get(health))
}

/// The two headers every InfluxDB answer carries.
fn influx_headers() -> [(HeaderName, HeaderValue); 2] {
    [
        (
            HeaderName::from_static("x-influxdb-version"),
            HeaderValue::from_static(INFLUXDB_VERSION),
        ),
        (
            HeaderName::from_static("x-influxdb-build"),
            HeaderValue::from_static(INFLUXDB_BUILD),
        ),
    ]
}

async fn ping(Query(p): Query<HashMap<String, String>>) -> Response {
    if p.get("verbose").is_some_and(|v| v == "true") {
        return (influx_headers(), Json(json!({"version": INFLUXDB_VERSION}))).into_response();
    }
    (StatusCode::NO_CONTENT, influx_headers()).into_response()
}

async fn health() -> Response {
    (
        influx_headers(),
        Json(json!({
            "name": "influxdb",
            "message": "ready for queries and writes",
            "status": "pass",
            "checks": [],
            "version": INFLUXDB_VERSION,
            "commit": concat!("tocsin-", env!("CARGO_PKG_VERSION")),
        })),
    )
        .into_response()
}

/// `/query`: `q` (and `db`) from a form body (POST, as Telegraf sends it) or the query
/// string (as the v1 clients send it); the body wins, as in InfluxDB.
async fn query(uri: axum::http::Uri, headers: HeaderMap, Body(body): Body) -> ApiResult<Response> {
    let mut params: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    let q = params
        .get("q")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("missing required parameter \"q\"".into()))?;
    let db = params.get("db").map(String::as_str);
    let results = answer(q, db).map_err(ApiError::BadRequest)?;
    Ok((influx_headers(), Json(json!({"results": results}))).into_response())
}

/// The results of the statements of `q`, or why they are refused (nothing is done then).
pub fn answer(q: &str, db: Option<&str>) -> Result<Vec<Value>, String> {
    let statements = split_statements(q)?;
    if statements.is_empty() {
        return Err("missing required parameter \"q\"".into());
    }
    let mut results = Vec::new();
    for (i, text) in statements.iter().enumerate() {
        let words = words(text)?;
        let kw = |n: usize, k: &str| {
            words
                .get(n)
                .is_some_and(|w| !w.quoted && w.text.eq_ignore_ascii_case(k))
        };
        if kw(0, "CREATE")
            && kw(1, "DATABASE")
            && words.len() >= 3
            && (words.len() == 3 || kw(3, "WITH"))
        {
            // Retention and shards are tocsin's own ([retention] in the config): WITH … is
            // accepted and ignored.
            results.push(json!({"statement_id": i}));
        } else if kw(0, "SHOW") && kw(1, "DATABASES") && words.len() == 2 {
            let mut names = vec![json!([DATABASE])];
            if let Some(d) = db.filter(|d| !d.is_empty() && *d != DATABASE) {
                names.push(json!([d]));
            }
            results.push(json!({"statement_id": i, "series": [
                {"name": "databases", "columns": ["name"], "values": names}
            ]}));
        } else {
            return Err(format!(
                "statement {} ({:?}) is not supported: tocsin only accepts writes; /query answers \
                 CREATE DATABASE and SHOW DATABASES so that InfluxDB writers can start (query the \
                 data through monitors)",
                i + 1,
                text
            ));
        }
    }
    Ok(results)
}

/// The statements of `q`, split at `;` outside quotes, trimmed, empty ones dropped.
fn split_statements(q: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = q.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                continue;
            }
            (Some(open), c) if c == open => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, ';') => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if let Some(open) = quote {
        return Err(format!("unterminated {open}quote{open} in {q:?}"));
    }
    out.push(cur);
    Ok(out
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// One word of a statement: a bare word (a keyword or an identifier) or a quoted identifier
/// or string, unescaped.
#[derive(Debug, PartialEq)]
struct Word {
    text: String,
    quoted: bool,
}

fn words(statement: &str) -> Result<Vec<Word>, String> {
    let mut out = Vec::new();
    let mut chars = statement.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some('\\') => text.extend(chars.next()),
                    Some(x) if x == c => break,
                    Some(x) => text.push(x),
                    None => return Err(format!("unterminated {c}quote{c} in {statement:?}")),
                }
            }
            out.push(Word { text, quoted: true });
        } else {
            let mut text = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() || x == '"' || x == '\'' {
                    break;
                }
                text.push(x);
                chars.next();
            }
            out.push(Word {
                text,
                quoted: false,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_database_in_every_spelling() {
        for q in [
            "CREATE DATABASE telegraf",
            "create database \"glances\"",
            "CREATE DATABASE \"a;b\"",
            "CREATE DATABASE \"x\" WITH DURATION 7d REPLICATION 1",
            "  CREATE   DATABASE 'x' ;  ",
        ] {
            assert_eq!(answer(q, None), Ok(vec![json!({"statement_id": 0})]), "{q}");
        }
    }

    #[test]
    fn show_databases_lists_tocsin_and_the_asked_database() {
        let r = answer("SHOW DATABASES", None).unwrap();
        assert_eq!(
            r,
            vec![
                json!({"statement_id": 0, "series": [{"name": "databases", "columns": ["name"], "values": [["tocsin"]]}]})
            ]
        );
        let r = answer("show databases", Some("glances")).unwrap();
        assert_eq!(
            r[0]["series"][0]["values"],
            json!([["tocsin"], ["glances"]])
        );
        assert_eq!(
            answer("SHOW DATABASES", Some("tocsin")).unwrap()[0]["series"][0]["values"],
            json!([["tocsin"]])
        );
    }

    #[test]
    fn several_statements_number_their_results() {
        let r = answer("CREATE DATABASE a; SHOW DATABASES;", None).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0]["statement_id"].clone(), r[1]["statement_id"].clone()),
            (json!(0), json!(1))
        );
    }

    #[test]
    fn anything_else_is_refused_naming_the_statement() {
        let e = answer("CREATE DATABASE a; SELECT * FROM cpu", None).unwrap_err();
        assert!(
            e.contains("statement 2") && e.contains("SELECT * FROM cpu"),
            "{e}"
        );
        assert!(e.contains("only accepts writes"), "{e}");
        for q in [
            "DROP DATABASE a",
            "CREATE DATABASE",
            "CREATE DATABASE a b",
            "SHOW DATABASES x",
            "CREATE RETENTION POLICY rp ON a DURATION 1d REPLICATION 1",
        ] {
            assert!(answer(q, None).is_err(), "{q}");
        }
        assert!(answer(" ; ", None).unwrap_err().contains("missing"));
        assert!(answer("CREATE DATABASE \"a", None)
            .unwrap_err()
            .contains("unterminated"));
    }
}
