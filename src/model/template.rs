//! Title and message templates (`{{ name }}` placeholders) and how values are shown in them.

use serde_json::{Map, Value};

/// Formats a value as `df_monitor_checker_value` and templates show it: `95`, `95.5`.
pub fn format_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.is_finite() {
        // Trim float noise such as 0.30000000000000004 to a readable width.
        let s = format!("{:.6}", v);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v}")
    }
}

/// Renders `{{ name }}` placeholders from `vars`; unknown names render as empty strings.
pub fn render_template(template: &str, vars: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let name = after[..close].trim();
                if let Some(v) = vars.get(name) {
                    match v {
                        Value::String(s) => out.push_str(s),
                        Value::Null => {}
                        other => out.push_str(&other.to_string()),
                    }
                }
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks that a template's placeholders are well formed (`{{` closed by `}}`).
pub fn validate_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                if after[..close].trim().is_empty() {
                    return Err(
                        "empty placeholder {{ }}: expected a tag name, Result or a df_ field"
                            .into(),
                    );
                }
                rest = &after[close + 2..];
            }
            None => return Err("unclosed placeholder: \"{{\" without \"}}\"".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let mut m = Map::new();
        m.insert("host".into(), "web01".into());
        m.insert("Result".into(), "95".into());
        m.insert("df_status".into(), "critical".into());
        assert_eq!(
            render_template(
                "{{ host }}: CPU {{Result}}% [{{ df_status }}] {{ nope }}!",
                &m
            ),
            "web01: CPU 95% [critical] !"
        );
        assert_eq!(render_template("a {{ b", &m), "a {{ b");
        assert!(validate_template("{{ host }}").is_ok());
        assert!(validate_template("{{ host").is_err());
        assert!(validate_template("{{ }}").is_err());
    }

    #[test]
    fn values() {
        assert_eq!(format_value(95.0), "95");
        assert_eq!(format_value(95.5), "95.5");
        assert_eq!(format_value(0.1 + 0.2), "0.3");
    }
}
