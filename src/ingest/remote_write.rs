//! Prometheus remote write 1.0 (`POST /api/v1/write`): a protobuf `prometheus.WriteRequest`
//! compressed with snappy's block format, to points.
//!
//! - [`check_headers`] refuses what is not remote write 1.0 (remote write 2.0, other
//!   encodings) before the body is touched.
//! - [`decode`] checks snappy's declared length against the body limit before allocating, then
//!   decompresses and decodes the protobuf with `prost` into the message types below, which
//!   mirror `prompb/remote.proto` and `prompb/types.proto` for the fields tocsin reads.
//! - [`points`] maps every sample of metric `m` with labels `L` to a point of measurement `m`,
//!   field `value`, tags `L` without `__name__`, at the sample's millisecond time; the points
//!   borrow their strings from the decoded request. A series without `__name__`, with a bad
//!   label, or past the store's [`PointLimits`] fails the whole request (nothing is stored),
//!   naming the series.
//!
//! What tocsin does not store is dropped and counted ([`Ignored`], shown in `/metrics` as
//! `tocsin_remote_write_ignored_total{what}`): staleness markers (Prometheus's special NaN
//! when a series disappears), other NaN and ±Inf samples (the store, like the line protocol,
//! takes finite numbers only: NaN would poison every aggregate over its window), native
//! histograms, exemplars and metadata. Those three are decoded as empty messages, so their
//! contents are skipped on the wire and only counted. Labels with an empty value are dropped,
//! as Prometheus treats them as absent.

use super::PointLimits;
use crate::metrics::RemoteWriteFigures;
use crate::model::point::{FieldValue, PointRef};
use prost::Message;
use std::borrow::Cow;
use std::sync::atomic::Ordering;

/// The bit pattern of the NaN that Prometheus writes as a staleness marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// The label whose value is the metric name (the measurement).
pub const NAME_LABEL: &str = "__name__";

/// The field every remote write sample is stored under.
pub const VALUE_FIELD: &str = "value";

/// `prometheus.WriteRequest`. Field 2 is reserved in the .proto.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// the series with their samples
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// `MetricMetadata` entries: counted, not read
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<Skipped>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// the series identity, `__name__` included; sorted by name as Prometheus sends them
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// the samples, oldest first
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// `Exemplar`s: counted, not read
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Skipped>,
    /// native `Histogram` samples: counted, not read
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Skipped>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// label name
    #[prost(string, tag = "1")]
    pub name: String,
    /// label value
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// the value
    #[prost(double, tag = "1")]
    pub value: f64,
    /// milliseconds since the Unix epoch
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A message tocsin only counts (exemplar, histogram, metadata): decoding it skips its fields.
#[derive(Clone, PartialEq, Message)]
pub struct Skipped {}

/// What a request carried that is not stored, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ignored {
    /// staleness markers ([`STALE_NAN`])
    pub stale: u64,
    /// other NaN samples
    pub nan: u64,
    /// +Inf and -Inf samples
    pub infinite: u64,
    /// native histogram samples
    pub histograms: u64,
    /// exemplars
    pub exemplars: u64,
    /// metadata entries
    pub metadata: u64,
}

impl Ignored {
    /// Adds these counts and `samples` stored to the `/metrics` figures.
    pub fn record(&self, samples: usize, figures: &RemoteWriteFigures) {
        let add = |c: &std::sync::atomic::AtomicU64, n: u64| {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&figures.samples, samples as u64);
        add(&figures.stale, self.stale);
        add(&figures.nan, self.nan);
        add(&figures.infinite, self.infinite);
        add(&figures.histograms, self.histograms);
        add(&figures.exemplars, self.exemplars);
        add(&figures.metadata, self.metadata);
    }
}

/// A request's points, borrowing from the decoded [`WriteRequest`], and what was left out.
#[derive(Debug)]
pub struct Batch<'a> {
    /// one point per stored sample
    pub points: Vec<PointRef<'a>>,
    /// what was dropped
    pub ignored: Ignored,
}

