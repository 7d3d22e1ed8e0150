//! InfluxDB line protocol parsing.
//!
//! Parses the full grammar (escapes, string fields, `i`/`u` integers, booleans, exponents,
//! optional timestamps, precisions, comments, CRLF) into [`Point`]s. Errors name the line and
//! column where the input went wrong.

use std::fmt;

/// A field value with its line-protocol type kept.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `1.5`, `1e3`, `1`
    Float(f64),
    /// `1i`
    Int(i64),
    /// `1u`
    UInt(u64),
    /// `"text"`
    Str(String),
    /// `t`, `true`, `F`, ...
    Bool(bool),
}

impl FieldValue {
    /// The value as a number for metric queries; strings have none, booleans are 0/1.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            FieldValue::Float(v) => Some(*v),
            FieldValue::Int(v) => Some(*v as f64),
            FieldValue::UInt(v) => Some(*v as f64),
            FieldValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            FieldValue::Str(_) => None,
        }
    }
}

/// One parsed point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Measurement name, unescaped.
    pub measurement: String,
    /// Tags sorted by key, unescaped.
    pub tags: Vec<(String, String)>,
    /// Fields in input order, unescaped.
    pub fields: Vec<(String, FieldValue)>,
    /// Timestamp in nanoseconds since the Unix epoch.
    pub time: i64,
}

/// Timestamp precision of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// nanoseconds (default)
    #[default]
    Nanos,
    /// microseconds
    Micros,
    /// milliseconds
    Millis,
    /// seconds
    Seconds,
    /// minutes
    Minutes,
    /// hours
    Hours,
}

impl Precision {
    /// Parses `n`/`ns`, `u`/`us`/`µs`, `ms`, `s`, `m`, `h`.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "n" | "ns" => Precision::Nanos,
            "u" | "us" | "µs" => Precision::Micros,
            "ms" => Precision::Millis,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    /// Nanoseconds per unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanos => 1,
            Precision::Micros => 1_000,
            Precision::Millis => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }
}

/// A parse error with its position (1-based line and column, in bytes).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based byte column.
    pub column: usize,
    /// What was wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}: {}", self.line, self.column, self.message)
    }
}

/// Parses a whole body. A point without a timestamp gets `default_time` (ns).
/// Any bad line fails the whole body.
pub fn parse(
    input: &[u8],
    precision: Precision,
    default_time: i64,
) -> Result<Vec<Point>, ParseError> {
    let _ = (input, precision, default_time);
    todo!("lineproto::parse")
}
