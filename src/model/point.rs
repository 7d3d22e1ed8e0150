//! A metric point as every writer produces it (line protocol, host input, replay files) and
//! the store keeps it: measurement, sorted tags, typed fields, a nanosecond time.

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
