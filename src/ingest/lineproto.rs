//! InfluxDB line protocol parsing.
//!
//! Parses the full grammar (escapes, string fields, `i`/`u` integers, booleans, exponents,
//! optional timestamps, precisions, comments, CRLF) into [`Point`]s. Errors name the line and
//! column where the input went wrong.
//!
//! The accepted language is that of InfluxData's reference decoder (`line-protocol/v2`), and
//! `tests/lineproto_corpus.rs` checks agreement with its conformance corpus:
//!
//! - `measurement[,tag=value...] field=value[,field=value...] [timestamp]`, one point per
//!   line; sections are separated by one or more spaces (not tabs). Lines may end in `\n`,
//!   `\r\n`, or a final `\r` at the end of input. Blank lines, lines of spaces and `#` comment
//!   lines (printable characters only) are skipped; leading spaces before a point are allowed.
//! - Escapes: `\ ` and `\,` in measurements; `\ `, `\,` and `\=` in tag keys, tag values and
//!   field keys; `\"` and `\\` in string values. A backslash before anything else (or at the
//!   end of input) is kept as is. Control characters are not allowed in measurements and keys,
//!   but are in tag values and string values; string values may span lines.
//! - Values: floats (`1`, `-1.5`, `.5`, `5.`, `1e3`, `1.5E-3`, and, like Go's `ParseFloat`,
//!   `1_000` and hexadecimal `0x1p3`; no leading `+`, no NaN or infinities, no overflow), `1i`
//!   (i64), `1u` (u64), `"strings"`, booleans `t T true True TRUE f F false False FALSE`.
//! - Tags are returned sorted by key; a repeated tag key is an error. Repeated field keys are
//!   kept as written.
//! - Timestamps are optional (possibly negative) integers in the given [`Precision`], converted
//!   to nanoseconds with overflow checks. Points without one get `default_time` unchanged.
//! - All text must be UTF-8 (comments excepted). Any bad line fails the whole body.

use std::fmt;

use super::limits::PointLimits;

pub use crate::model::point::{FieldValue, Point, PointRef};
use std::borrow::Cow;

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
/// Any bad line fails the whole body. This is the bare grammar, without bounds on the number
/// of fields or tags or on the time; ingest uses [`parse_with_limits`].
pub fn parse(
    input: &[u8],
    precision: Precision,
    default_time: i64,
) -> Result<Vec<Point>, ParseError> {
    parse_with_limits(input, precision, default_time, &PointLimits::NONE)
}

/// [`parse`], also refusing a point with more fields or tags than `limits` allow, or with an
/// explicit timestamp outside its time range; the error names the line and column of the
/// first field or tag past the limit, or of the timestamp.
pub fn parse_with_limits(
    input: &[u8],
    precision: Precision,
    default_time: i64,
    limits: &PointLimits,
) -> Result<Vec<Point>, ParseError> {
    parse_all(input, precision, default_time, limits, PointRef::into_owned)
}

/// [`parse_with_limits`] into points that borrow their strings from `input` (the ingest path:
/// no allocation per name or tag value).
pub fn parse_refs_with_limits<'a>(
    input: &'a [u8],
    precision: Precision,
    default_time: i64,
    limits: &PointLimits,
) -> Result<Vec<PointRef<'a>>, ParseError> {
    parse_all(input, precision, default_time, limits, |p| p)
}

/// Every point of `input`, each turned into what the caller keeps by `keep`.
fn parse_all<'a, T>(
    input: &'a [u8],
    precision: Precision,
    default_time: i64,
    limits: &PointLimits,
    keep: impl Fn(PointRef<'a>) -> T,
) -> Result<Vec<T>, ParseError> {
    let mut parser = Parser::new(input, precision, default_time, *limits);
    // Every point ends with a newline except possibly the last, so this bounds the count.
    let mut points = Vec::with_capacity(count_newlines(input) + 1);
    loop {
        parser.skip_blank_and_comments()?;
        if parser.at_end() {
            break;
        }
        points.push(keep(parser.point()?));
    }
    Ok(points)
}

/// The number of `\n` bytes in `input`.
pub(crate) fn count_newlines(input: &[u8]) -> usize {
    // Byte-wide counters over chunks that cannot overflow them vectorise well.
    input
        .chunks(255)
        .map(|chunk| usize::from(chunk.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n'))))
        .sum()
}

// Byte classes, one bit each, looked up in `CLASS`.
/// Allowed unescaped in a measurement: not `,`, space or a control character.
const C_MEAS: u8 = 1;
/// Allowed unescaped in a tag key or field key: not `,`, `=`, space, CR, LF or a control character.
const C_KEY: u8 = 2;
/// Allowed unescaped in a tag value: not `,`, `=`, space, CR or LF.
const C_TAG_VALUE: u8 = 4;
/// Part of an unquoted field value token: anything up to `,`, space, CR or LF.
const C_FIELD_VALUE: u8 = 8;
/// Escapable after `\` in a measurement: space and `,`.
const E_MEAS: u8 = 16;
/// Escapable after `\` in keys and tag values: space, `,` and `=`.
const E_KEY: u8 = 32;
/// Line-protocol white space: space, CR, LF.
const C_WS: u8 = 64;

static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let control = c < 0x20 || c == 0x7f;
        let ws = c == b' ' || c == b'\r' || c == b'\n';
        let mut v = 0;
        if !(c == b',' || c == b' ' || control) {
            v |= C_MEAS;
        }
        if !(c == b',' || c == b'=' || ws || control) {
            v |= C_KEY;
        }
        if !(c == b',' || c == b'=' || ws) {
            v |= C_TAG_VALUE;
        }
        if !(c == b',' || ws) {
            v |= C_FIELD_VALUE;
        }
        if c == b' ' || c == b',' {
            v |= E_MEAS;
        }
        if c == b' ' || c == b',' || c == b'=' {
            v |= E_KEY;
        }
        if ws {
            v |= C_WS;
        }
        table[i] = v;
        i += 1;
    }
    table
}

#[inline(always)]
fn class(c: u8) -> u8 {
    CLASS[c as usize]
}

/// Shows a byte (or the end of input) for an error message.
fn describe(c: Option<u8>) -> String {
    match c {
        None => "end of input".to_string(),
        Some(b'\n') => "end of line".to_string(),
        Some(b'\r') => "carriage return".to_string(),
        Some(b' ') => "space".to_string(),
        Some(b'\t') => "tab".to_string(),
        Some(c) if (0x21..0x7f).contains(&c) => format!("'{}'", c as char),
        Some(c) => format!("byte 0x{c:02x}"),
    }
}

