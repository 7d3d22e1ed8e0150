//! The point limits on the ingest path: the parser refuses with line and column.

use crate::ingest::lineproto::{parse, parse_with_limits, Precision};
use crate::ingest::{parse_body, IngestError};
use crate::model::limits::*;

fn wide_line(fields: usize) -> String {
    let fields: Vec<String> = (0..fields).map(|i| format!("f{i}={i}")).collect();
    format!("m,host=a {}", fields.join(","))
}

#[test]
fn a_point_with_100k_fields_is_refused_with_its_line_and_column() {
    let body = format!("m v=1\n{}\n", wide_line(100_000));
    let start = std::time::Instant::now();
    let err = match parse_body(body.as_bytes(), Precision::Nanos, 0) {
        Err(IngestError::Parse(e)) => e,
        other => panic!("expected a parse error, got {other:?}"),
    };
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(err.line, 2);
    // the first field past the limit
    let col = wide_line(MAX_FIELDS_PER_POINT).len() + 2;
    assert_eq!(err.column, col, "{err}");
    assert!(err.message.contains("more than 1000 fields"), "{err}");
    // the bare grammar still accepts it
    assert_eq!(
        parse(body.as_bytes(), Precision::Nanos, 0).unwrap().len(),
        2
    );
}

#[test]
fn a_point_with_1000_fields_is_accepted() {
    let line = wide_line(MAX_FIELDS_PER_POINT);
    let points = parse_body(line.as_bytes(), Precision::Nanos, 0).unwrap();
    assert_eq!(points[0].fields.len(), MAX_FIELDS_PER_POINT);
}

#[test]
fn tags_past_the_limit_are_refused() {
    let tags = |n: usize| -> String { (0..n).map(|i| format!(",t{i}=v")).collect() };
    let ok = format!("m{} v=1", tags(MAX_TAGS_PER_SERIES));
    assert!(parse_body(ok.as_bytes(), Precision::Nanos, 0).is_ok());
    let bad = format!("m{} v=1", tags(MAX_TAGS_PER_SERIES + 1));
    let err = parse_with_limits(bad.as_bytes(), Precision::Nanos, 0, &PointLimits::default())
        .unwrap_err();
    assert_eq!((err.line, err.column), (1, tags(64).len() + 3), "{err}");
    assert!(err.message.contains("more than 64 tags"), "{err}");
}

#[test]
fn timestamps_outside_the_storable_range_are_refused_with_line_and_column() {
    let limits = PointLimits::default();
    let at = |body: &str, precision| parse_with_limits(body.as_bytes(), precision, 0, &limits);
    for ts in [
        "9223372036854775807",
        "-9223372036854775808",
        "7258118400000000000",
    ] {
        let err = at(&format!("m v=1 1\nm v=2 {ts}\n"), Precision::Nanos).unwrap_err();
        assert_eq!((err.line, err.column), (2, 7), "{ts}: {err}");
        assert!(err.message.contains("outside the storable range"), "{err}");
        assert!(err.message.contains("1900-01-01T00:00:00Z"), "{err}");
    }
    // seconds precision: 2199-12-31 is fine, 2200-01-01 is not
    assert!(at("m v=1 7258118399", Precision::Seconds).is_ok());
    assert!(at("m v=1 7258118400", Precision::Seconds).is_err());
    assert!(at("m v=1 -2208988800", Precision::Seconds).is_ok());
    assert!(at("m v=1 -2208988801", Precision::Seconds).is_err());
    assert_eq!(at("m v=1 -1", Precision::Nanos).unwrap()[0].time, -1);
}