/// Why a remote write request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// not remote write 1.0 (415)
    #[error(
        "{header} {given:?} is not remote write 1.0: tocsin accepts only Prometheus remote \
         write 1.0 (Content-Type: application/x-protobuf, a prometheus.WriteRequest); remote \
         write 2.0 is not supported (in Prometheus, set protobuf_message: \
         prometheus.WriteRequest in remote_write)"
    )]
    Version {
        /// the header that named another version
        header: &'static str,
        /// its value
        given: String,
    },
    /// a body encoding other than snappy (415)
    #[error(
        "Content-Encoding {0:?} is not accepted: remote write bodies are snappy-compressed \
         (block format); send Content-Encoding: snappy"
    )]
    Encoding(String),
    /// the body is not snappy block data (400)
    #[error(
        "the body is not snappy-compressed data: {0} (remote write 1.0 uses snappy's block \
         format, not the framed stream format)"
    )]
    Snappy(#[source] snap::Error),
    /// snappy's header declares more than the body limit (413)
    #[error(
        "the body would decompress to {declared} bytes, more than the {max} bytes allowed \
         (max_body_bytes); send smaller requests (in Prometheus, lower queue_config \
         max_samples_per_send)"
    )]
    TooLarge {
        /// the decompressed length snappy's header declares
        declared: usize,
        /// the body limit
        max: usize,
    },
    /// the decompressed body is not a `WriteRequest` (400)
    #[error("the decompressed body is not a remote write 1.0 WriteRequest protobuf: {0}")]
    Protobuf(#[source] prost::DecodeError),
    /// a series has no metric name (400)
    #[error(
        "series {index} ({labels}) has no {NAME_LABEL} label: every series needs a metric \
         name, which becomes the measurement"
    )]
    MissingName {
        /// 0-based position in the request
        index: usize,
        /// its labels, as `{a="1",b="2"}`
        labels: String,
    },
    /// a series has labels tocsin cannot store, or breaks a point limit (400)
    #[error("series {index} ({series}): {message}")]
    Series {
        /// 0-based position in the request
        index: usize,
        /// the series, as `name{a="1"}`
        series: String,
        /// what is wrong and what would be right
        message: String,
    },
}

impl RemoteWriteError {
    /// Whether the error is about the request's headers (415) rather than its body.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            RemoteWriteError::Version { .. } | RemoteWriteError::Encoding(_)
        )
    }
}

/// Refuses requests that are not remote write 1.0 from their headers: a `Content-Type` whose
/// `proto=` names another message (remote write 2.0 sends
/// `proto=io.prometheus.write.v2.Request`), an `X-Prometheus-Remote-Write-Version` of 2 or
/// more, or a `Content-Encoding` other than snappy. A missing header is accepted (senders
/// such as Telegraf's HTTP output do not always set them), and so is any other media type, as
/// the body is what is checked.
pub fn check_headers(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    version: Option<&str>,
) -> Result<(), RemoteWriteError> {
    if let Some(ct) = content_type {
        let proto = ct.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("proto")
                .then(|| v.trim().trim_matches('"'))
        });
        if proto.is_some_and(|p| p != "prometheus.WriteRequest") {
            return Err(RemoteWriteError::Version {
                header: "Content-Type",
                given: ct.to_string(),
            });
        }
    }
    if let Some(v) = version {
        let major = v.trim().split('.').next().unwrap_or("");
        if major.parse::<u32>().is_ok_and(|m| m >= 2) {
            return Err(RemoteWriteError::Version {
                header: "X-Prometheus-Remote-Write-Version",
                given: v.to_string(),
            });
        }
    }
    match content_encoding.map(str::trim) {
        None | Some("") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(e) => Err(RemoteWriteError::Encoding(e.to_string())),
    }
}

