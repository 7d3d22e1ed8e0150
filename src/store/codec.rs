//! Byte encodings of stored samples.
//!
//! - A *block* (`samples_<day>` rows) holds the time-sorted samples of one series: a format
//!   byte, then per sample its time and the f64 value, little endian. Format 3 (written since
//!   schema version 2) stores the time as the zigzag varint change of the time delta (delta
//!   of delta, the first delta from the row's `min_ts`): a regular series takes one byte per
//!   time instead of five or six, which cold reads feel. Format 1 (still read) stores the
//!   varint time delta from the previous sample.
//! - A *log row* (`log_<day>` rows) holds the samples of one commit for one day in write order:
//!   a format byte, then per sample the varint series id, the zigzag varint time delta from the
//!   previous sample (may be negative) and the f64 value.

/// First byte of per-series blocks with plain time deltas (written before schema version 2).
pub(super) const BLOCK_FORMAT_DELTA: u8 = 1;
/// First byte of per-series blocks with delta-of-delta times (written now).
pub(super) const BLOCK_FORMAT: u8 = 3;
/// First byte of every log row.
pub(super) const LOG_FORMAT: u8 = 2;

/// One sample of one series.
#[derive(Clone, Copy)]
pub(super) struct Sample {
    pub(super) id: u32,
    pub(super) ts: i64,
    pub(super) value: f64,
}

pub(super) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[inline]
pub(super) fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    // Fast path, without a branch per byte: a varint of at most 8 bytes read as one word
    // (block time deltas in ns are 5-6 bytes; cold reads decode tens of millions of them).
    if let Some(word) = data.get(*pos..*pos + 8) {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let stops = !word & 0x8080_8080_8080_8080;
        if stops != 0 {
            let len = stops.trailing_zeros() / 8 + 1;
            let x = if len == 8 {
                word
            } else {
                word & ((1u64 << (len * 8)) - 1)
            };
            // byte i's low 7 bits go to bits 7i..7i+6
            let v = (x & 0x7f)
                | ((x >> 1) & (0x7f << 7))
                | ((x >> 2) & (0x7f << 14))
                | ((x >> 3) & (0x7f << 21))
                | ((x >> 4) & (0x7f << 28))
                | ((x >> 5) & (0x7f << 35))
                | ((x >> 6) & (0x7f << 42))
                | ((x >> 7) & (0x7f << 49));
            *pos += len as usize;
            return Some(v);
        }
    }
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Encodes samples of one series, sorted by time (format [`BLOCK_FORMAT`]).
pub(super) fn encode_block(samples: &[Sample]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 + samples.len() * 10);
    buf.push(BLOCK_FORMAT);
    let (mut prev, mut prev_delta) = (samples[0].ts, 0i64);
    for s in samples {
        let delta = s.ts.wrapping_sub(prev);
        put_varint(&mut buf, zigzag(delta.wrapping_sub(prev_delta)));
        (prev, prev_delta) = (s.ts, delta);
        buf.extend_from_slice(&s.value.to_le_bytes());
    }
    buf
}

/// Decodes a block whose first sample is at `min_ts`, calling `f` for each sample in order.
pub(super) fn decode_block(
    min_ts: i64,
    data: &[u8],
    mut f: impl FnMut(i64, f64),
) -> Result<(), String> {
    let dod = match data.first() {
        Some(&BLOCK_FORMAT) => true,
        Some(&BLOCK_FORMAT_DELTA) => false,
        Some(v) => return Err(format!("unknown block format {v}")),
        None => return Err("empty block".into()),
    };
    let mut pos = 1;
    let (mut ts, mut delta) = (min_ts, 0i64);
    while pos < data.len() {
        let v = get_varint(data, &mut pos).ok_or("truncated time delta")?;
        delta = if dod {
            delta.wrapping_add(unzigzag(v))
        } else {
            i64::try_from(v).map_err(|_| "time delta out of range")?
        };
        if delta < 0 {
            return Err("time delta out of range".into());
        }
        ts = ts.checked_add(delta).ok_or("timestamp out of range")?;
        let bytes = data.get(pos..pos + 8).ok_or("truncated value")?;
        pos += 8;
        f(ts, f64::from_le_bytes(bytes.try_into().expect("8 bytes")));
    }
    Ok(())
}

pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Decodes a log row whose earliest sample is at `min_ts`, calling `f(series, ts, value)` for
/// each sample in write order.
pub(super) fn decode_log(
    min_ts: i64,
    data: &[u8],
    mut f: impl FnMut(u32, i64, f64),
) -> Result<(), String> {
    match data.first() {
        Some(&LOG_FORMAT) => {}
        Some(v) => return Err(format!("unknown log format {v}")),
        None => return Err("empty log row".into()),
    }
    let mut pos = 1;
    let mut ts = min_ts;
    while pos < data.len() {
        let id = get_varint(data, &mut pos).ok_or("truncated series id")?;
        let id = u32::try_from(id).map_err(|_| "series id out of range")?;
        let delta = unzigzag(get_varint(data, &mut pos).ok_or("truncated time delta")?);
        ts = ts.checked_add(delta).ok_or("timestamp out of range")?;
        let bytes = data.get(pos..pos + 8).ok_or("truncated value")?;
        pos += 8;
        f(
            id,
            ts,
            f64::from_le_bytes(bytes.try_into().expect("8 bytes")),
        );
    }
    Ok(())
}

/// Appends one sample to a log row; `prev` is the time of the previous sample of the row (its
/// `min_ts` for the first) and becomes `ts`.
pub(super) fn put_log_sample(data: &mut Vec<u8>, prev: &mut i64, id: u32, ts: i64, value: f64) {
    put_varint(data, u64::from(id));
    put_varint(data, zigzag(ts - *prev));
    data.extend_from_slice(&value.to_le_bytes());
    *prev = ts;
}
