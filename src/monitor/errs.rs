//! Errors with positions: the collector every section parser reports into, so one file
//! yields all its errors at once, each with its line and dotted field name.

use super::raw::Dur;
use super::MonitorError;
use crate::model::time::parse_duration;
use std::fmt;
use std::path::Path;
use toml::Spanned;

/// Collects errors with positions for one file.
pub(super) struct Errs<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
    pub(super) list: Vec<MonitorError>,
}

impl Errs<'_> {
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }
    pub(super) fn at(&mut self, span: std::ops::Range<usize>, field: &str, message: String) {
        let line = self.line_of(span.start);
        self.list.push(MonitorError {
            file: self.file.to_path_buf(),
            line,
            field: field.to_string(),
            message,
        });
    }
    pub(super) fn bad<T: fmt::Debug>(&mut self, v: &Spanned<T>, field: &str, why: &str) {
        let short = field.rsplit('.').next().unwrap_or(field);
        self.at(
            v.span(),
            field,
            format!("{short} = {:?}: {why}", v.get_ref()),
        );
    }
    pub(super) fn duration(&mut self, v: &Option<Spanned<Dur>>, field: &str, default: i64) -> i64 {
        match v {
            None => default,
            Some(s) => match parse_duration(&s.get_ref().0) {
                Ok(d) => d,
                Err(e) => {
                    self.bad(s, field, &e);
                    default
                }
            },
        }
    }
}

/// The dotted name of the key set on `line` (1-based), from the `[section]` above it.
pub(super) fn field_at(text: &str, line: usize) -> Option<String> {
    let mut section = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') && t.ends_with(']') && !t.starts_with("[[") {
            section = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        if i + 1 == line {
            let (key, _) = t.split_once('=')?;
            let key = key.trim().trim_matches('"');
            if key.is_empty() || key.contains(' ') {
                return None;
            }
            return Some(if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            });
        }
    }
    None
}