/// Decompresses (snappy block format) and decodes a request body. The decompressed length
/// that snappy's header declares is checked against `max_body` before anything is allocated,
/// so a small body cannot make tocsin allocate gigabytes.
pub fn decode(body: &[u8], max_body: usize) -> Result<WriteRequest, RemoteWriteError> {
    let declared = snap::raw::decompress_len(body).map_err(RemoteWriteError::Snappy)?;
    if declared > max_body {
        return Err(RemoteWriteError::TooLarge {
            declared,
            max: max_body,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(RemoteWriteError::Snappy)?;
    WriteRequest::decode(raw.as_slice()).map_err(RemoteWriteError::Protobuf)
}

/// The request's samples as points (see the module overview), or the first series that
/// cannot be stored. `limits` are the store's, so what passes here the store accepts.
pub fn points<'a>(
    req: &'a WriteRequest,
    limits: &PointLimits,
) -> Result<Batch<'a>, RemoteWriteError> {
    let mut ignored = Ignored {
        metadata: req.metadata.len() as u64,
        ..Ignored::default()
    };
    let mut points = Vec::with_capacity(req.timeseries.iter().map(|s| s.samples.len()).sum());
    for (index, ts) in req.timeseries.iter().enumerate() {
        ignored.exemplars += ts.exemplars.len() as u64;
        ignored.histograms += ts.histograms.len() as u64;
        let (name, tags) = series(index, ts)?;
        let fail = |message: String| RemoteWriteError::Series {
            index,
            series: show(Some(name), &ts.labels),
            message,
        };
        if let Some(e) = limits.tags_error(tags.len()) {
            return Err(fail(e));
        }
        for s in &ts.samples {
            if s.value.to_bits() == STALE_NAN {
                ignored.stale += 1;
                continue;
            }
            if s.value.is_nan() {
                ignored.nan += 1;
                continue;
            }
            if s.value.is_infinite() {
                ignored.infinite += 1;
                continue;
            }
            let time = s.timestamp.checked_mul(1_000_000).ok_or_else(|| {
                fail(format!(
                    "sample timestamp {} ms overflows nanoseconds; timestamps are \
                     milliseconds since the Unix epoch",
                    s.timestamp
                ))
            })?;
            let p = PointRef {
                measurement: Cow::Borrowed(name),
                tags: tags.clone(),
                fields: vec![(Cow::Borrowed(VALUE_FIELD), FieldValue::Float(s.value))],
                time,
            };
            limits
                .check(&p)
                .map_err(|(_, e)| fail(format!("sample at {} ms: {e}", s.timestamp)))?;
            points.push(p);
        }
    }
    Ok(Batch { points, ignored })
}

/// The metric name and the tags (sorted, empty values dropped) of series `index`.
#[allow(clippy::type_complexity)]
fn series(
    index: usize,
    ts: &TimeSeries,
) -> Result<(&str, Vec<(Cow<'_, str>, Cow<'_, str>)>), RemoteWriteError> {
    let mut name = None;
    let mut tags = Vec::with_capacity(ts.labels.len().saturating_sub(1));
    for l in &ts.labels {
        if l.name == NAME_LABEL {
            name = Some(l.value.as_str()).filter(|v| !v.is_empty());
        } else if l.name.is_empty() {
            return Err(RemoteWriteError::Series {
                index,
                series: show(name, &ts.labels),
                message: "a label has an empty name; label names are non-empty".into(),
            });
        } else if !l.value.is_empty() {
            tags.push((
                Cow::Borrowed(l.name.as_str()),
                Cow::Borrowed(l.value.as_str()),
            ));
        }
    }
    let Some(name) = name else {
        return Err(RemoteWriteError::MissingName {
            index,
            labels: show(None, &ts.labels),
        });
    };
    // Prometheus sends labels sorted; sort anyway so a duplicate is found next to its twin.
    if !tags.windows(2).all(|w| w[0].0 <= w[1].0) {
        tags.sort_by(|a, b| a.0.cmp(&b.0));
    }
    if let Some(w) = tags.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(RemoteWriteError::Series {
            index,
            series: show(Some(name), &ts.labels),
            message: format!(
                "label {:?} appears twice; label names must be unique",
                w[0].0
            ),
        });
    }
    Ok((name, tags))
}

