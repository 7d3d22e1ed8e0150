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

/// Formats Unix seconds as RFC 3339 UTC.
pub fn format_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
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

    #[test]
    fn times() {
        assert_eq!(parse_time("1714557600"), Ok(1_714_557_600));
        assert_eq!(parse_time("2024-05-01T10:00:00Z"), Ok(1_714_557_600));
        assert_eq!(parse_time("2024-05-01T12:00:00+02:00"), Ok(1_714_557_600));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(format_time(1_714_557_600), "2024-05-01T10:00:00Z");
    }
}
