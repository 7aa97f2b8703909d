//! allenai/cartography's training dynamics: `training_dynamics/dynamics_epoch_{e}.jsonl`, one
//! JSON object per line with `guid`, `logits_epoch_{e}` (a list of floats) and `gold`. Lines are
//! parsed in parallel, a block of the file at a time.

use super::{Located, Visit, path_error};
use crate::error::{Error, Result};
use crate::long::{self, Columns};
use crate::options::Kind;
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

#[derive(Debug)]
struct Line {
    guid: Guid,
    gold: i64,
    logits: Vec<f64>,
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

struct LineVisitor;
impl<'de> Visitor<'de> for LineVisitor {
    type Value = (Option<Guid>, Option<i64>, Option<(String, Vec<f64>)>);
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object with guid, gold and logits_epoch_{e}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut guid, mut gold, mut logits) = (None, None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "guid" => guid = Some(map.next_value()?),
                "gold" => gold = Some(map.next_value()?),
                k if k.starts_with("logits") => logits = Some((k.to_owned(), map.next_value()?)),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((guid, gold, logits))
    }
}

fn parse_line(text: &str) -> std::result::Result<(Line, String), String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let (guid, gold, logits) = de.deserialize_map(LineVisitor).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    let guid = guid.ok_or("no \"guid\" key")?;
    let gold = gold.ok_or("no \"gold\" key")?;
    let (key, logits) = logits.ok_or("no \"logits_epoch_{e}\" key")?;
    Ok((Line { guid, gold, logits }, key))
}

/// Visits batches of `LINES` lines; `Located::index` is the first line's number (0-based).
pub(super) fn for_each_batch(
    path: &Path,
    name_epoch: Option<u32>,
    kind: Kind,
    columns: &Columns,
    wanted: &(dyn Fn(usize) -> bool + Sync),
    visit: &mut Visit<'_>,
) -> Result<()> {
    if kind != Kind::Logits {
        return Err(path_error(path, "allenai/cartography's training dynamics hold logits: pass kind=\"logits\""));
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
                let parsed: Vec<std::result::Result<Option<(Line, String)>, String>> = chunk
                    .par_iter()
                    .map(|l| if l.trim().is_empty() { Ok(None) } else { parse_line(l).map(Some) })
                    .collect();
                let mut rows = Vec::with_capacity(chunk.len());
                for (k, p) in parsed.into_iter().enumerate() {
                    let located = |m: String| path_error(path, format!("line {}: {m}", first + k + 1));
                    if let Some((line, key)) = p.map_err(located)? {
                        if key != expected_key {
                            return Err(located(format!(
                                "key {key:?} in a file of epoch {epoch} (expected {expected_key:?})"
                            )));
                        }
                        rows.push(line);
                    }
                }
                let batch = to_batch(path, epoch, &rows, columns, kind, first)?;
                visit(Located { batch, index: batch_index }, done as f64 / size)?;
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
    rows: &[Line],
    columns: &Columns,
    kind: Kind,
    first: usize,
) -> Result<arrow_array::RecordBatch> {
    let c = rows.first().map_or(0, |r| r.logits.len());
    if let Some(k) = rows.iter().position(|r| r.logits.len() != c) {
        return Err(path_error(
            path,
            format!("line {}: {} logits where earlier lines have {c}", first + k + 1, rows[k].logits.len()),
        ));
    }
    let ids: ArrayRef = match rows.first().map(|r| &r.guid) {
        Some(Guid::Str(_)) => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| match &r.guid {
            Guid::Str(s) => s.clone(),
            Guid::Int(i) => i.to_string(),
        }))),
        _ => {
            if let Some(k) = rows.iter().position(|r| matches!(r.guid, Guid::Str(_))) {
                return Err(path_error(
                    path,
                    format!("line {}: string guid where earlier lines have integers", first + k + 1),
                ));
            }
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| match r.guid {
                Guid::Int(i) => i,
                Guid::Str(_) => unreachable!(),
            })))
        }
    };
    let values = Float64Array::from_iter_values(rows.iter().flat_map(|r| r.logits.iter().copied()));
    let labels = rows.iter().map(|r| r.gold).collect();
    let epochs = Some(vec![epoch as i64; rows.len()]);
    long::batch(epochs, ids, labels, Arc::new(values), c.max(1), columns, kind)
}
