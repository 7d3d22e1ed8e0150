//! `[query]`: what a custom or slo monitor aggregates (the embedded store's measurement,
//! field, agg, by, where), or the PromQL it asks a data source; a bot has none.

use super::errs::Errs;
use super::raw::RawQuery;
use super::{LoadContext, MonitorType, PromqlSpec, QuerySpec};
use crate::store::query::{Agg, Filter, Tags, AGG_NAMES};
use std::collections::HashSet;
use std::str::FromStr;
use toml::Spanned;

/// A monitor's `[query]`.
pub(super) enum Query {
    /// measurement, field, agg, by, where over the embedded store
    Store(QuerySpec),
    /// PromQL against a data source
    Promql(PromqlSpec),
}

/// The query of a monitor of type `mtype` (`None` for bots, and after an error).
pub(super) fn parse(
    raw: Option<&Spanned<RawQuery>>,
    mtype: MonitorType,
    ctx: &LoadContext,
    e: &mut Errs,
) -> Option<Query> {
    match (raw, mtype) {
        (Some(q), MonitorType::BotObs) => {
            e.at(
                q.span(),
                "query",
                "bot_obs monitors have no [query]: the script queries through host functions"
                    .into(),
            );
            None
        }
        (None, MonitorType::BotObs) => None,
        (None, _) => {
            e.at(
                0..0,
                "query",
                "missing [query] section (measurement, field, agg)".into(),
            );
            None
        }
        (Some(q), _) if q.get_ref().datasource.is_some() || q.get_ref().promql.is_some() => {
            parse_promql(q, ctx, e).map(Query::Promql)
        }
        (Some(q), _) => parse_present(q, e).map(Query::Store),
    }
}

/// `datasource` + `promql`: both needed, and none of the embedded store's keys (the PromQL
/// expression selects, filters and aggregates itself).
fn parse_promql(q: &Spanned<RawQuery>, ctx: &LoadContext, e: &mut Errs) -> Option<PromqlSpec> {
    let span = q.span();
    let q = q.get_ref();
    let store_keys = [
        ("measurement", q.measurement.as_ref().map(Spanned::span)),
        ("field", q.field.as_ref().map(Spanned::span)),
        ("agg", q.agg.as_ref().map(Spanned::span)),
        ("by", q.by.as_ref().map(Spanned::span)),
        ("where", q.where_.as_ref().map(Spanned::span)),
    ];
    for (key, at) in store_keys {
        if let Some(at) = at {
            e.at(
                at,
                &format!("query.{key}"),
                "not with a datasource: the PromQL expression selects and aggregates (its \
                 result's labels are the dimension tags); remove it"
                    .into(),
            );
        }
    }
    let datasource = match &q.datasource {
        None => {
            e.at(
                span.clone(),
                "query.datasource",
                "missing: the [[datasources]] id that `promql` is sent to".into(),
            );
            String::new()
        }
        Some(d) => {
            let id = d.get_ref();
            if let Some(known) = ctx.datasources {
                if !known.iter().any(|k| k == id) {
                    let list = if known.is_empty() {
                        "the config has no [[datasources]]".to_string()
                    } else {
                        format!("known: {}", known.join(", "))
                    };
                    e.bad(
                        d,
                        "query.datasource",
                        &format!("no such datasource ({list})"),
                    );
                }
            }
            id.clone()
        }
    };
    let promql = match &q.promql {
        None => {
            e.at(
                span,
                "query.promql",
                "missing: the PromQL expression, e.g. \"max_over_time(cpu_usage[1m])\"".into(),
            );
            String::new()
        }
        Some(p) => {
            if let Err(why) = check_promql(p.get_ref()) {
                e.bad(p, "query.promql", &why);
            }
            p.get_ref().clone()
        }
    };
    Some(PromqlSpec { datasource, promql })
}

/// Whether `expr` parses as PromQL and gives an instant vector or a scalar (what a check can
/// turn into objects); the error says why not.
pub fn check_promql(expr: &str) -> Result<(), String> {
    use promql_parser::parser::{self, value::ValueType};
    if expr.trim().is_empty() {
        return Err("must not be empty".into());
    }
    let parsed = parser::parse(expr).map_err(|e| format!("not valid PromQL: {e}"))?;
    match parsed.value_type() {
        ValueType::Vector | ValueType::Scalar => Ok(()),
        other => Err(format!(
            "gives a {other} but a check needs an instant vector (one value per series); \
             wrap a range selector in a function such as max_over_time(...)"
        )),
    }
}

fn parse_present(q: &Spanned<RawQuery>, e: &mut Errs) -> Option<QuerySpec> {
    let span = q.span();
    let q = q.get_ref();
    let measurement = match &q.measurement {
        Some(m) if !m.get_ref().is_empty() => m.get_ref().clone(),
        Some(m) => {
            e.bad(m, "query.measurement", "must not be empty");
            String::new()
        }
        None => {
            e.at(
                span.clone(),
                "query.measurement",
                "missing: the measurement to query, e.g. \"cpu\"".into(),
            );
            String::new()
        }
    };
    let field = match &q.field {
        Some(m) if !m.get_ref().is_empty() => m.get_ref().clone(),
        Some(m) => {
            e.bad(m, "query.field", "must not be empty");
            String::new()
        }
        None => {
            e.at(
                span.clone(),
                "query.field",
                "missing: the field to aggregate, e.g. \"usage_total\"".into(),
            );
            String::new()
        }
    };
    let agg = match &q.agg {
        None => Agg::Avg,
        Some(a) => match Agg::from_str(a.get_ref()) {
            Ok(x) => x,
            Err(_) => {
                e.bad(
                    a,
                    "query.agg",
                    &format!("expected one of {}", AGG_NAMES.join(", ")),
                );
                Agg::Avg
            }
        },
    };
    let by =
        q.by.as_ref()
            .map(|b| b.get_ref().0.clone())
            .unwrap_or_default();
    if let Some(b) = &q.by {
        let mut seen = HashSet::new();
        for t in &b.get_ref().0 {
            if t.is_empty() || !seen.insert(t) {
                e.bad(b, "query.by", "tag names must be non-empty and distinct");
                break;
            }
        }
    }
    let mut where_raw = Tags::new();
    let mut filters = Vec::new();
    if let Some(w) = &q.where_ {
        for (k, v) in w.get_ref() {
            match Filter::parse(k, v.get_ref()) {
                Ok(f) => filters.push(f),
                Err(msg) => e.bad(v, &format!("query.where.{k}"), &msg),
            }
            where_raw.insert(k.clone(), v.get_ref().clone());
        }
    }
    Some(QuerySpec {
        measurement,
        field,
        agg,
        by,
        where_raw,
        filters,
    })
}