/// Shows a token (possibly cut short) for an error message.
fn show(token: &[u8]) -> String {
    const MAX: usize = 40;
    let s = String::from_utf8_lossy(&token[..token.len().min(MAX)]);
    if token.len() > MAX {
        format!("{s:?}...")
    } else {
        format!("{s:?}")
    }
}

struct Parser<'a> {
    buf: &'a [u8],
    /// The whole input as text when it is valid UTF-8 (the usual case): tokens are then
    /// sliced from it without checking each one. Token boundaries are always ASCII bytes
    /// (or the ends), so they are character boundaries.
    text: Option<&'a str>,
    pos: usize,
    precision: Precision,
    default_time: i64,
    limits: PointLimits,
    /// Tag and field counts of the previous point, used as capacity hints.
    last_tags: usize,
    last_fields: usize,
}

impl<'a> Parser<'a> {
    fn new(buf: &'a [u8], precision: Precision, default_time: i64, limits: PointLimits) -> Self {
        Parser {
            buf,
            text: std::str::from_utf8(buf).ok(),
            pos: 0,
            precision,
            default_time,
            limits,
            last_tags: 0,
            last_fields: 1,
        }
    }

    #[inline(always)]
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Builds an error at byte offset `pos`, computing its line and column.
    #[cold]
    fn error_at(&self, pos: usize, message: String) -> ParseError {
        let before = &self.buf[..pos.min(self.buf.len())];
        let line = 1 + count_newlines(before);
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        ParseError {
            line,
            column: before.len() - line_start + 1,
            message,
        }
    }

