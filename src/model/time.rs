//! Durations (`"5m"`) and time points (RFC 3339 or Unix seconds) as users write them.

/// Parses a duration such as `"90s"`, `"5m"`, `"1h30m"`, `"1d"`, `"0s"` into seconds.
/// A bare integer is seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration: expected e.g. \"30s\", \"5m\", \"1h\", \"1d\"".into());
    }
    if let Ok(n) = t.parse::<i64>() {
        if n < 0 {
            return Err(format!("negative duration {t:?}"));
        }
        return Ok(n);
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    let bytes: Vec<char> = t.chars().collect();
    let mut i = 0;
    let mut seen_unit = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() {
            num.push(c);
            i += 1;
            continue;
        }
        let mut unit = String::new();
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            unit.push(bytes[i]);
            i += 1;
        }
        if num.is_empty() || unit.is_empty() {
            return Err(format!(
                "bad duration {t:?}: expected a number followed by s, m, h, d or w (e.g. \"5m\")"
            ));
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("bad duration {t:?}: number too large"))?;
        let mult = match unit.as_str() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => {
                return Err(format!(
                    "bad duration {t:?}: unknown unit {unit:?}, expected s, m, h, d or w"
                ))
            }
        };
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("bad duration {t:?}: too large"))?;
        num.clear();
        seen_unit = true;
    }
    if !num.is_empty() || !seen_unit {
        return Err(format!(
            "bad duration {t:?}: a number needs a unit (s, m, h, d or w)"
        ));
    }
    Ok(total)
}

/// Formats seconds as a compact duration (`"1h30m"`, `"0s"`).
pub fn format_duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs.abs();
    if secs < 0 {
        out.push('-');
    }
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{}", rest / size, unit));
            rest %= size;
        }
    }
    out
}

/// Parses a time point: RFC 3339 (`2024-05-01T10:00:00Z`) or Unix seconds (`1714557600`).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Ok(n);
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp())
        .map_err(|e| {
            format!("bad time {t:?}: {e}; expected RFC 3339 (2024-05-01T10:00:00Z) or Unix seconds")
        })
}

/// Like [`parse_time`], and also a time relative to `now`: `1h`, `30m`, `2d` (that long ago,
/// any duration [`parse_duration`] reads), `1h ago` or `-1h` alike.
pub fn parse_time_or_ago(s: &str, now: i64) -> Result<i64, String> {
    let t = s.trim();
    let (rel, marked) = match t.strip_suffix("ago").or_else(|| t.strip_prefix('-')) {
        Some(r) => (r.trim(), true),
        None => (t, false),
    };
    // A bare integer is Unix seconds; with a unit or marked as ago, it is a duration.
    if marked || rel.chars().any(|c| c.is_ascii_alphabetic()) {
        if let Ok(d) = parse_duration(rel) {
            return Ok(now - d);
        }
    }
    parse_time(t).map_err(|_| {
        format!(
            "bad time {t:?}: expected RFC 3339 (2024-05-01T10:00:00Z), Unix seconds, or a time \
             ago such as 1h, 30m, 2d"
        )
    })
}

#[cfg(test)]
mod ago_tests {
    use super::*;

    #[test]
    fn times_ago_and_absolute_times() {
        let now = 1_714_557_600;
        assert_eq!(parse_time_or_ago("1h", now), Ok(now - 3600));
        assert_eq!(parse_time_or_ago("30m ago", now), Ok(now - 1800));
        assert_eq!(parse_time_or_ago("-2d", now), Ok(now - 2 * 86_400));
        assert_eq!(parse_time_or_ago("1714550000", now), Ok(1_714_550_000));
        assert_eq!(
            parse_time_or_ago("2024-05-01T10:00:00Z", now),
            Ok(1_714_557_600)
        );
        let e = parse_time_or_ago("yesterday", now).unwrap_err();
        assert!(e.contains("1h, 30m, 2d"), "{e}");
    }
}

/// Formats Unix seconds as RFC 3339 UTC.
pub fn format_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// A non-negative length of time in seconds, read from config as `"5m"` or an integer.
///
/// Deserialising parses once with [`parse_duration`], so a bad value is refused at load with
/// the line it is on, and users of the config never parse again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub i64);

impl Seconds {
    /// The number of seconds.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::str::FromStr for Seconds {
    type Err = String;
    fn from_str(s: &str) -> Result<Seconds, String> {
        parse_duration(s).map(Seconds)
    }
}

impl<'de> serde::Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\", \"1h\", or a number of seconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Seconds, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
                if v < 0 {
                    return Err(E::custom(format!("negative duration {v}")));
                }
                Ok(Seconds(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                i64::try_from(v)
                    .map(Seconds)
                    .map_err(|_| E::custom(format!("duration {v} is too large")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A point in time as Unix seconds, read from config as RFC 3339 or an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a time such as \"2024-05-01T10:00:00Z\" or Unix seconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                parse_time(v).map(Timestamp).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5").is_err());
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(0), "0s");
    }

    #[derive(serde::Deserialize)]
    struct D {
        d: Seconds,
    }

    #[test]
    fn seconds_deserialise_from_text_and_integers() {
        let d: D = toml::from_str("d = \"1h30m\"").unwrap();
        assert_eq!(d.d, Seconds(5400));
        let d: D = toml::from_str("d = 90").unwrap();
        assert_eq!(d.d, Seconds(90));
        let e = toml::from_str::<D>("d = \"5x\"").err().unwrap();
        assert!(e.message().contains("unknown unit \"x\""), "{e}");
        assert!(toml::from_str::<D>("d = -5").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1714557600"), Ok(1_714_557_600));
        assert_eq!(parse_time("2024-05-01T10:00:00Z"), Ok(1_714_557_600));
        assert_eq!(parse_time("2024-05-01T12:00:00+02:00"), Ok(1_714_557_600));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(format_time(1_714_557_600), "2024-05-01T10:00:00Z");
    }
}
