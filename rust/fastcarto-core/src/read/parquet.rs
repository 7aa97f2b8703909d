//! Parquet: row groups decoded in parallel, a few at a time, reading only the needed columns.
//! The parquet crate panics on some malformed files; those panics become errors ([`guarded`]).

use super::{Located, Visit, guarded, one_line, path_error};
use crate::error::{Error, Result};
use crate::metrics::Kind;
use crate::read::long::Columns;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;
use std::path::Path;

const BATCH_ROWS: usize = 1 << 16;

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|e| Error::Io { path: path.into(), source: e })?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| path_error(path, format!("not a readable Parquet file: {}", one_line(e))))
}

/// Reads one row group (only the columns a long table needs) into record batches.
fn row_group(path: &Path, names: &[&str], group: usize) -> Result<Vec<arrow_array::RecordBatch>> {
    let b = builder(path)?;
    let roots: Vec<usize> = b
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(b.parquet_schema(), roots);
    let reader = b
        .with_row_groups(vec![group])
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| path_error(path, format!("row group {group}: {}", one_line(e))))?;
    let corrupt = |e: arrow_schema::ArrowError| {
        path_error(path, format!("row group {group} is corrupt or truncated: {}", one_line(e)))
    };
    reader.map(|b| b.map_err(corrupt)).collect()
}

/// Visits each row group's batches; `wanted` and `Located::index` count row groups.
pub(super) fn for_each_batch(
    path: &Path,
    columns: &Columns,
    kind: Kind,
    wanted: &(dyn Fn(usize) -> bool + Sync),
    visit: &mut Visit<'_>,
) -> Result<()> {
    let groups = guarded(path, "footer", || Ok(builder(path)?.metadata().num_row_groups()))?;
    let names = [columns.epoch.as_str(), columns.id.as_str(), columns.label.as_str(), columns.outputs_name(kind)];
    let wanted: Vec<usize> = (0..groups).filter(|&g| wanted(g)).collect();
    let window = rayon::current_num_threads().max(1);
    for chunk in wanted.chunks(window) {
        let decoded: Vec<Result<_>> = chunk
            .par_iter()
            .map(|&g| guarded(path, &format!("row group {g}"), || row_group(path, &names, g)))
            .collect();
        for (&g, batches) in chunk.iter().zip(decoded) {
            for batch in batches? {
                visit(Located { batch, index: g, lines: None }, (g + 1) as f64 / groups as f64)?;
            }
        }
    }
    Ok(())
}
