//! The host functions scripts call: `query`, `series`, `events` and `now` reach the
//! [`ScriptHost`](super::ScriptHost) of the running evaluation; `report` records a bot report.

use rhai::{Array, Dynamic, Engine, Map, NativeCallContext, INT};

use super::convert::{
    event_filter, json_to_dynamic, points_to_array, rt_err, string_list, string_map, tags_to_map,
    window_arg, RhaiErr,
};
use super::frame::{push_report, with_host};
use super::outcome::bot_report;
use super::ScriptHost;

fn host_call<R>(
    ctx: &NativeCallContext,
    func: &str,
    f: impl FnOnce(&dyn ScriptHost) -> Result<R, String>,
) -> Result<R, RhaiErr> {
    match with_host(f) {
        None => Err(rt_err(
            ctx,
            format!("{func}(): no host for this evaluation"),
        )),
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(rt_err(ctx, format!("{func}() failed: {e}"))),
    }
}

/// Checks a host answer against the evaluation's budget before it is turned into Rhai values
/// (which would multiply its size).
fn within_budget(ctx: &NativeCallContext, what: &str, items: usize) -> Result<(), RhaiErr> {
    match super::frame::current_budget() {
        Some(b) => b.check(what, items).map_err(|e| rt_err(ctx, e)),
        None => Ok(()),
    }
}

/// Register the host functions; `max_reports` caps `report()` calls per bot run (0 = no cap).
pub(super) fn register_host_functions(engine: &mut Engine, max_reports: usize) {
    engine.register_fn(
        "query",
        |ctx: NativeCallContext,
         measurement: &str,
         field: &str,
         agg: &str,
         by: Dynamic,
         window: Dynamic|
         -> Result<Array, RhaiErr> {
            let by = string_list("query", "by", &by.flatten()).map_err(|e| rt_err(&ctx, e))?;
            let window = window_arg("query", &window.flatten()).map_err(|e| rt_err(&ctx, e))?;
            let rows = host_call(&ctx, "query", |h| {
                h.query(measurement, field, agg, &by, window)
            })?;
            within_budget(&ctx, "query()", rows.len())?;
            Ok(rows
                .iter()
                .map(|(tags, value)| {
                    let mut m = Map::new();
                    m.insert("tags".into(), Dynamic::from_map(tags_to_map(tags)));
                    m.insert("value".into(), Dynamic::from_float(*value));
                    Dynamic::from_map(m)
                })
                .collect())
        },
    );

    engine.register_fn(
        "series",
        |ctx: NativeCallContext,
         measurement: &str,
         field: &str,
         where_: Dynamic,
         window: Dynamic|
         -> Result<Array, RhaiErr> {
            let where_ =
                string_map("series", "where", &where_.flatten()).map_err(|e| rt_err(&ctx, e))?;
            let window = window_arg("series", &window.flatten()).map_err(|e| rt_err(&ctx, e))?;
            let rows = host_call(&ctx, "series", |h| {
                h.series(measurement, field, &where_, window)
            })?;
            within_budget(&ctx, "series()", rows.len())?;
            for (_, points) in &rows {
                within_budget(&ctx, "series() points of one series", points.len())?;
            }
            Ok(rows
                .iter()
                .map(|(tags, points)| {
                    let mut m = Map::new();
                    m.insert("tags".into(), Dynamic::from_map(tags_to_map(tags)));
                    m.insert(
                        "points".into(),
                        Dynamic::from_array(points_to_array(points)),
                    );
                    Dynamic::from_map(m)
                })
                .collect())
        },
    );

    fn events_impl(ctx: &NativeCallContext, filter: &Map) -> Result<Array, RhaiErr> {
        let events = host_call(ctx, "events", |h| {
            let filter = event_filter(filter, h.now())?;
            h.events(&filter)
        })?;
        Ok(events.iter().map(json_to_dynamic).collect())
    }
    engine.register_fn(
        "events",
        |ctx: NativeCallContext, filter: Map| -> Result<Array, RhaiErr> {
            events_impl(&ctx, &filter)
        },
    );
    engine.register_fn(
        "events",
        |ctx: NativeCallContext| -> Result<Array, RhaiErr> { events_impl(&ctx, &Map::new()) },
    );

    engine.register_fn("now", |ctx: NativeCallContext| -> Result<INT, RhaiErr> {
        host_call(&ctx, "now", |h| Ok(h.now() as INT))
    });

    engine.register_fn(
        "report",
        move |ctx: NativeCallContext, report: Map| -> Result<(), RhaiErr> {
            let report = bot_report(report).map_err(|e| rt_err(&ctx, e))?;
            let outcome = push_report(report, max_reports);
            outcome.map_err(|e| rt_err(&ctx, e))
        },
    );
}
