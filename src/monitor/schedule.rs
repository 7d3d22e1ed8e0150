//! When a monitor runs ([`Schedule`]), and crontab expressions ([`Cron`]) as users write them:
//! 5 fields (minute first) or 6 (seconds first), weekdays numbered as crontab numbers them.

use std::fmt;
use std::str::FromStr;

/// When a monitor runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// every N seconds, on multiples of N since the Unix epoch (crontab-like boundaries)
    Every(i64),
    /// a crontab expression (UTC)
    Cron {
        /// the expression as written
        expr: String,
        /// the parsed schedule (6/7-field form)
        schedule: Box<cron::Schedule>,
    },
    /// only on demand
    Manual,
}

impl Schedule {
    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match self {
            Schedule::Every(n) => Some((t.div_euclid(*n) + 1) * n),
            Schedule::Cron { schedule, .. } => {
                let dt = chrono::DateTime::from_timestamp(t, 0)?;
                schedule.after(&dt).next().map(|d| d.timestamp())
            }
            Schedule::Manual => None,
        }
    }

    /// The latest scheduled time at or before `t`.
    pub fn latest_at_or_before(&self, t: i64) -> Option<i64> {
        match self {
            Schedule::Every(n) => Some(t.div_euclid(*n) * n),
            Schedule::Cron { schedule, .. } => {
                let dt = chrono::DateTime::from_timestamp(t + 1, 0)?;
                // cron iterates backwards with `rev()` on `after`'s counterpart.
                schedule
                    .after(&dt)
                    .next_back()
                    .map(|d| d.timestamp())
                    .filter(|x| *x <= t)
            }
            Schedule::Manual => None,
        }
    }

    /// Every scheduled time in `[from, to]`, ascending.
    pub fn ticks(&self, from: i64, to: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut t = from - 1;
        while let Some(n) = self.next_after(t) {
            if n > to {
                break;
            }
            out.push(n);
            t = n;
        }
        out
    }
}

/// A parsed crontab expression with the text it came from; deserialises from that text.
#[derive(Clone)]
pub struct Cron {
    /// the expression as written
    pub expr: String,
    /// the parsed schedule (6/7-field form)
    pub schedule: Box<cron::Schedule>,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.expr)
    }
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.expr == other.expr
    }
}

impl FromStr for Cron {
    type Err = String;
    fn from_str(expr: &str) -> Result<Cron, String> {
        Ok(Cron {
            expr: expr.to_string(),
            schedule: Box::new(parse_cron(expr)?),
        })
    }
}

impl<'de> serde::Deserialize<'de> for Cron {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("cron {s:?}: {e}")))
    }
}

impl Cron {
    /// The latest start at or before `t`.
    pub fn latest_at_or_before(&self, t: i64) -> Option<i64> {
        let dt = chrono::DateTime::from_timestamp(t + 1, 0)?;
        self.schedule
            .after(&dt)
            .next_back()
            .map(|d| d.timestamp())
            .filter(|x| *x <= t)
    }
}

/// Parses a crontab expression: 5 fields (minute first) or 6 with seconds first. Day of week
/// uses crontab numbering (0 or 7 = Sunday).
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let mut fields: Vec<String> = match fields.len() {
        5 => std::iter::once("0").chain(fields.iter().copied()).map(String::from).collect(),
        6 => fields.iter().map(|s| s.to_string()).collect(),
        n => {
            return Err(format!(
                "expected 5 fields (min hour day month weekday) or 6 (sec min hour day month weekday), found {n}"
            ))
        }
    };
    // The cron crate numbers weekdays 1-7 from Sunday; crontab numbers them 0-7 with 0 and 7
    // both Sunday. Names mean the same in both, so numbers are turned into names.
    fields[5] = weekday_names(&fields[5])?;
    cron::Schedule::from_str(&fields.join(" ")).map_err(|e| format!("bad cron expression: {e}"))
}

fn weekday_names(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let mut out = String::new();
    let mut num = String::new();
    let mut after_slash = false;
    let flush = |num: &mut String, out: &mut String, after_slash: bool| -> Result<(), String> {
        if num.is_empty() {
            return Ok(());
        }
        if after_slash {
            out.push_str(num);
        } else {
            let n: usize = num.parse().map_err(|_| format!("bad weekday {num:?}"))?;
            let name = NAMES
                .get(n)
                .ok_or_else(|| format!("weekday {n} out of range: expected 0-7 or SUN-SAT"))?;
            out.push_str(name);
        }
        num.clear();
        Ok(())
    };
    for c in field.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            flush(&mut num, &mut out, after_slash)?;
            after_slash = c == '/';
            out.push(c);
        }
    }
    flush(&mut num, &mut out, after_slash)?;
    Ok(out)
}