    /// An error at the current position naming what was found there.
    #[cold]
    fn unexpected(&self, expected: &str) -> ParseError {
        self.error_at(
            self.pos,
            format!("found {}, expected {expected}", describe(self.peek())),
        )
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Consumes an end of line (`\n`, `\r\n`, or `\r` at the end of input) or the end of
    /// input itself; reports whether there was one.
    fn take_eol(&mut self) -> bool {
        match self.peek() {
            None => true,
            Some(b'\n') => {
                self.pos += 1;
                true
            }
            Some(b'\r') => match self.buf.get(self.pos + 1) {
                None => {
                    self.pos += 1;
                    true
                }
                Some(b'\n') => {
                    self.pos += 2;
                    true
                }
                Some(_) => false,
            },
            Some(_) => false,
        }
    }

    /// Skips blank lines (empty or spaces only) and `#` comment lines. A comment may only
    /// hold printable characters.
    fn skip_blank_and_comments(&mut self) -> Result<(), ParseError> {
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(b'#') => {
                    while let Some(c) = self.peek() {
                        if c < 0x20 || c == 0x7f {
                            break;
                        }
                        self.pos += 1;
                    }
                    if !self.take_eol() {
                        return Err(
                            self.unexpected("a printable character or end of line in comment")
                        );
                    }
                }
                Some(b'\n') => self.pos += 1,
                Some(b'\r') => {
                    if !self.take_eol() {
                        return Err(self.unexpected("end of line after carriage return"));
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Scans a token of bytes in `allowed`, where `\` followed by a byte in `escapable`
    /// stands for that byte, and any other `\` is kept as is. Returns the end of the raw
    /// token and whether it holds escapes.
    #[inline(always)]
    fn scan_escaped(&self, allowed: u8, escapable: u8) -> (usize, bool) {
        let buf = self.buf;
        let mut i = self.pos;
        let mut escaped = false;
        while i < buf.len() {
            let c = buf[i];
            if c == b'\\' {
                match buf.get(i + 1) {
                    Some(&n) if class(n) & escapable != 0 => {
                        escaped = true;
                        i += 2;
                    }
                    _ => i += 1,
                }
            } else if class(c) & allowed != 0 {
                i += 1;
            } else {
                break;
            }
        }
        (i, escaped)
    }

    /// Takes an escaped token (see `scan_escaped`) and returns it unescaped with its start.
    #[inline]
    fn take_escaped(
        &mut self,
        allowed: u8,
        escapable: u8,
    ) -> Result<(Cow<'a, str>, usize), ParseError> {
        let start = self.pos;
        let (end, escaped) = self.scan_escaped(allowed, escapable);
        self.pos = end;
        let raw = &self.buf[start..end];
        let text = self.utf8(raw, start)?;
        if !escaped {
            return Ok((Cow::Borrowed(text), start));
        }
        let mut out = String::with_capacity(raw.len());
        let mut chunk = 0;
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\' && i + 1 < raw.len() && class(raw[i + 1]) & escapable != 0 {
                out.push_str(&text[chunk..i]);
                chunk = i + 1;
                i += 2;
            } else {
                i += 1;
            }
        }
        out.push_str(&text[chunk..]);
        Ok((Cow::Owned(out), start))
    }

    /// Checks that a token (`raw`, starting at byte `start`) is UTF-8. Removing escaping
    /// backslashes before ASCII bytes never changes that, so raw tokens are checked.
    #[inline(always)]
    fn utf8(&self, raw: &'a [u8], start: usize) -> Result<&'a str, ParseError> {
        if let Some(token) = self.text.and_then(|t| t.get(start..start + raw.len())) {
            return Ok(token);
        }
        std::str::from_utf8(raw).map_err(|e| {
            self.error_at(
                start + e.valid_up_to(),
                format!("invalid UTF-8 in {}, expected UTF-8 text", show(raw)),
            )
        })
    }

    /// Parses one point; the position is at its first byte (not blank, not a comment).
    fn point(&mut self) -> Result<PointRef<'a>, ParseError> {
        // Measurement.
        let (measurement, _) = self.take_escaped(C_MEAS, E_MEAS)?;
        if measurement.is_empty() {
            return Err(self.unexpected("a measurement name"));
        }
        if self.peek() == Some(b',') {
            self.pos += 1;
            match self.peek() {
                Some(c) if class(c) & C_WS == 0 => {}
                _ => return Err(self.unexpected("a tag key after ','")),
            }
        }

        // Tags.
        let mut tags: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::with_capacity(self.last_tags);
        loop {
            if self.peek() == Some(b' ') {
                self.skip_spaces();
                break;
            }
            let key_start = self.pos;
            if let Some(e) = self.limits.tags_error(tags.len() + 1) {
                return Err(self.error_at(key_start, e));
            }
            let (key, _) = self.take_escaped(C_KEY, E_KEY)?;
            if key.is_empty() {
                return Err(self.unexpected(if tags.is_empty() {
                    "a tag key or a space before the fields"
                } else {
                    "a space before the fields"
                }));
            }
            if self.peek() != Some(b'=') {
                return Err(self.unexpected(&format!("'=' after tag key {key:?}")));
            }
            self.pos += 1;
            let (value, _) = self.take_escaped(C_TAG_VALUE, E_KEY)?;
            if value.is_empty() {
                return Err(self.unexpected(&format!("a value for tag key {key:?}")));
            }
            tags.push((key, value));
            match self.peek() {
                None => break,
                Some(b',') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) if class(c) & C_WS == 0 => {}
                        _ => return Err(self.unexpected("a tag key after ','")),
                    }
                }
                // A space ends the tags; anything else is reported on the next turn.
                Some(_) => {}
            }
        }
        let tags_end = self.pos;
        self.last_tags = tags.len();
        sort_tags(&mut tags).map_err(|key| {
            // Point at the second occurrence is not tracked; name the key instead.
            self.error_at(
                tags_end,
                format!("duplicate tag key {key:?}, expected each tag key once per point"),
            )
        })?;

        // Fields.
        let mut fields: Vec<(Cow<'a, str>, FieldValue)> = Vec::with_capacity(self.last_fields);
        let has_time = loop {
            let key_start = self.pos;
            if let Some(e) = self.limits.fields_error(fields.len() + 1) {
                return Err(self.error_at(key_start, e));
            }
            let (key, _) = self.take_escaped(C_KEY, E_KEY)?;
            if key.is_empty() {
                return Err(self.unexpected("a field key"));
            }
            if self.peek() != Some(b'=') {
                return Err(self.unexpected(&format!("'=' after field key {key:?}")));
            }
            self.pos += 1;
            let value = self.field_value(&key)?;
            fields.push((key, value));
            match self.peek() {
                None => break false,
                Some(b',') => self.pos += 1,
                Some(c) if class(c) & C_WS != 0 => {
                    self.skip_spaces();
                    if self.take_eol() {
                        break false;
                    }
                    break true;
                }
                Some(_) => {
                    return Err(self.unexpected("',', a space or end of line after the field value"))
                }
            }
        };
        self.last_fields = fields.len();

        // Timestamp.
        let time = if has_time {
            self.timestamp()?
        } else {
            self.default_time
        };
        Ok(PointRef {
            measurement,
            tags,
            fields,
            time,
        })
    }

    /// Parses a field value; the position is just after the `=`.
    fn field_value(&mut self, key: &str) -> Result<FieldValue, ParseError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.string_value()
            }
            Some(b't' | b'T' | b'f' | b'F') => {
                let token = self.take_field_token();
                match token {
                    b"t" | b"T" | b"true" | b"True" | b"TRUE" => Ok(FieldValue::Bool(true)),
                    b"f" | b"F" | b"false" | b"False" | b"FALSE" => Ok(FieldValue::Bool(false)),
                    _ => Err(self.error_at(
                        start,
                        format!(
                            "invalid value {} for field {key:?}, expected a boolean \
                             (t, T, true, True, TRUE, f, F, false, False, FALSE)",
                            show(token)
                        ),
                    )),
                }
            }
            Some(b'-' | b'0'..=b'9' | b'.') => {
                let token = self.take_field_token();
                let (kind, result) = match token.split_last() {
                    Some((b'i', digits)) => (
                        "an integer (e.g. -12i)",
                        parse_i64(digits).map(FieldValue::Int),
                    ),
                    Some((b'u', digits)) => (
                        "an unsigned integer (e.g. 12u)",
                        parse_u64(digits).map(FieldValue::UInt),
                    ),
                    _ => (
                        "a float (e.g. -1.5e3)",
                        parse_f64(token).map(FieldValue::Float),
                    ),
                };
                result.map_err(|why| {
                    self.error_at(
                        start,
                        format!(
                            "invalid value {} for field {key:?} ({why}), expected {kind}",
                            show(token)
                        ),
                    )
                })
            }
            _ => Err(self.unexpected(&format!(
                "a value for field {key:?} (a number, a quoted string or a boolean)"
            ))),
        }
    }

    /// Takes an unquoted field value token (up to `,`, space, CR, LF or the end).
    #[inline(always)]
    fn take_field_token(&mut self) -> &'a [u8] {
        let start = self.pos;
        let buf = self.buf;
        let mut i = start;
        while i < buf.len() && class(buf[i]) & C_FIELD_VALUE != 0 {
            i += 1;
        }
        self.pos = i;
        &buf[start..i]
    }

    /// Parses a string field value after its opening quote. `\"` and `\\` are escapes; any
    /// other backslash is kept; raw newlines are allowed.
    fn string_value(&mut self) -> Result<FieldValue, ParseError> {
        let open = self.pos - 1;
        let buf = self.buf;
        let start = self.pos;
        let mut i = start;
        let mut escaped = false;
        loop {
            match buf.get(i) {
                None => {
                    return Err(self.error_at(
                        open,
                        "string field value has no closing quote, expected '\"'".to_string(),
                    ));
                }
                Some(b'"') => break,
                Some(b'\\') => match buf.get(i + 1) {
                    Some(b'"' | b'\\') => {
                        escaped = true;
                        i += 2;
                    }
                    _ => i += 1,
                },
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        let raw = &buf[start..i];
        let text = self.utf8(raw, start)?;
        if !escaped {
            return Ok(FieldValue::Str(text.to_owned()));
        }
        let mut out = String::with_capacity(raw.len());
        let mut chunk = 0;
        let mut j = 0;
        while j < raw.len() {
            if raw[j] == b'\\' && matches!(raw.get(j + 1), Some(b'"' | b'\\')) {
                out.push_str(&text[chunk..j]);
                chunk = j + 1;
                j += 2;
            } else {
                j += 1;
            }
        }
        out.push_str(&text[chunk..]);
        Ok(FieldValue::Str(out))
    }

    /// Parses the timestamp and the end of its line; the position is at its first byte.
    fn timestamp(&mut self) -> Result<i64, ParseError> {
        let start = self.pos;
        let buf = self.buf;
        let mut i = start;
        while i < buf.len() && (buf[i] == b'-' || buf[i].is_ascii_digit()) {
            i += 1;
        }
        self.pos = i;
        if i == start || !matches!(self.peek(), None | Some(b' ' | b'\r' | b'\n')) {
            let mut end = i;
            while end < buf.len() && buf[end] != b'\n' && buf[end] != b'\r' && buf[end] != b' ' {
                end += 1;
            }
            return Err(self.error_at(
                start,
                format!(
                    "invalid timestamp {}, expected an integer followed by end of line",
                    show(&buf[start..end])
                ),
            ));
        }
        let token = &buf[start..i];
        self.skip_spaces();
        if !self.take_eol() {
            return Err(self.unexpected("end of line after the timestamp"));
        }
        let ts = parse_i64(token).map_err(|why| {
            self.error_at(
                start,
                format!(
                    "invalid timestamp {} ({why}), expected a 64-bit integer",
                    show(token)
                ),
            )
        })?;
        let ns = ts.checked_mul(self.precision.nanos()).ok_or_else(|| {
            self.error_at(
                start,
                format!(
                    "timestamp {} overflows when converted to nanoseconds, expected a value within ±{} at precision {:?}",
                    show(token),
                    i64::MAX / self.precision.nanos(),
                    self.precision
                ),
            )
        })?;
        match self.limits.time_error(ns) {
            None => Ok(ns),
            Some(e) => Err(self.error_at(start, e)),
        }
    }
}

/// Sorts tags by key; on a duplicate key returns it.
fn sort_tags(tags: &mut [(Cow<'_, str>, Cow<'_, str>)]) -> Result<(), String> {
    if tags.windows(2).all(|w| w[0].0 < w[1].0) {
        return Ok(());
    }
    tags.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    match tags.windows(2).find(|w| w[0].0 == w[1].0) {
        Some(w) => Err(w[0].0.to_string()),
        None => Ok(()),
    }
}

/// Decimal `u64`: ASCII digits only, at least one.
fn parse_u64(digits: &[u8]) -> Result<u64, &'static str> {
    if digits.is_empty() {
        return Err("no digits");
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Err("not a decimal number");
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(c - b'0')))
            .ok_or("out of range")?;
    }
    Ok(v)
}

/// Decimal `i64` with an optional sign.
fn parse_i64(s: &[u8]) -> Result<i64, &'static str> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    let magnitude = parse_u64(digits)?;
    if neg {
        if magnitude <= i64::MAX as u64 + 1 {
            Ok((magnitude as i64).wrapping_neg())
        } else {
            Err("out of range")
        }
    } else {
        i64::try_from(magnitude).map_err(|_| "out of range")
    }
}

/// A float as InfluxData's line-protocol decoder accepts it (Go's `strconv.ParseFloat`):
/// optional sign, decimal digits with an optional point and an optional `e`/`E` exponent
/// (`1`, `-1.5`, `.5`, `5.`, `1e-3`, `1E+3`), or a hexadecimal mantissa with a mandatory
/// binary exponent (`0x1.8p3`); `_` may separate digits. Values that overflow, NaN and
/// infinities are rejected.
fn parse_f64(s: &[u8]) -> Result<f64, &'static str> {
    const SYNTAX: &str = "not a number";
    let mut i = 0;
    let neg = matches!(s.first(), Some(b'-'));
    if matches!(s.first(), Some(b'-' | b'+')) {
        i = 1;
    }
    let hex = i + 2 < s.len() && s[i] == b'0' && (s[i + 1] | 0x20) == b'x';
    let underscores = s.contains(&b'_');
    if underscores && !underscores_ok(s) {
        return Err(SYNTAX);
    }
    if hex {
        return parse_hex_f64(&s[i + 2..], neg).ok_or(SYNTAX).and_then(|v| {
            if v.is_infinite() {
                Err("out of range")
            } else {
                Ok(v)
            }
        });
    }
    // Decimal syntax check.
    let mut j = i;
    let mut digits = false;
    let mut dot = false;
    while j < s.len() {
        match s[j] {
            b'0'..=b'9' => digits = true,
            b'_' => {}
            b'.' if !dot => dot = true,
            _ => break,
        }
        j += 1;
    }
    if !digits {
        return Err(SYNTAX);
    }
    if j < s.len() {
        if s[j] | 0x20 != b'e' {
            return Err(SYNTAX);
        }
        j += 1;
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if !matches!(s.get(j), Some(b'0'..=b'9')) {
            return Err(SYNTAX);
        }
        while j < s.len() && (s[j].is_ascii_digit() || s[j] == b'_') {
            j += 1;
        }
        if j < s.len() {
            return Err(SYNTAX);
        }
    }
    // The syntax is a subset of what Rust's (correctly rounding) parser accepts.
    let v: f64 = if underscores {
        let clean: String = s
            .iter()
            .filter(|&&c| c != b'_')
            .map(|&c| c as char)
            .collect();
        clean.parse().map_err(|_| SYNTAX)?
    } else {
        // All bytes are ASCII here.
        std::str::from_utf8(s)
            .map_err(|_| SYNTAX)?
            .parse()
            .map_err(|_| SYNTAX)?
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err("out of range")
    }
}

/// Go's rule for `_` in numbers: only between digits, or between a base prefix and a digit.
fn underscores_ok(s: &[u8]) -> bool {
    let s = match s.first() {
        Some(b'-' | b'+') => &s[1..],
        _ => s,
    };
    let mut i = 0;
    let mut hex = false;
    // What came last: b'^' start, b'0' digit or prefix, b'_' underscore, b'!' other.
    let mut last = b'^';
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        last = b'0';
        hex = s[1] | 0x20 == b'x';
    }
    while i < s.len() {
        let c = s[i];
        if c.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&(c | 0x20))) {
            last = b'0';
        } else if c == b'_' {
            if last != b'0' {
                return false;
            }
            last = b'_';
        } else {
            if last == b'_' {
                return false;
            }
            last = b'!';
        }
        i += 1;
    }
    last != b'_'
}

