//! `[query]`: what a custom or slo monitor aggregates; a bot has none.

use super::errs::Errs;
use super::raw::RawQuery;
use super::{MonitorType, QuerySpec};
use crate::store::query::{Agg, Filter, Tags, AGG_NAMES};
use std::collections::HashSet;
use std::str::FromStr;
use toml::Spanned;

/// The query of a monitor of type `mtype` (`None` for bots, and after an error).
pub(super) fn parse(
    raw: Option<&Spanned<RawQuery>>,
    mtype: MonitorType,
    e: &mut Errs,
) -> Option<QuerySpec> {
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
        (Some(q), _) => parse_present(q, e),
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
