//! allenai/cartography's training dynamics: `training_dynamics/dynamics_epoch_{e}.jsonl`, one
//! JSON object per line with `guid`, `logits_epoch_{e}` (a list of floats) and `gold`. Lines are
//! parsed in parallel, a block of the file at a time.

use super::{Located, Visit, path_error};
use crate::error::{Error, Result};
use crate::metrics::Kind;
use crate::read::long::{self, Columns};
use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use rayon::prelude::*;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Lines per record batch.
const LINES: usize = 1 << 15;
const BLOCK: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq)]
enum Guid {
    Int(i64),
    Str(String),
}

struct GuidVisitor;
impl<'de> Visitor<'de> for GuidVisitor {
    type Value = Guid;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an integer or string guid")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Guid, E> {
        Ok(Guid::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Guid, E> {
        i64::try_from(v).map(Guid::Int).map_err(|_| E::custom("guid does not fit in int64"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Guid, E> {
        Ok(Guid::Str(v.to_owned()))
    }
}
impl<'de> de::Deserialize<'de> for Guid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Guid, D::Error> {
        d.deserialize_any(GuidVisitor)
    }
}

/// Parses one line's object: `guid` and `gold` are returned, the logits appended to `values`,
/// and the `logits_epoch_{e}` key compared with the one expected (a mismatch is returned, so
/// no line allocates a key).
struct LineSeed<'a> {
    values: &'a mut Vec<f64>,
    expected_key: &'a str,
}

/// What a line held besides its logits (which went to the shared values).
struct LineFields {
    guid: Option<Guid>,
    gold: Option<i64>,
    /// Logits appended, or `None` when the line has no `logits*` key.
    n_logits: Option<usize>,
    /// A `logits*` key other than the expected one.
    wrong_key: Option<String>,
}

impl<'de> de::DeserializeSeed<'de> for LineSeed<'_> {
    type Value = LineFields;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<LineFields, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_> {
    type Value = LineFields;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object with guid, gold and logits_epoch_{e}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LineFields, A::Error> {
        let mut out = LineFields { guid: None, gold: None, n_logits: None, wrong_key: None };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "guid" => out.guid = Some(map.next_value()?),
                "gold" => out.gold = Some(map.next_value()?),
                k if k.starts_with("logits") => {
                    if k != self.expected_key {
                        out.wrong_key = Some(k.to_owned());
                    }
                    let before = self.values.len();
                    if let Some(n) = out.n_logits {
                        // A second logits key: keep only the last, as a JSON object would.
                        self.values.truncate(before - n);
                    }
                    let start = self.values.len();
                    map.next_value_seed(AppendFloats(self.values))?;
                    out.n_logits = Some(self.values.len() - start);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// Appends a JSON array of numbers to a vector; `null` (how pandas' `to_json`, which
/// allenai/cartography writes with, spells NaN) is NaN, for `nan_policy` to judge.
struct AppendFloats<'a>(&'a mut Vec<f64>);

impl<'de> de::DeserializeSeed<'de> for AppendFloats<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for AppendFloats<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of numbers")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Option<f64>>()? {
            self.0.push(v.unwrap_or(f64::NAN));
        }
        Ok(())
    }
}

/// The parsed lines of a run of consecutive lines, column by column.
#[derive(Default)]
struct Parsed {
    guids: Vec<Guid>,
    gold: Vec<i64>,
    values: Vec<f64>,
    /// Logits per line (all lines of a file must agree).
    widths: Vec<u32>,
    /// Each row's line in the file (0-based): blank lines have no row.
    lines: Vec<u64>,
}

/// Parses `lines` (the first is line `first`, 0-based) into columns; an error names the line.
fn parse_lines(
    lines: &[&str],
    first: usize,
    expected_key: &str,
    epoch: u32,
) -> std::result::Result<Parsed, (usize, String)> {
    let mut out = Parsed::default();
    for (k, text) in lines.iter().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let at = |m: String| (first + k, m);
        let mut de = serde_json::Deserializer::from_str(text);
        let fields = de::DeserializeSeed::deserialize(LineSeed { values: &mut out.values, expected_key }, &mut de)
            .and_then(|f| de.end().map(|()| f))
            .map_err(|e| {
                // Python's json.dumps writes non-finite floats as these, which JSON lacks.
                let literal = ["NaN", "Infinity"].into_iter().find(|l| text.contains(l));
                at(match literal {
                    Some(l) => format!("{e} ({l} is not JSON: write non-finite logits as null)"),
                    None => e.to_string(),
                })
            })?;
        if let Some(key) = fields.wrong_key {
            return Err(at(format!("key {key:?} in a file of epoch {epoch} (expected {expected_key:?})")));
        }
        out.guids.push(fields.guid.ok_or_else(|| at("no \"guid\" key".into()))?);
        out.gold.push(fields.gold.ok_or_else(|| at("no \"gold\" key".into()))?);
        let n = fields.n_logits.ok_or_else(|| at("no \"logits_epoch_{e}\" key".into()))?;
        out.widths.push(n as u32);
        out.lines.push((first + k) as u64);
    }
    Ok(out)
}