/// A series as Prometheus writes it, `name{a="1",b="2"}`, cut short for error messages.
fn show(name: Option<&str>, labels: &[Label]) -> String {
    const MAX: usize = 200;
    let mut s = name.unwrap_or("").to_string();
    s.push('{');
    let mut first = true;
    for l in labels
        .iter()
        .filter(|l| l.name != NAME_LABEL || name.is_none())
    {
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str(&format!("{}={:?}", l.name, l.value));
        if s.len() > MAX {
            break;
        }
    }
    s.push('}');
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::point::PointLike;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
            exemplars: vec![],
            histograms: vec![],
        }
    }

    fn body(req: &impl Message) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap()
    }

    const MB: usize = 1 << 20;

    #[test]
    fn a_request_round_trips_to_points() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    &[("__name__", "up"), ("instance", "a:9100"), ("job", "node")],
                    &[(1.0, 1_700_000_000_000), (0.0, 1_700_000_001_500)],
                ),
                // unsorted labels and an empty value (absent in Prometheus's model)
                series(
                    &[
                        ("zone", "eu"),
                        ("__name__", "temp"),
                        ("host", "h1"),
                        ("rack", ""),
                    ],
                    &[(-3.25, 5)],
                ),
            ],
            metadata: vec![],
        };
        let decoded = decode(&body(&req), MB).unwrap();
        assert_eq!(decoded, req);
        let batch = points(&decoded, &PointLimits::default()).unwrap();
        assert_eq!(batch.ignored, Ignored::default());
        let got: Vec<_> = batch
            .points
            .iter()
            .map(|p| {
                let tags: Vec<String> = p.tags().iter().map(|(k, v)| format!("{k}={v}")).collect();
                let (field, value) = &p.fields()[0];
                (
                    p.measurement().to_string(),
                    tags.join(","),
                    field.to_string(),
                    value.as_f64().unwrap(),
                    p.time(),
                )
            })
            .collect();
        let row = |m: &str, t: &str, v: f64, ns: i64| {
            (m.to_string(), t.to_string(), "value".to_string(), v, ns)
        };
        assert_eq!(
            got,
            [
                row(
                    "up",
                    "instance=a:9100,job=node",
                    1.0,
                    1_700_000_000_000_000_000
                ),
                row(
                    "up",
                    "instance=a:9100,job=node",
                    0.0,
                    1_700_000_001_500_000_000
                ),
                row("temp", "host=h1,zone=eu", -3.25, 5_000_000),
            ]
        );
        // the points borrow the request's strings
        assert!(matches!(batch.points[0].measurement, Cow::Borrowed(_)));
    }

    #[test]
    fn stale_markers_nan_and_infinities_are_dropped_and_counted() {
        let stale = f64::from_bits(STALE_NAN);
        assert!(stale.is_nan());
        let req = WriteRequest {
            timeseries: vec![series(
                &[("__name__", "m")],
                &[
                    (1.0, 1),
                    (stale, 2),
                    (f64::NAN, 3),
                    (f64::INFINITY, 4),
                    (f64::NEG_INFINITY, 5),
                    (stale, 6),
                    (2.0, 7),
                ],
            )],
            metadata: vec![Skipped {}, Skipped {}],
        };
        let decoded = decode(&body(&req), MB).unwrap();
        // the marker's bits survive the wire
        assert_eq!(decoded.timeseries[0].samples[1].value.to_bits(), STALE_NAN);
        let batch = points(&decoded, &PointLimits::default()).unwrap();
        let times: Vec<i64> = batch.points.iter().map(|p| p.time).collect();
        assert_eq!(times, [1_000_000, 7_000_000]);
        assert_eq!(
            batch.ignored,
            Ignored {
                stale: 2,
                nan: 1,
                infinite: 2,
                metadata: 2,
                ..Ignored::default()
            }
        );
        let figures = RemoteWriteFigures::default();
        batch.ignored.record(batch.points.len(), &figures);
        assert_eq!(figures.samples.load(Ordering::Relaxed), 2);
        assert_eq!(figures.stale.load(Ordering::Relaxed), 2);
        assert_eq!(figures.metadata.load(Ordering::Relaxed), 2);
    }

    /// The wire shapes of what tocsin skips, with real fields, as a sender would encode them.
    mod wire {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Request {
            #[prost(message, repeated, tag = "1")]
            pub timeseries: Vec<Series>,
            #[prost(message, repeated, tag = "3")]
            pub metadata: Vec<Metadata>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Series {
            #[prost(message, repeated, tag = "1")]
            pub labels: Vec<super::Label>,
            #[prost(message, repeated, tag = "2")]
            pub samples: Vec<super::Sample>,
            #[prost(message, repeated, tag = "3")]
            pub exemplars: Vec<Exemplar>,
            #[prost(message, repeated, tag = "4")]
            pub histograms: Vec<Histogram>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Exemplar {
            #[prost(message, repeated, tag = "1")]
            pub labels: Vec<super::Label>,
            #[prost(double, tag = "2")]
            pub value: f64,
            #[prost(int64, tag = "3")]
            pub timestamp: i64,
        }
        /// part of `prometheus.Histogram`: count_int, sum, schema, positive_deltas, timestamp
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Histogram {
            #[prost(uint64, tag = "1")]
            pub count_int: u64,
            #[prost(double, tag = "3")]
            pub sum: f64,
            #[prost(sint32, tag = "4")]
            pub schema: i32,
            #[prost(sint64, repeated, tag = "10")]
            pub positive_deltas: Vec<i64>,
            #[prost(int64, tag = "15")]
            pub timestamp: i64,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Metadata {
            #[prost(int32, tag = "1")]
            pub r#type: i32,
            #[prost(string, tag = "2")]
            pub metric_family_name: String,
            #[prost(string, tag = "4")]
            pub help: String,
            #[prost(string, tag = "5")]
            pub unit: String,
        }
    }

    #[test]
    fn histograms_exemplars_and_metadata_are_skipped_and_counted() {
        let req = wire::Request {
            timeseries: vec![
                wire::Series {
                    labels: vec![label("__name__", "latency"), label("job", "api")],
                    samples: vec![Sample {
                        value: 0.5,
                        timestamp: 1_000,
                    }],
                    exemplars: vec![wire::Exemplar {
                        labels: vec![label("trace_id", "abc")],
                        value: 0.7,
                        timestamp: 1_000,
                    }],
                    histograms: vec![],
                },
                // a native histogram series has no float samples
                wire::Series {
                    labels: vec![label("__name__", "latency_native")],
                    samples: vec![],
                    exemplars: vec![],
                    histograms: vec![
                        wire::Histogram {
                            count_int: 3,
                            sum: 1.5,
                            schema: 3,
                            positive_deltas: vec![1, -1, 2],
                            timestamp: 1_000,
                        };
                        2
                    ],
                },
            ],
            metadata: vec![wire::Metadata {
                r#type: 1,
                metric_family_name: "latency".into(),
                help: "Request latency.".into(),
                unit: "seconds".into(),
            }],
        };
        let decoded = decode(&body(&req), MB).unwrap();
        let batch = points(&decoded, &PointLimits::default()).unwrap();
        assert_eq!(batch.points.len(), 1);
        assert_eq!(batch.points[0].measurement, "latency");
        assert_eq!(
            batch.ignored,
            Ignored {
                histograms: 2,
                exemplars: 1,
                metadata: 1,
                ..Ignored::default()
            }
        );
    }

    #[test]
    fn a_series_without_a_name_fails_the_request_naming_it() {
        let req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "ok")], &[(1.0, 1)]),
                series(&[("job", "x"), ("instance", "h:1")], &[(1.0, 1)]),
            ],
            metadata: vec![],
        };
        let e = points(&req, &PointLimits::default()).unwrap_err();
        assert!(
            matches!(e, RemoteWriteError::MissingName { index: 1, .. }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "series 1 ({job=\"x\",instance=\"h:1\"}) has no __name__ label: every series \
             needs a metric name, which becomes the measurement"
        );
        // an empty name is no name
        let req = WriteRequest {
            timeseries: vec![series(&[("__name__", "")], &[(1.0, 1)])],
            metadata: vec![],
        };
        assert!(matches!(
            points(&req, &PointLimits::default()),
            Err(RemoteWriteError::MissingName { index: 0, .. })
        ));
    }

    #[test]
    fn bad_labels_name_the_series() {
        let dup = WriteRequest {
            timeseries: vec![series(
                &[("__name__", "m"), ("a", "1"), ("a", "2")],
                &[(1.0, 1)],
            )],
            metadata: vec![],
        };
        let e = points(&dup, &PointLimits::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("series 0 (m{a=\"1\",a=\"2\"}): label \"a\" appears twice"),
            "{e}"
        );
        let empty = WriteRequest {
            timeseries: vec![series(&[("__name__", "m"), ("", "v")], &[(1.0, 1)])],
            metadata: vec![],
        };
        let e = points(&empty, &PointLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty name"), "{e}");
    }

    #[test]
    fn garbage_snappy_and_garbage_protobuf_are_told_apart() {
        let e = decode(b"definitely not snappy \xff\xff\xff\xff\xff", MB).unwrap_err();
        assert!(matches!(e, RemoteWriteError::Snappy(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("the body is not snappy-compressed data"),
            "{e}"
        );
        assert!(matches!(decode(b"", MB), Err(RemoteWriteError::Snappy(_))));
        // framed snappy (the stream format) is not the block format
        let mut framed = snap::write::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut framed, &WriteRequest::default().encode_to_vec()).unwrap();
        let framed = framed.into_inner().unwrap();
        assert!(decode(&framed, MB).is_err());
        // valid snappy around bytes that are not a WriteRequest
        let junk = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff\xff\x0fnope")
            .unwrap();
        let e = decode(&junk, MB).unwrap_err();
        assert!(matches!(e, RemoteWriteError::Protobuf(_)), "{e:?}");
        assert!(
            e.to_string()
                .contains("not a remote write 1.0 WriteRequest"),
            "{e}"
        );
        // strings must be UTF-8
        let bad_utf8 = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\x06\x0a\x04\x0a\x02\xc3\x28")
            .unwrap();
        assert!(matches!(
            decode(&bad_utf8, MB),
            Err(RemoteWriteError::Protobuf(_))
        ));
    }

    #[test]
    fn the_declared_decompressed_length_is_checked_before_allocating() {
        let req = WriteRequest {
            timeseries: vec![series(&[("__name__", "m")], &[(1.0, 1); 1000])],
            metadata: vec![],
        };
        let raw = req.encode_to_vec().len();
        let b = body(&req);
        assert!(b.len() < raw / 4, "compresses well");
        assert!(decode(&b, raw).is_ok());
        match decode(&b, raw - 1) {
            Err(RemoteWriteError::TooLarge { declared, max }) => {
                assert_eq!((declared, max), (raw, raw - 1))
            }
            other => panic!("{other:?}"),
        }
        // a header alone declaring 3.75 GiB: refused from the header, nothing allocated
        let lie = [0x80, 0x80, 0x80, 0x80, 0x0f];
        assert!(matches!(
            decode(&lie, MB),
            Err(RemoteWriteError::TooLarge {
                declared: 0xf000_0000,
                max: MB
            })
        ));
    }

    #[test]
    fn point_limits_apply_and_name_the_series() {
        let limits = PointLimits {
            max_tags: 2,
            ..PointLimits::default()
        };
        let wide = WriteRequest {
            timeseries: vec![series(
                &[("__name__", "m"), ("a", "1"), ("b", "2"), ("c", "3")],
                &[(1.0, 1)],
            )],
            metadata: vec![],
        };
        let e = points(&wide, &limits).unwrap_err().to_string();
        assert!(
            e.starts_with("series 0 (m{a=\"1\",b=\"2\",c=\"3\"}): the point has more than 2 tags"),
            "{e}"
        );
        // __name__ is not a tag: two labels besides it pass
        let ok = WriteRequest {
            timeseries: vec![series(
                &[("__name__", "m"), ("a", "1"), ("b", "2")],
                &[(1.0, 1)],
            )],
            metadata: vec![],
        };
        assert_eq!(points(&ok, &limits).unwrap().points.len(), 1);
        // times outside the storable range, and milliseconds that overflow nanoseconds
        let far = WriteRequest {
            timeseries: vec![series(
                &[("__name__", "m")],
                &[(1.0, 1), (1.0, 8_000_000_000_000)],
            )],
            metadata: vec![],
        };
        let e = points(&far, &PointLimits::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sample at 8000000000000 ms") && e.contains("outside the storable range"),
            "{e}"
        );
        let overflow = WriteRequest {
            timeseries: vec![series(&[("__name__", "m")], &[(1.0, i64::MAX)])],
            metadata: vec![],
        };
        let e = points(&overflow, &PointLimits::NONE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("overflows nanoseconds"), "{e}");
    }

    #[test]
    fn headers_refuse_remote_write_2_and_other_encodings() {
        let ok = |ct, ce, v| check_headers(ct, ce, v).is_ok();
        assert!(ok(None, None, None));
        assert!(ok(
            Some("application/x-protobuf"),
            Some("snappy"),
            Some("0.1.0")
        ));
        assert!(ok(
            Some("application/x-protobuf;proto=prometheus.WriteRequest"),
            Some("Snappy"),
            None
        ));
        let v2 = check_headers(
            Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
            Some("snappy"),
            Some("2.0.0"),
        )
        .unwrap_err();
        assert!(v2.is_unsupported());
        let msg = v2.to_string();
        assert!(
            msg.contains("accepts only Prometheus remote write 1.0"),
            "{msg}"
        );
        assert!(msg.contains("remote write 2.0 is not supported"), "{msg}");
        assert!(matches!(
            check_headers(None, None, Some("2.0.0")),
            Err(RemoteWriteError::Version {
                header: "X-Prometheus-Remote-Write-Version",
                ..
            })
        ));
        let enc = check_headers(None, Some("zstd"), None).unwrap_err();
        assert!(enc.is_unsupported());
        assert!(
            enc.to_string().contains("send Content-Encoding: snappy"),
            "{enc}"
        );
    }

    #[test]
    fn long_series_are_cut_short_in_messages() {
        let labels: Vec<Label> = (0..100).map(|i| label(&format!("l{i}"), "é")).collect();
        let s = show(Some("m"), &labels);
        assert!(s.chars().count() <= 201 && s.ends_with('…'), "{s}");
    }
}
