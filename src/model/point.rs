//! A metric point as every writer produces it (line protocol, host input, replay files) and
//! the store keeps it: measurement, sorted tags, typed fields, a nanosecond time.

use std::borrow::Cow;

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

/// A point whose names and tag values borrow from the body it was parsed from (owned only
/// where escapes had to be removed): writing a parsed body then allocates two vectors a point
/// instead of a string for every name and value.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRef<'a> {
    /// Measurement name, unescaped.
    pub measurement: Cow<'a, str>,
    /// Tags sorted by key, unescaped.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Fields in input order, unescaped.
    pub fields: Vec<(Cow<'a, str>, FieldValue)>,
    /// Timestamp in nanoseconds since the Unix epoch.
    pub time: i64,
}

impl PointRef<'_> {
    /// The point with its own copies of every string.
    pub fn into_owned(self) -> Point {
        Point {
            measurement: self.measurement.into_owned(),
            tags: self
                .tags
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v))
                .collect(),
            time: self.time,
        }
    }
}

/// What the store reads of a point: [`Point`] or [`PointRef`].
pub trait PointLike {
    /// The string type of names and tag values.
    type Str: AsRef<str> + Clone;
    /// Measurement name.
    fn measurement(&self) -> &str;
    /// Tags (sorted by key when parsed; the store normalizes them anyway).
    fn tags(&self) -> &[(Self::Str, Self::Str)];
    /// Fields in input order.
    fn fields(&self) -> &[(Self::Str, FieldValue)];
    /// Timestamp, ns.
    fn time(&self) -> i64;
}

impl PointLike for Point {
    type Str = String;
    fn measurement(&self) -> &str {
        &self.measurement
    }
    fn tags(&self) -> &[(String, String)] {
        &self.tags
    }
    fn fields(&self) -> &[(String, FieldValue)] {
        &self.fields
    }
    fn time(&self) -> i64 {
        self.time
    }
}

impl<'a> PointLike for PointRef<'a> {
    type Str = Cow<'a, str>;
    fn measurement(&self) -> &str {
        &self.measurement
    }
    fn tags(&self) -> &[(Cow<'a, str>, Cow<'a, str>)] {
        &self.tags
    }
    fn fields(&self) -> &[(Cow<'a, str>, FieldValue)] {
        &self.fields
    }
    fn time(&self) -> i64 {
        self.time
    }
}
