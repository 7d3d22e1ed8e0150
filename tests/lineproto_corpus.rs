//! Conformance against InfluxData's line-protocol corpus
//! (`../shared/data/line-protocol-corpus.json` relative to the crate, or the file named by
//! `TOCSIN_LP_CORPUS`). When the file is absent the test says so and passes (skips).
//!
//! Every decode case is run; accept/reject must agree, and for accepted cases every point
//! (name, tags, fields with types and values, time) must be equal. Error texts are not
//! compared. Numbers are compared from their JSON text (via `RawValue`) so that floats are
//! exact and large integers keep every digit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use tocsin::ingest::lineproto::{parse, FieldValue, Point, Precision};

/// The least share of agreeing cases for the test to pass.
const MIN_SHARE: f64 = 0.99;
/// How many disagreements to print.
const SHOW: usize = 20;

#[derive(Deserialize)]
struct Corpus {
    decode: BTreeMap<String, Case>,
}

#[derive(Deserialize)]
struct Case {
    input: Input,
    output: Output,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    text: Text,
    default_time: i64,
    precision: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    Plain(String),
    Binary { binary: String },
}

#[derive(Deserialize)]
struct Output {
    result: Option<Vec<JsonPoint>>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct JsonPoint {
    time: i64,
    name: String,
    #[serde(default)]
    tags: Vec<JsonTag>,
    #[serde(default)]
    fields: Vec<JsonField>,
}

#[derive(Deserialize)]
struct JsonTag {
    key: String,
    value: String,
}

#[derive(Deserialize)]
struct JsonField {
    key: String,
    /// One entry: the type name and the value's JSON text.
    value: BTreeMap<String, Box<RawValue>>,
}

fn precision(p: &str) -> Precision {
    match p {
        "1ns" => Precision::Nanos,
        "1µs" | "1us" => Precision::Micros,
        "1ms" => Precision::Millis,
        "1s" => Precision::Seconds,
        other => panic!("unknown precision in corpus: {other:?}"),
    }
}

fn field_value(value: &BTreeMap<String, Box<RawValue>>) -> Result<FieldValue, String> {
    let (kind, raw) = value.iter().next().ok_or("empty field value")?;
    let text = raw.get();
    let bad = |e: &dyn std::fmt::Display| format!("bad {kind} {text}: {e}");
    Ok(match kind.as_str() {
        // Rust's float parsing is correctly rounded, as Go's JSON encoder expects.
        "float" => FieldValue::Float(text.parse().map_err(|e| bad(&e))?),
        "int" => FieldValue::Int(text.parse().map_err(|e| bad(&e))?),
        "uint" => FieldValue::UInt(text.parse().map_err(|e| bad(&e))?),
        "string" => FieldValue::Str(serde_json::from_str(text).map_err(|e| bad(&e))?),
        "bool" => FieldValue::Bool(serde_json::from_str(text).map_err(|e| bad(&e))?),
        other => return Err(format!("unknown field type {other:?}")),
    })
}

fn expected_points(points: &[JsonPoint]) -> Result<Vec<Point>, String> {
    points
        .iter()
        .map(|p| {
            Ok(Point {
                measurement: p.name.clone(),
                tags: p
                    .tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect(),
                fields: p
                    .fields
                    .iter()
                    .map(|f| Ok((f.key.clone(), field_value(&f.value)?)))
                    .collect::<Result<_, String>>()?,
                time: p.time,
            })
        })
        .collect()
}

/// Field values equal, floats bit for bit except that all zeros and all NaNs match.
fn same_value(a: &FieldValue, b: &FieldValue) -> bool {
    match (a, b) {
        (FieldValue::Float(x), FieldValue::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        _ => a == b,
    }
}

fn same_points(got: &[Point], want: &[Point]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.measurement == w.measurement
                && g.tags == w.tags
                && g.time == w.time
                && g.fields.len() == w.fields.len()
                && g.fields
                    .iter()
                    .zip(&w.fields)
                    .all(|(a, b)| a.0 == b.0 && same_value(&a.1, &b.1))
        })
}

#[test]
fn line_protocol_corpus() {
    // `TOCSIN_LP_CORPUS` overrides the location (e.g. when running from another checkout).
    let path = std::env::var_os("TOCSIN_LP_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/data/line-protocol-corpus.json")
        });
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            println!(
                "line protocol corpus not found at {} ({e}); skipping the conformance test",
                path.display()
            );
            return;
        }
    };
    let corpus: Corpus = serde_json::from_slice(&data).expect("corpus JSON");

    let mut total = 0usize;
    let mut agree = 0usize;
    let mut disagreements = Vec::new();
    for (key, case) in &corpus.decode {
        total += 1;
        let text = match &case.input.text {
            Text::Plain(s) => s.as_bytes().to_vec(),
            Text::Binary { binary } => base64::engine::general_purpose::STANDARD
                .decode(binary)
                .expect("corpus base64"),
        };
        let prec = precision(&case.input.precision);
        // The reference decoder truncates the default time to the precision (Go's
        // time.Truncate, i.e. towards minus infinity); `parse` takes it ready in ns.
        let default_time =
            case.input.default_time - case.input.default_time.rem_euclid(prec.nanos());
        let got = parse(&text, prec, default_time);
        let verdict = match (&got, &case.output.result, &case.output.error) {
            (Err(_), None, Some(_)) => Ok(()),
            (Ok(points), Some(want), None) => match expected_points(want) {
                Ok(want) if same_points(points, &want) => Ok(()),
                Ok(want) => Err(format!(
                    "points differ\n      got:  {points:?}\n      want: {want:?}"
                )),
                Err(e) => Err(format!("cannot read expected result: {e}")),
            },
            (Ok(points), None, Some(err)) => Err(format!(
                "accepted, corpus rejects ({err})\n      got: {points:?}"
            )),
            (Err(e), Some(want), None) => Err(format!(
                "rejected ({e}), corpus accepts\n      want: {:?}",
                expected_points(want)
            )),
            _ => Err("corpus case has neither or both of result and error".to_string()),
        };
        match verdict {
            Ok(()) => agree += 1,
            Err(why) => disagreements.push(format!(
                "{key}: input {:?} (precision {}):\n    {why}",
                String::from_utf8_lossy(&text),
                case.input.precision
            )),
        }
    }

    let share = agree as f64 / total.max(1) as f64;
    println!(
        "line protocol corpus: {agree}/{total} agree ({:.2}%)",
        share * 100.0
    );
    for d in disagreements.iter().take(SHOW) {
        println!("  {d}");
    }
    if disagreements.len() > SHOW {
        println!("  ... and {} more", disagreements.len() - SHOW);
    }
    assert!(total > 0, "corpus has no decode cases");
    assert!(
        share >= MIN_SHARE,
        "only {:.2}% of the corpus agrees; need {:.0}%",
        share * 100.0,
        MIN_SHARE * 100.0
    );
}