/// Lines parsed together by one task.
const PARSE_LINES: usize = 1024;

/// Visits batches of up to `LINES` lines, numbered from 0 (`Located::index`), each with its
/// rows' lines (`Located::lines`).
pub(super) fn for_each_batch(
    path: &Path,
    name_epoch: Option<u32>,
    kind: Kind,
    columns: &Columns,
    wanted: &(dyn Fn(usize) -> bool + Sync),
    visit: &mut Visit<'_>,
) -> Result<()> {
    if kind != Kind::Logits {
        return Err(path_error(path, "allenai/cartography's training dynamics hold logits, not probabilities"));
    }
    let epoch = name_epoch
        .ok_or_else(|| path_error(path, "cannot tell the epoch: expected a name like dynamics_epoch_3.jsonl"))?;
    let mut file = std::fs::File::open(path).map_err(|e| Error::Io { path: path.into(), source: e })?;
    let size = file.metadata().map_err(|e| Error::Io { path: path.into(), source: e })?.len().max(1) as f64;
    let expected_key = format!("logits_epoch_{epoch}");
    let (mut carry, mut block) = (Vec::new(), vec![0u8; BLOCK]);
    let (mut line_no, mut done, mut batch_index) = (0usize, 0u64, 0usize);
    loop {
        let n = file.read(&mut block).map_err(|e| Error::Io { path: path.into(), source: e })?;
        done += n as u64;
        carry.extend_from_slice(&block[..n]);
        let end = if n == 0 { carry.len() } else { carry.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) };
        if end > 0 {
            let text =
                std::str::from_utf8(&carry[..end]).map_err(|e| path_error(path, format!("not UTF-8 text: {e}")))?;
            let lines: Vec<&str> = text.lines().collect();
            for chunk in lines.chunks(LINES) {
                let first = line_no;
                line_no += chunk.len();
                if !wanted(batch_index) {
                    batch_index += 1;
                    continue;
                }
                let parts: Vec<_> = chunk
                    .par_chunks(PARSE_LINES)
                    .enumerate()
                    .map(|(p, lines)| parse_lines(lines, first + p * PARSE_LINES, &expected_key, epoch))
                    .collect();
                let mut rows = Parsed::default();
                for part in parts {
                    let part = part.map_err(|(line, m)| path_error(path, format!("line {}: {m}", line + 1)))?;
                    rows.guids.extend(part.guids);
                    rows.gold.extend(part.gold);
                    rows.values.extend(part.values);
                    rows.widths.extend(part.widths);
                    rows.lines.extend(part.lines);
                }
                let lines: Arc<[u64]> = std::mem::take(&mut rows.lines).into();
                let batch = to_batch(path, epoch, rows, columns, kind, &lines)?;
                visit(Located { batch, index: batch_index, lines: Some(lines) }, done as f64 / size)?;
                batch_index += 1;
            }
        }
        carry.drain(..end);
        if n == 0 {
            break;
        }
    }
    Ok(())
}

fn to_batch(
    path: &Path,
    epoch: u32,
    rows: Parsed,
    columns: &Columns,
    kind: Kind,
    lines: &[u64],
) -> Result<arrow_array::RecordBatch> {
    let c = rows.widths.first().copied().unwrap_or(0);
    if let Some(k) = rows.widths.iter().position(|&w| w != c) {
        return Err(path_error(
            path,
            format!("line {}: {} logits where earlier lines have {c}", lines[k] + 1, rows.widths[k]),
        ));
    }
    let n = rows.gold.len();
    let ids: ArrayRef = match rows.guids.first() {
        Some(Guid::Str(_)) => Arc::new(StringArray::from_iter_values(rows.guids.iter().map(|g| match g {
            Guid::Str(s) => s.clone(),
            Guid::Int(i) => i.to_string(),
        }))),
        _ => {
            if let Some(k) = rows.guids.iter().position(|g| matches!(g, Guid::Str(_))) {
                return Err(path_error(
                    path,
                    format!("line {}: string guid where earlier lines have integers", lines[k] + 1),
                ));
            }
            Arc::new(Int64Array::from_iter_values(rows.guids.iter().map(|g| match g {
                Guid::Int(i) => *i,
                Guid::Str(_) => unreachable!(),
            })))
        }
    };
    let values = Float64Array::from(rows.values);
    let epochs = Some(vec![epoch as i64; n]);
    long::batch(epochs, ids, rows.gold, Arc::new(values), (c as usize).max(1), columns, kind)
}
