//! The host functions a script reaches (`query`, `series`, `events`, `now`), bound to one
//! check: windows end at the check's `T - delay`, and events are those before `T`.

use crate::check::NS;
use crate::events::{EventDb, EventQuery};
use crate::script::{EventFilter, ScriptHost};
use crate::store::query::{aggregate, Agg, Filter, Tags, WindowQuery};
use crate::store::Store;
use serde_json::Value;
use std::str::FromStr;

/// The host functions scripts reach, bound to one check.
pub(crate) struct Host<'a> {
    pub(crate) store: &'a Store,
    pub(crate) db: &'a EventDb,
    pub(crate) now: i64,
    pub(crate) delay: i64,
}

impl Host<'_> {
    fn window(&self, window_secs: i64) -> (i64, i64) {
        let end = self.now - self.delay;
        ((end - window_secs) * NS, end * NS)
    }
}

/// `query()` may read this many series per item of the script's array limit: its groups are
/// far fewer than its series, but reading the series is what costs time and memory.
const QUERY_SERIES_PER_ITEM: usize = 10;

impl Host<'_> {
    /// Refuses a query whose matching series alone exceed the budget of the running
    /// evaluation, before any point is read.
    fn before(&self, what: &str, q: &WindowQuery, per_item: usize) -> Result<(), String> {
        let Some(b) = crate::script::current_budget() else {
            return Ok(());
        };
        let series = self.store.matching_series(q);
        let budget = crate::script::Budget {
            max_items: b.max_items.saturating_mul(per_item),
            ..b
        };
        budget.check(&format!("{what} matching series"), series)
    }

    /// The time limit again once the store has answered (a cold window may be slow).
    fn after(&self, what: &str, items: usize) -> Result<(), String> {
        match crate::script::current_budget() {
            Some(b) => b.check(what, items),
            None => Ok(()),
        }
    }
}

impl ScriptHost for Host<'_> {
    fn query(
        &self,
        measurement: &str,
        field: &str,
        agg: &str,
        by: &[String],
        window_secs: i64,
    ) -> Result<Vec<(Tags, f64)>, String> {
        let agg = Agg::from_str(agg).map_err(|e| e.to_string())?;
        let (start_ns, end_ns) = self.window(window_secs);
        let q = WindowQuery {
            measurement: measurement.into(),
            field: field.into(),
            by: by.to_vec(),
            filters: vec![],
            start_ns,
            end_ns,
        };
        // Aggregation shrinks many series to few groups, so allow more series than items.
        self.before("query()", &q, QUERY_SERIES_PER_ITEM)?;
        let groups = self.store.window(&q).map_err(|e| e.to_string())?;
        self.after("query()", groups.len())?;
        Ok(groups
            .into_iter()
            .filter_map(|g| aggregate(agg, &g.points).map(|v| (g.tags, v)))
            .collect())
    }

    fn series(
        &self,
        measurement: &str,
        field: &str,
        where_: &Tags,
        window_secs: i64,
    ) -> Result<Vec<(Tags, Vec<(i64, f64)>)>, String> {
        let filters = where_
            .iter()
            .map(|(k, v)| Filter::parse(k, v))
            .collect::<Result<Vec<_>, _>>()?;
        let (start_ns, end_ns) = self.window(window_secs);
        let q = WindowQuery {
            measurement: measurement.into(),
            field: field.into(),
            by: vec![],
            filters,
            start_ns,
            end_ns,
        };
        // One group per series, with its full tag set.
        self.before("series()", &q, 1)?;
        let groups = self.store.window_series(&q).map_err(|e| e.to_string())?;
        self.after("series()", groups.len())?;
        Ok(groups
            .into_iter()
            .map(|g| {
                (
                    g.tags,
                    g.points
                        .iter()
                        .map(|(t, v)| (t.div_euclid(NS), *v))
                        .collect(),
                )
            })
            .collect())
    }

    fn events(&self, f: &EventFilter) -> Result<Vec<Value>, String> {
        let q = EventQuery {
            status: f.status.clone(),
            source: f.source.clone(),
            monitor: f.monitor.clone(),
            from: f.since,
            // A check only sees what happened before it.
            to: Some(self.now),
            limit: Some(1000),
            ..Default::default()
        };
        self.db
            .events(&q)
            .map(|evs| evs.into_iter().map(|e| e.to_value()).collect())
            .map_err(|e| e.to_string())
    }

    fn now(&self) -> i64 {
        self.now
    }
}
