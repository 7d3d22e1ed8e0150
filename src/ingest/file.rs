//! Loading a line-protocol file into a store (`tocsin replay`).
//!
//! The file is cut at line ends into chunks of about [`CHUNK_BYTES`]; [`PARSERS`] threads
//! parse alternate chunks while this thread writes them in file order, so parsing and writing
//! overlap and memory holds a few chunks of points, never the whole file as points. A (series,
//! time) written twice keeps the later value, as a single write would.
//!
//! A chunk boundary could fall inside a quoted string value that spans lines; the chunk
//! before it then fails to parse (its string never ends), and the rest of the file from that
//! chunk is parsed as one piece instead, so the points and any error (with its line in the
//! file) are exactly those of parsing the file whole.

use super::lineproto::{self, ParseError, Precision};
use crate::model::limits::PointLimits;
use crate::model::point::PointRef;
use crate::store::{Store, StoreError};
use std::sync::mpsc;

/// Threads parsing chunks (the writer is a third).
pub const PARSERS: usize = 2;

/// Target size of one chunk.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Why a file was not (fully) loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// a line is not valid line protocol (its line number is the file's)
    #[error("{0}")]
    Parse(ParseError),
    /// the store refused a write
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a parser thread hands to the writer: points borrowing their names from the file.
enum Parsed<'a> {
    /// the points of one chunk
    Chunk(Vec<PointRef<'a>>),
    /// the rest of the file from a chunk that did not parse alone: the last message
    Rest(Result<Vec<PointRef<'a>>, ParseError>),
}

fn parse(
    bytes: &[u8],
    precision: Precision,
    default_time: i64,
) -> Result<Vec<PointRef<'_>>, ParseError> {
    lineproto::parse_refs_with_limits(bytes, precision, default_time, &PointLimits::NONE)
}

/// Parses `bytes` and writes the points to `store` chunk by chunk; returns the samples
/// written. Points without a timestamp get `default_time` (ns). On a parse error, the chunks
/// before the bad line's chunk are already written.
pub fn load(
    store: &Store,
    bytes: &[u8],
    precision: Precision,
    default_time: i64,
) -> Result<usize, LoadError> {
    let mut starts = vec![0];
    while let Some(&at) = starts.last() {
        if at >= bytes.len() {
            break;
        }
        starts.push(at + chunk_end(&bytes[at..], CHUNK_BYTES));
    }
    let chunks: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    std::thread::scope(|s| {
        let receivers: Vec<mpsc::Receiver<Parsed>> = (0..PARSERS)
            .map(|k| {
                let (tx, rx) = mpsc::sync_channel::<Parsed<'_>>(2);
                let mine: Vec<(usize, usize)> =
                    chunks.iter().copied().skip(k).step_by(PARSERS).collect();
                s.spawn(move || {
                    for (from, to) in mine {
                        let msg = match parse(&bytes[from..to], precision, default_time) {
                            Ok(points) => Parsed::Chunk(points),
                            // Perhaps cut inside a string: the rest as one piece decides.
                            Err(_) => {
                                let rest = parse(&bytes[from..], precision, default_time);
                                let line = lineproto::count_newlines(&bytes[..from]);
                                Parsed::Rest(rest.map_err(|mut e| {
                                    e.line += line;
                                    e
                                }))
                            }
                        };
                        let last = matches!(msg, Parsed::Rest(_));
                        if tx.send(msg).is_err() || last {
                            return;
                        }
                    }
                });
                rx
            })
            .collect();
        let mut written = 0;
        for i in 0..chunks.len() {
            let Ok(msg) = receivers[i % PARSERS].recv() else {
                break;
            };
            match msg {
                Parsed::Chunk(points) => written += store.write(&points)?,
                Parsed::Rest(rest) => {
                    written += store.write(&rest.map_err(LoadError::Parse)?)?;
                    break;
                }
            }
        }
        // Dropping the receivers stops parsers still working on chunks past a `Rest`.
        drop(receivers);
        Ok(written)
    })
}

/// The end of the first chunk of `rest`: just after the first line end at or beyond `target`
/// bytes, or the whole of `rest`.
fn chunk_end(rest: &[u8], target: usize) -> usize {
    if rest.len() <= target {
        return rest.len();
    }
    match rest[target..].iter().position(|&b| b == b'\n') {
        Some(i) => target + i + 1,
        None => rest.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::query::WindowQuery;

    fn lines(n: usize) -> String {
        (0..n)
            .map(|i| format!("cpu,host=h{} usage={} {}\n", i % 7, i, i + 1))
            .collect()
    }

    fn count(store: &Store) -> usize {
        let q = WindowQuery {
            measurement: "cpu".into(),
            field: "usage".into(),
            by: vec!["host".into()],
            filters: vec![],
            start_ns: 0,
            end_ns: i64::MAX,
        };
        store
            .window(&q)
            .unwrap()
            .iter()
            .map(|g| g.points.len())
            .sum()
    }

    #[test]
    fn chunked_load_writes_every_point() {
        // several chunks: the file is larger than CHUNK_BYTES
        let text = lines(CHUNK_BYTES / 8);
        assert!(text.len() > 2 * CHUNK_BYTES);
        let store = Store::scratch();
        let n = load(&store, text.as_bytes(), Precision::Nanos, 0).unwrap();
        assert_eq!(n, CHUNK_BYTES / 8);
        assert_eq!(count(&store), n);
    }

    #[test]
    fn errors_name_the_line_of_the_file() {
        let mut text = lines(CHUNK_BYTES / 8);
        let good = text.lines().count();
        text.push_str("cpu,host=x usage= 5\n");
        let store = Store::scratch();
        let e = load(&store, text.as_bytes(), Precision::Nanos, 0).unwrap_err();
        let whole = lineproto::parse(text.as_bytes(), Precision::Nanos, 0).unwrap_err();
        match e {
            LoadError::Parse(p) => {
                assert_eq!(p.line, good + 1);
                assert_eq!(
                    (p.line, p.column, &p.message),
                    (whole.line, whole.column, &whole.message)
                );
            }
            other => panic!("expected a parse error, got {other}"),
        }
    }

    #[test]
    fn a_string_across_a_chunk_boundary_loads_as_the_whole_file_does() {
        // lines up to 5 bytes short of the chunk size, then a string field with a line end
        // inside it: the first line end at or past the chunk size is inside the string
        let mut text = lines(CHUNK_BYTES / 40);
        let pad = CHUNK_BYTES - 5 - text.len() - " f=1 1\n".len();
        text.push_str(&format!("{} f=1 1\n", "p".repeat(pad)));
        assert_eq!(text.len(), CHUNK_BYTES - 5);
        text.push_str("note,host=a msg=\"two\nlines\",usage=1 5\n");
        text.push_str(&lines(10));
        assert_eq!(
            chunk_end(text.as_bytes(), CHUNK_BYTES),
            text.find("lines").unwrap()
        );
        let store = Store::scratch();
        let loaded = load(&store, text.as_bytes(), Precision::Nanos, 0);
        match lineproto::parse(text.as_bytes(), Precision::Nanos, 0) {
            Ok(points) => {
                let whole = Store::scratch();
                let n = whole.write(&points).unwrap();
                assert_eq!(loaded.unwrap(), n);
                assert_eq!(count(&store), count(&whole));
            }
            Err(w) => match loaded {
                Err(LoadError::Parse(l)) => assert_eq!((w.line, w.column), (l.line, l.column)),
                other => panic!("whole file fails at {w}, chunked gives {other:?}"),
            },
        }
    }
}
