//! The numeric helpers scripts get: `avg`, `sum`, `min`, `max`, `stddev`, `percentile` and
//! `linear_fit`, over numbers, `[ts, value]` points or `query(...)` rows.

use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};

use super::convert::{number, rt_err, show, type_name, RhaiErr};

/// Numbers of an array: numbers as is, `[ts, value]` pairs by value, maps by their `value` key
/// (so `avg(points)` and `max(query(...))` work directly).
fn values(func: &str, arr: &Array) -> Result<Vec<f64>, String> {
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            let x = x.clone().flatten();
            if let Some(n) = number(&x) {
                return Ok(n);
            }
            if let Some(a) = x.read_lock::<Array>() {
                if a.len() == 2 {
                    if let Some(n) = number(&a[1].clone().flatten()) {
                        return Ok(n);
                    }
                }
            }
            if let Some(m) = x.read_lock::<Map>() {
                if let Some(n) = m.get("value").and_then(|v| number(&v.clone().flatten())) {
                    return Ok(n);
                }
            }
            Err(format!(
                "{func}(): item {i} is {} {}; expected numbers, [ts, value] pairs or maps with a \
                 numeric `value`",
                type_name(&x),
                show(&x)
            ))
        })
        .collect()
}

fn pairs(func: &str, arr: &Array) -> Result<Vec<(f64, f64)>, String> {
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            let x = x.clone().flatten();
            if let Some(a) = x.read_lock::<Array>() {
                if a.len() == 2 {
                    if let (Some(px), Some(py)) = (
                        number(&a[0].clone().flatten()),
                        number(&a[1].clone().flatten()),
                    ) {
                        return Ok((px, py));
                    }
                }
            }
            Err(format!(
                "{func}(): item {i} is {} {}; expected [x, y] pairs of numbers",
                type_name(&x),
                show(&x)
            ))
        })
        .collect()
}

fn percentile_of(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

fn stddev_of(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt()
}

/// Least squares fit `y = slope * x + intercept`; `None` without two distinct x.
fn linear_fit_of(p: &[(f64, f64)]) -> Option<(f64, f64)> {
    if p.len() < 2 {
        return None;
    }
    let n = p.len() as f64;
    let mx = p.iter().map(|q| q.0).sum::<f64>() / n;
    let my = p.iter().map(|q| q.1).sum::<f64>() / n;
    let sxx: f64 = p.iter().map(|q| (q.0 - mx) * (q.0 - mx)).sum();
    let sxy: f64 = p.iter().map(|q| (q.0 - mx) * (q.1 - my)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

fn register_reducer(engine: &mut Engine, name: &'static str, f: fn(&[f64]) -> f64) {
    engine.register_fn(
        name,
        move |ctx: NativeCallContext, arr: Array| -> Result<Dynamic, RhaiErr> {
            let v = values(name, &arr).map_err(|e| rt_err(&ctx, e))?;
            Ok(if v.is_empty() {
                Dynamic::UNIT
            } else {
                Dynamic::from_float(f(&v))
            })
        },
    );
}

/// Register the numeric helpers on `engine`.
pub(super) fn register_helpers(engine: &mut Engine) {
    register_reducer(engine, "avg", |v| v.iter().sum::<f64>() / v.len() as f64);
    register_reducer(engine, "sum", |v| v.iter().sum());
    register_reducer(engine, "min", |v| {
        v.iter().copied().fold(f64::INFINITY, f64::min)
    });
    register_reducer(engine, "max", |v| {
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    });
    register_reducer(engine, "stddev", stddev_of);

    engine.register_fn(
        "percentile",
        |ctx: NativeCallContext, arr: Array, p: Dynamic| -> Result<Dynamic, RhaiErr> {
            let p = p.flatten();
            let pv = match number(&p) {
                Some(x) if (0.0..=100.0).contains(&x) => x,
                _ => {
                    return Err(rt_err(
                        &ctx,
                        format!(
                            "percentile(): p must be a number from 0 to 100, got {} {}",
                            type_name(&p),
                            show(&p)
                        ),
                    ))
                }
            };
            let v = values("percentile", &arr).map_err(|e| rt_err(&ctx, e))?;
            Ok(if v.is_empty() {
                Dynamic::UNIT
            } else {
                Dynamic::from_float(percentile_of(v, pv))
            })
        },
    );

    engine.register_fn(
        "linear_fit",
        |ctx: NativeCallContext, arr: Array| -> Result<Dynamic, RhaiErr> {
            let p = pairs("linear_fit", &arr).map_err(|e| rt_err(&ctx, e))?;
            Ok(match linear_fit_of(&p) {
                None => Dynamic::UNIT,
                Some((slope, intercept)) => {
                    let mut m = Map::new();
                    m.insert("slope".into(), Dynamic::from_float(slope));
                    m.insert("intercept".into(), Dynamic::from_float(intercept));
                    Dynamic::from_map(m)
                }
            })
        },
    );
}