/// Hexadecimal float body after `0x`: hex digits with an optional point, then a mandatory
/// `p` exponent; rounded to nearest, ties to even. `None` on bad syntax.
fn parse_hex_f64(s: &[u8], neg: bool) -> Option<f64> {
    let mut mantissa: u64 = 0;
    let mut sticky = false; // non-zero digits dropped below the mantissa
    let mut exp2: i64 = 0; // value = mantissa * 2^exp2
    let mut digits = false;
    let mut dot = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            b'_' => {
                i += 1;
                continue;
            }
            b'.' if !dot => {
                dot = true;
                i += 1;
                continue;
            }
            _ => break,
        };
        digits = true;
        if mantissa >> 60 == 0 {
            mantissa = mantissa << 4 | u64::from(d);
            if dot {
                exp2 -= 4;
            }
        } else {
            sticky |= d != 0;
            if !dot {
                exp2 += 4;
            }
        }
        i += 1;
    }
    if !digits || i >= s.len() || s[i] | 0x20 != b'p' {
        return None;
    }
    i += 1;
    let esign: i64 = match s.get(i) {
        Some(b'-') => {
            i += 1;
            -1
        }
        Some(b'+') => {
            i += 1;
            1
        }
        _ => 1,
    };
    if !matches!(s.get(i), Some(b'0'..=b'9')) {
        return None;
    }
    let mut e: i64 = 0;
    while i < s.len() {
        match s[i] {
            b'0'..=b'9' => e = (e * 10 + i64::from(s[i] - b'0')).min(1 << 20),
            b'_' => {}
            _ => return None,
        }
        i += 1;
    }
    exp2 += esign * e;
    let sign = if neg { 1u64 << 63 } else { 0 };
    if mantissa == 0 {
        return Some(f64::from_bits(sign));
    }
    // Normalise so the top bit is set: value = m * 2^(top - 63), top = exponent of the leading bit.
    let shift = mantissa.leading_zeros();
    let m = mantissa << shift;
    let top = exp2 + 63 - i64::from(shift);
    if top > 1023 {
        return Some(f64::from_bits(sign | 0x7ff << 52)); // infinity
    }
    // Bits kept: 53 for normal numbers, fewer for subnormals.
    let keep = if top >= -1022 { 53 } else { 53 - (-1022 - top) };
    if keep < 0 {
        return Some(f64::from_bits(sign)); // below half the smallest subnormal
    }
    let drop = (64 - keep) as u32; // 11..=64
    let (mut kept, rem, half) = if drop == 64 {
        (0u64, m, 1u64 << 63)
    } else {
        (m >> drop, m & ((1u64 << drop) - 1), 1u64 << (drop - 1))
    };
    if rem > half || (rem == half && (sticky || kept & 1 == 1)) {
        kept += 1;
    }
    let bits = if top >= -1022 {
        let (mut kept, mut top) = (kept, top);
        if kept >> 53 != 0 {
            kept >>= 1;
            top += 1;
        }
        if top > 1023 {
            return Some(f64::from_bits(sign | 0x7ff << 52));
        }
        ((top + 1023) as u64) << 52 | (kept & ((1u64 << 52) - 1))
    } else {
        // Subnormal: the exponent field is 0; a carry into bit 52 makes the smallest normal.
        kept
    };
    Some(f64::from_bits(sign | bits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use FieldValue::{Bool, Float, Int, Str, UInt};

    const DEFAULT: i64 = 42;

    /// The borrowing parser gives the same points, borrowing exactly the tokens without escapes.
    #[test]
    fn borrowed_points_match_owned_ones() {
        let input = "cpu,host=a,dc=x\\ 1 usage=1.5,n=2i,s=\"q\\\"\" 10\nm\\,x,k\\==v f\\ g=t\n";
        let limits = PointLimits::default();
        let refs = parse_refs_with_limits(input.as_bytes(), Precision::Nanos, 0, &limits).unwrap();
        let owned = parse_with_limits(input.as_bytes(), Precision::Nanos, 0, &limits).unwrap();
        assert_eq!(owned.len(), 2);
        let converted: Vec<Point> = refs.iter().cloned().map(PointRef::into_owned).collect();
        assert_eq!(converted, owned);
        assert!(matches!(refs[0].measurement, Cow::Borrowed("cpu")));
        assert!(matches!(refs[0].tags[0].1, Cow::Owned(ref v) if v == "x 1"));
        assert!(matches!(refs[0].fields[0].0, Cow::Borrowed("usage")));
        assert!(matches!(refs[1].measurement, Cow::Owned(ref m) if m == "m,x"));
        assert!(matches!(refs[1].fields[0].0, Cow::Owned(ref f) if f == "f g"));
    }

    fn one(input: &str) -> Point {
        let mut points = parse(input.as_bytes(), Precision::Nanos, DEFAULT)
            .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
        assert_eq!(points.len(), 1, "{input:?}");
        points.pop().unwrap()
    }

    fn err(input: &[u8]) -> ParseError {
        match parse(input, Precision::Nanos, DEFAULT) {
            Ok(points) => panic!(
                "{:?} should fail, got {points:?}",
                String::from_utf8_lossy(input)
            ),
            Err(e) => e,
        }
    }

    /// Asserts the error's line and column.
    fn err_at(input: &str, line: usize, column: usize) -> ParseError {
        let e = err(input.as_bytes());
        assert_eq!((e.line, e.column), (line, column), "{input:?}: {e}");
        e
    }

    fn value(v: &str) -> FieldValue {
        one(&format!("m f={v}")).fields.remove(0).1
    }

    fn tags(p: &Point) -> Vec<(&str, &str)> {
        p.tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn basic_point() {
        let p =
            one("cpu,host=a,region=west usage=0.5,count=3i,ok=t,name=\"x\" 1700000000000000000");
        assert_eq!(p.measurement, "cpu");
        assert_eq!(tags(&p), [("host", "a"), ("region", "west")]);
        assert_eq!(
            p.fields,
            [
                ("usage".to_string(), Float(0.5)),
                ("count".to_string(), Int(3)),
                ("ok".to_string(), Bool(true)),
                ("name".to_string(), Str("x".into())),
            ]
        );
        assert_eq!(p.time, 1_700_000_000_000_000_000);
    }

    #[test]
    fn tags_sorted_fields_in_input_order() {
        let p = one("m,z=1,a=2,m=3 z=1,a=2");
        assert_eq!(tags(&p), [("a", "2"), ("m", "3"), ("z", "1")]);
        assert_eq!(p.fields[0].0, "z");
        assert_eq!(p.fields[1].0, "a");
    }

    #[test]
    fn no_tags_and_missing_timestamp_uses_default() {
        let p = one("m v=1");
        assert!(p.tags.is_empty());
        assert_eq!(p.time, DEFAULT);
    }

    #[test]
    fn measurement_escapes() {
        assert_eq!(one(r"cpu\ load v=1").measurement, "cpu load");
        assert_eq!(one(r"cpu\,main,t=1 v=1").measurement, "cpu,main");
        // `=` and other escapes are not special in a measurement; the backslash stays.
        assert_eq!(one(r"cpu\=x v=1").measurement, r"cpu\=x");
        assert_eq!(one("cpu=load v=1").measurement, "cpu=load");
        assert_eq!(one(r"c\pu v=1").measurement, r"c\pu");
        // `\\ ` is a kept backslash followed by an escaped space.
        assert_eq!(one(r"a\\ b v=1").measurement, r"a\ b");
    }

    #[test]
    fn tag_escapes() {
        let p = one(r"m,ta\ g\,k\=y=v\ a\,l\=ue,t2=\, v=1");
        assert_eq!(tags(&p), [("t2", ","), ("ta g,k=y", "v a,l=ue")]);
        // Unknown escapes keep their backslash.
        assert_eq!(tags(&one(r"m,k=eas\t v=1")), [("k", r"eas\t")]);
        assert_eq!(tags(&one(r"m,k=two\\ words v=1")), [("k", r"two\ words")]);
        // Quotes are plain characters in tags.
        assert_eq!(tags(&one(r#"m,"k"="v" v=1"#)), [(r#""k""#, r#""v""#)]);
        // Control characters are allowed in tag values (not keys).
        assert_eq!(tags(&one("m,k=x\u{1}y v=1")), [("k", "x\u{1}y")]);
        err(b"m,x\x01y=v v=1");
    }

    #[test]
    fn field_key_escapes() {
        let p = one(r"m f\ o\,o\=x=1,\a=2");
        assert_eq!(p.fields[0].0, "f o,o=x");
        assert_eq!(p.fields[1].0, r"\a");
    }

    #[test]
    fn string_fields() {
        assert_eq!(value(r#""hello world""#), Str("hello world".into()));
        assert_eq!(value(r#""""#), Str(String::new()));
        assert_eq!(
            value(r#""a \"quoted\" word""#),
            Str(r#"a "quoted" word"#.into())
        );
        assert_eq!(value(r#""back\\slash""#), Str(r"back\slash".into()));
        assert_eq!(value(r#""test\\\"""#), Str(r#"test\""#.into()));
        // Other backslashes are kept as they are.
        assert_eq!(value(r#""\n\t\x""#), Str(r"\n\t\x".into()));
        // Commas, spaces, `=` and raw newlines belong to the string.
        assert_eq!(value("\"a,b c=d\ne\""), Str("a,b c=d\ne".into()));
        assert_eq!(value("\"wè\""), Str("wè".into()));
        let p = one(r#"m s="x",n=1i 5"#);
        assert_eq!(p.fields[1], ("n".into(), Int(1)));
        assert_eq!(p.time, 5);
    }

    #[test]
    fn string_errors() {
        err_at(r#"m f="open"#, 1, 5);
        err_at(r#"m f="ends with backslash\""#, 1, 5);
        err_at(r#"m f="a"x"#, 1, 8);
        err_at(r#"m f="a""b""#, 1, 8);
    }

    #[test]
    fn integers() {
        assert_eq!(value("1i"), Int(1));
        assert_eq!(value("-1i"), Int(-1));
        assert_eq!(value("007i"), Int(7));
        assert_eq!(value("9223372036854775807i"), Int(i64::MAX));
        assert_eq!(value("-9223372036854775808i"), Int(i64::MIN));
        err_at("m f=9223372036854775808i", 1, 5);
        err_at("m f=-9223372036854775809i", 1, 5);
        err_at("m f=1.0i", 1, 5);
        err_at("m f=-i", 1, 5);
        err_at("m f=1_0i", 1, 5);
        err_at("m f=1ii", 1, 5);
    }

    #[test]
    fn unsigned() {
        assert_eq!(value("0u"), UInt(0));
        assert_eq!(value("42u"), UInt(42));
        assert_eq!(value("00018446744073709551615u"), UInt(u64::MAX));
        err_at("m f=18446744073709551616u", 1, 5);
        err_at("m f=-1u", 1, 5);
        err_at("m f=--1u", 1, 5);
        err_at("m f=.5u", 1, 5);
    }

    #[test]
    fn booleans() {
        for t in ["t", "T", "true", "True", "TRUE"] {
            assert_eq!(value(t), Bool(true), "{t}");
        }
        for f in ["f", "F", "false", "False", "FALSE"] {
            assert_eq!(value(f), Bool(false), "{f}");
        }
        for bad in ["tru", "tRUE", "falsey", "Ture", "t1"] {
            err_at(&format!("m f={bad}"), 1, 5);
        }
        // Not starting like a boolean, number or string.
        err_at("m f=yes", 1, 5);
    }

    #[test]
    fn floats() {
        assert_eq!(value("1"), Float(1.0));
        assert_eq!(value("-1.5"), Float(-1.5));
        assert_eq!(value(".5"), Float(0.5));
        assert_eq!(value("-.5"), Float(-0.5));
        assert_eq!(value("5."), Float(5.0));
        assert_eq!(value("1e3"), Float(1000.0));
        assert_eq!(value("1E3"), Float(1000.0));
        assert_eq!(value("1.5e+3"), Float(1500.0));
        assert_eq!(value("-1.0e-4"), Float(-0.0001));
        assert_eq!(value("6.632243e+06"), Float(6632243.0));
        assert_eq!(value("0001.5"), Float(1.5));
        assert_eq!(value("1e-400"), Float(0.0));
        assert_eq!(value("0.1"), Float(0.1));
        let max = format!("17976931348623157{}", "0".repeat(292));
        assert_eq!(value(&max), Float(f64::MAX));
        // Go's ParseFloat also takes digit separators and hexadecimal mantissas.
        assert_eq!(value("1_000.5"), Float(1000.5));
        assert_eq!(value("0x1p3"), Float(8.0));
        assert_eq!(value("-0x1.8p1"), Float(-3.0));
        for bad in [
            ".", "-.", "-", "1.1.1", "1e", "1e+", "e5", "1a", ".1a", "9ie10", "1__0", "1_", "_1",
            "0x1", "0x", "1-2",
        ] {
            err_at(&format!("m f={bad}"), 1, 5);
        }
        // Out of range, NaN and infinities are not valid line protocol floats.
        err_at("m f=1e400", 1, 5);
        err_at(&format!("m f=-1{}", "0".repeat(400)), 1, 5);
        err_at("m f=NaN", 1, 5);
        err_at("m f=nan", 1, 5);
        err_at("m f=-Inf", 1, 5);
        err_at("m f=-infinity", 1, 5);
        err_at("m f=inf", 1, 5);
        // A leading `+` does not start a value.
        err_at("m f=+1", 1, 5);
    }

    #[test]
    fn hex_float_rounding() {
        let h = |s: &str| parse_f64(s.as_bytes());
        assert_eq!(h("0x1p-1074"), Ok(f64::from_bits(1)));
        assert_eq!(h("0x1p-1075"), Ok(0.0)); // tie to even
        assert_eq!(h("0x1.0000001p-1075"), Ok(f64::from_bits(1)));
        assert_eq!(h("0x3p-1075"), Ok(f64::from_bits(2))); // 1.5 ulp ties to even (2)
        assert_eq!(h("0x5p-1075"), Ok(f64::from_bits(2))); // 2.5 ulp ties to even (2)
        assert_eq!(h("0x3p-1076"), Ok(f64::from_bits(1))); // 0.75 ulp rounds up
        assert_eq!(h("0x1.fffffffffffffp1023"), Ok(f64::MAX));
        assert_eq!(h("0x1.fffffffffffff8p1023"), Err("out of range"));
        assert_eq!(h("0x1p1024"), Err("out of range"));
        assert_eq!(h("0x1.00000000000008p0"), Ok(1.0));
        assert_eq!(h("0x1.00000000000018p0"), Ok(1.0 + 2.0 * f64::EPSILON));
        assert_eq!(h("0x1.000000000000080000001p0"), Ok(1.0 + f64::EPSILON));
        assert_eq!(h("0x.8p1"), Ok(1.0));
        assert_eq!(h("0x0.0p0"), Ok(0.0));
        assert_eq!(h("0x_1p0"), Ok(1.0));
        assert_eq!(h("0x1fffffffffffff.8p0"), Ok(9007199254740992.0));
        assert_eq!(h("0x1p-1022"), Ok(f64::MIN_POSITIVE));
        assert_eq!(h("0x0.fffffffffffff8p-1022"), Ok(f64::MIN_POSITIVE));
    }

    #[test]
    fn timestamps() {
        assert_eq!(one("m v=1 0").time, 0);
        assert_eq!(one("m v=1 -1").time, -1);
        assert_eq!(one("m v=1 -0").time, 0);
        assert_eq!(one("m v=1 9223372036854775807").time, i64::MAX);
        assert_eq!(one("m v=1 -9223372036854775808").time, i64::MIN);
        err_at("m v=1 9223372036854775808", 1, 7);
        err_at("m v=1 -", 1, 7);
        err_at("m v=1 1-2", 1, 7);
        err_at("m v=1 12a", 1, 7);
        err_at("m v=1 +5", 1, 7);
        err_at("m v=1 1.5", 1, 7);
        err_at("m v=1 1 2", 1, 9);
        err_at("m v=1 1\t", 1, 7);
    }

    #[test]
    fn precision_conversion() {
        let at = |p: Precision, input: &str| parse(input.as_bytes(), p, DEFAULT).map(|v| v[0].time);
        assert_eq!(at(Precision::Nanos, "m v=1 5"), Ok(5));
        assert_eq!(at(Precision::Micros, "m v=1 5"), Ok(5_000));
        assert_eq!(
            at(Precision::Millis, "m v=1 946730096789"),
            Ok(946_730_096_789_000_000)
        );
        assert_eq!(at(Precision::Seconds, "m v=1 -5"), Ok(-5_000_000_000));
        assert_eq!(at(Precision::Minutes, "m v=1 2"), Ok(120_000_000_000));
        assert_eq!(at(Precision::Hours, "m v=1 2"), Ok(7_200_000_000_000));
        // The default time is already in ns and is not scaled.
        assert_eq!(at(Precision::Seconds, "m v=1"), Ok(DEFAULT));
        // Overflow on conversion is an error.
        assert_eq!(
            at(Precision::Seconds, "m v=1 9223372036"),
            Ok(9_223_372_036_000_000_000)
        );
        let e = at(Precision::Seconds, "m v=1 9223372037").unwrap_err();
        assert_eq!((e.line, e.column), (1, 7));
        assert!(at(Precision::Hours, "m v=1 -2562048").is_err());
        assert_eq!(Precision::parse("µs"), Some(Precision::Micros));
        assert_eq!(Precision::parse("x"), None);
    }

    #[test]
    fn line_endings_and_whitespace() {
        let points = parse(
            b"a v=1 1\r\nb v=2\r\nc v=3 3\r\n",
            Precision::Nanos,
            DEFAULT,
        )
        .unwrap();
        assert_eq!(
            points
                .iter()
                .map(|p| p.measurement.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(points[1].time, DEFAULT);
        // CR at the very end, trailing spaces, several spaces between sections, leading spaces.
        assert_eq!(one("m v=1\r").fields[0].1, Float(1.0));
        assert_eq!(one("m,t=x    v=1    5   ").time, 5);
        assert_eq!(one("   m v=1 5\n").time, 5);
        // A lone CR inside a line is not an end of line.
        err_at("m v=1\rm v=2", 1, 6);
        err_at("m v=1 5\rx", 1, 8);
        // Tabs are not separators.
        err_at("m\tv=1", 1, 2);
        err_at("m v=1\t5", 1, 5);
        err_at("\tm v=1", 1, 1);
    }

    #[test]
    fn comments_and_blank_lines() {
        let input =
            "# a comment\n\n   \n  # indented comment\r\nm v=1 1\n\n# trailing\nm v=2 2\n\n";
        let points = parse(input.as_bytes(), Precision::Nanos, DEFAULT).unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].time, 2);
        assert!(parse(b"", Precision::Nanos, 0).unwrap().is_empty());
        assert!(parse(b"\n\r\n# only comments\n", Precision::Nanos, 0)
            .unwrap()
            .is_empty());
        // Comments may hold any printable text, including non-UTF-8 bytes.
        assert_eq!(
            parse(b"# caf\xe9\nm v=1", Precision::Nanos, 0)
                .unwrap()
                .len(),
            1
        );
        // A `#` later in a line is not a comment.
        assert_eq!(one("m#1 v=1").measurement, "m#1");
        err_at("m v=1 # no", 1, 7);
        // Control characters are not allowed in comments.
        err_at("# bad\tcomment\nm v=1", 1, 6);
    }

    #[test]
    fn structure_errors() {
        err_at("cpu", 1, 4);
        err_at("cpu\n", 1, 4);
        err_at("cpu ", 1, 5);
        err_at("cpu,", 1, 5);
        err_at("cpu, v=1", 1, 5);
        err_at("cpu,host v=1i", 1, 9);
        err_at("cpu,host", 1, 9);
        err_at("cpu,host= v=1", 1, 10);
        err_at("cpu,host=", 1, 10);
        err_at("cpu,=a v=1", 1, 5);
        err_at("cpu,a=b=c v=1", 1, 8);
        err_at("cpu,a=b, v=1", 1, 9);
        err_at("cpu,a=b,c=d", 1, 12);
        err_at("cpu v", 1, 6);
        err_at("cpu v=", 1, 7);
        err_at("cpu v= 1", 1, 7);
        err_at("cpu =1", 1, 5);
        err_at("cpu v=1,", 1, 9);
        err_at("cpu v=1, w=2", 1, 9);
        err_at("cpu v=1,,w=2", 1, 9);
        err_at(",t=1 v=1", 1, 1);
        err_at(" ,t=1 v=1", 1, 2);
        err_at("cpu v=\"a\",w=1i\nbad", 2, 4);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err_at("cpu value=42\ncpu value=invalid\ncpu value=42", 2, 11);
        assert!(e.message.contains("found 'i'"), "{e}");
        assert!(e.message.contains("expected"), "{e}");
        err_at("a v=1\r\nb v=1\r\nc v=1x\r\n", 3, 5);
        // Newlines inside strings count as lines.
        err_at("a s=\"x\ny\" 1\nb v=", 3, 5);
        // Columns are in bytes.
        err_at("mé,t=1 v=1 bad", 1, 13);
        let e = err(b"cpu value=42\ncpu value=invalid\n");
        assert_eq!(e.to_string(), format!("line 2:11: {}", e.message));
    }

    #[test]
    fn invalid_utf8() {
        for (input, column) in [
            (&b"bad\xff v=1"[..], 4),
            (b"m,bad\xff=foo v=1", 6),
            (b"m,foo=bad\xff v=1", 10),
            (b"m bad\xff=1", 6),
            (b"m f=\"bad\xff\"", 9),
        ] {
            let e = err(input);
            assert_eq!((e.line, e.column), (1, column), "{e}");
            assert!(e.message.contains("UTF-8"), "{e}");
        }
        assert_eq!(one("m\u{a0}x,k=é v=\"ü\"").measurement, "m\u{a0}x");
    }

    #[test]
    fn duplicates() {
        let e = err(b"cpu,b=2,b=1,c=3 value=1i 1000000000");
        assert!(e.message.contains("duplicate tag key \"b\""), "{e}");
        // Duplicate fields are kept as written, like the reference decoder does.
        let p = one("m v=1,v=2i");
        assert_eq!(
            p.fields,
            [("v".to_string(), Float(1.0)), ("v".to_string(), Int(2))]
        );
    }

    #[test]
    fn backslash_at_end_of_input() {
        // A final backslash escapes nothing and stays.
        err_at("m v=1 0\\", 1, 7);
        err_at("m\\", 1, 3);
        err_at("m,k=v\\", 1, 7);
        // An escaped space continues the tag value; the next space starts the fields.
        assert_eq!(tags(&one("m,k=v\\  v=1")), [("k", "v ")]);
        // `v\ v=1` escapes the space, so the tag value runs into `=`.
        err_at("m,k=v\\ v=1", 1, 9);
    }

    #[test]
    fn many_points() {
        let mut body = String::new();
        for i in 0..1000 {
            body.push_str(&format!("cpu,host=h{i},dc=x usage={i}.5,n={i}i {i}\n"));
        }
        let points = parse(body.as_bytes(), Precision::Nanos, 0).unwrap();
        assert_eq!(points.len(), 1000);
        assert_eq!(points[999].time, 999);
        assert_eq!(tags(&points[7]), [("dc", "x"), ("host", "h7")]);
        assert_eq!(points[7].fields[0].1, Float(7.5));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn escape(s: &str, special: &[char]) -> String {
            let mut out = String::new();
            for c in s.chars() {
                if special.contains(&c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        }

        fn name() -> impl Strategy<Value = String> {
            // Printable text that may need escaping; no backslashes (their meaning depends
            // on the next character) and no leading '#'.
            "[a-zA-Z0-9_ ,=\"é.-]{1,12}".prop_filter("no leading #", |s| !s.starts_with('#'))
        }

        fn field_value() -> impl Strategy<Value = FieldValue> {
            prop_oneof![
                any::<f64>()
                    .prop_filter("finite", |v| v.is_finite())
                    .prop_map(FieldValue::Float),
                any::<i64>().prop_map(FieldValue::Int),
                any::<u64>().prop_map(FieldValue::UInt),
                any::<bool>().prop_map(FieldValue::Bool),
                "[a-z \\\\\",=\n]{0,10}".prop_map(FieldValue::Str),
            ]
        }

        fn encode(v: &FieldValue) -> String {
            match v {
                FieldValue::Float(f) => format!("{f:?}"),
                FieldValue::Int(i) => format!("{i}i"),
                FieldValue::UInt(u) => format!("{u}u"),
                FieldValue::Bool(b) => b.to_string(),
                FieldValue::Str(s) => format!("\"{}\"", escape(s, &['"', '\\'])),
            }
        }

        proptest! {
            #[test]
            fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse(&input, Precision::Nanos, 0);
            }

            #[test]
            fn never_panics_on_near_valid(input in "[a-z,= \\\\\"#\r\n0-9.ieu+-]{0,60}") {
                if let Err(e) = parse(input.as_bytes(), Precision::Seconds, 0) {
                    prop_assert!(e.line >= 1 && e.column >= 1);
                    prop_assert!(e.line <= input.matches('\n').count() + 1);
                }
            }

            #[test]
            fn round_trip(
                measurement in name(),
                tags in proptest::collection::btree_map(name(), name(), 0..4),
                fields in proptest::collection::vec((name(), field_value()), 1..4),
                time in proptest::option::of(any::<i64>()),
            ) {
                let mut line = escape(&measurement, &[' ', ',']);
                for (k, v) in &tags {
                    line.push_str(&format!(",{}={}", escape(k, &[' ', ',', '=']), escape(v, &[' ', ',', '='])));
                }
                line.push(' ');
                let encoded: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}={}", escape(k, &[' ', ',', '=']), encode(v)))
                    .collect();
                line.push_str(&encoded.join(","));
                if let Some(t) = time {
                    line.push_str(&format!(" {t}"));
                }
                let points = parse(line.as_bytes(), Precision::Nanos, 7).map_err(|e| {
                    TestCaseError::fail(format!("{line:?}: {e}"))
                })?;
                prop_assert_eq!(points.len(), 1);
                let p = &points[0];
                prop_assert_eq!(&p.measurement, &measurement);
                prop_assert_eq!(p.tags.clone(), tags.into_iter().collect::<Vec<_>>());
                prop_assert_eq!(&p.fields, &fields);
                prop_assert_eq!(p.time, time.unwrap_or(7));
            }
        }
    }
}
