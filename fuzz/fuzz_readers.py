"""atheris fuzz targets for ``fastcarto.compute`` on keyed sources (see fuzz/README.md).

``bytes``: the input's first byte picks a file type (Arrow IPC file, IPC stream, Parquet,
cartography ``.jsonl``), the rest is that file's content. ``table``: the input drives the
construction of an Arrow table that is *almost* a long table (column types, widths, nulls,
names, list layouts, epochs, ids and labels all drawn from the input), read in memory and from a
file of a drawn format.

Either way ``compute`` must return a DataMap or raise one of fastcarto's exceptions (or
``TypeError``/``ValueError`` from its argument checks, or an ``OSError``); anything else — a
``pyo3_runtime.PanicException``, a pyarrow exception leaking through, an ``IndexError``, a crash
of the process — is a finding.

Run (from the repository root)::

    python fuzz/make_corpus.py                       # seeds in fuzz/corpus/{bytes,table}
    python fuzz/fuzz_readers.py bytes fuzz/corpus/bytes -max_total_time=300
    python fuzz/fuzz_readers.py table fuzz/corpus/table -max_total_time=300
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    import fastcarto
    import fastcarto._tables

import make_corpus
import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

#: What a bad source may raise. pyarrow's own exceptions subclass ValueError/OSError, so they are
#: rejected explicitly in :func:`check`.
ALLOWED = (fastcarto.FastcartoError, ValueError, TypeError, OSError)

NAMES = ("dynamics.arrow", "dynamics.arrows", "dynamics.parquet", "dynamics_epoch_0.jsonl")
TMP = Path(tempfile.mkdtemp(prefix="fastcarto-atheris-"))


def check(source: Any, **kwargs: Any) -> None:
    try:
        fastcarto.compute(source, progress=False, **kwargs)
    except ALLOWED as err:
        if isinstance(err, pa.ArrowException) and not isinstance(err, OSError):
            raise AssertionError(f"pyarrow exception leaked: {err!r}") from err


def mutate(fdp: atheris.FuzzedDataProvider, data: bytes) -> bytes:
    """Structured mutations of a valid file, driven by the input: bit flips, random bytes,
    interesting integers over lengths and offsets, truncation, duplicated or deleted ranges."""
    d = bytearray(data)
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        if not d:
            break
        at = fdp.ConsumeIntInRange(0, len(d) - 1)
        op = fdp.ConsumeIntInRange(0, 5)
        if op == 0:
            d[at] ^= 1 << fdp.ConsumeIntInRange(0, 7)
        elif op == 1:
            d[at] = fdp.ConsumeIntInRange(0, 255)
        elif op == 2:
            width = (1, 2, 4, 8)[fdp.ConsumeIntInRange(0, 3)]
            value = INTERESTING[fdp.ConsumeIntInRange(0, len(INTERESTING) - 1)]
            d[at : at + width] = (value % 2**64).to_bytes(8, "little")[:width]
        elif op == 3:
            del d[at:]
        elif op == 4:
            d[at:at] = d[at : at + fdp.ConsumeIntInRange(1, 64)]
        else:
            del d[at : at + fdp.ConsumeIntInRange(1, 64)]
    return bytes(d)


INTERESTING = (0, 1, -1, 7, 8, 255, 2**31 - 1, -(2**31), 2**32 - 1, 2**40, 2**63 - 1, -(2**63))
SEEDS = list(make_corpus.seeds().values())


def fuzz_bytes(data: bytes) -> None:
    """Half the inputs are files as they are, half mutate one of the valid seed files (atheris
    sees the coverage of the Python layer only, so raw inputs rarely get far into a format)."""
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        content = fdp.ConsumeBytes(fdp.remaining_bytes())
    else:
        content = mutate(fdp, SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
    if not content:
        return
    path = TMP / NAMES[content[0] % len(NAMES)]
    path.write_bytes(content[1:])
    check(path)
    check(path, kind="logits")


INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32(), pa.uint64()]
FLOAT_TYPES = [pa.float16(), pa.float32(), pa.float64()]


def draw_ints(fdp: atheris.FuzzedDataProvider, n: int, lo: int, hi: int) -> list[int]:
    return [fdp.ConsumeIntInRange(lo, hi) for _ in range(n)]


def with_nulls(fdp: atheris.FuzzedDataProvider, values: list[Any]) -> list[Any]:
    if values and fdp.ConsumeIntInRange(0, 9) == 0:
        values = list(values)
        values[fdp.ConsumeIntInRange(0, len(values) - 1)] = None
    return values


def int_column(fdp: atheris.FuzzedDataProvider, values: list[int]) -> pa.Array:
    t = INT_TYPES[fdp.ConsumeIntInRange(0, len(INT_TYPES) - 1)]
    try:
        return pa.array(with_nulls(fdp, values), t)
    except (pa.ArrowInvalid, OverflowError):
        return pa.array(values, pa.int64())


def outputs_column(fdp: atheris.FuzzedDataProvider, n: int, c: int) -> pa.Array:
    t = FLOAT_TYPES[fdp.ConsumeIntInRange(0, 2)]
    layout = fdp.ConsumeIntInRange(0, 5)
    rows = []
    for _ in range(n):
        width = c if layout != 5 else fdp.ConsumeIntInRange(0, c + 1)  # ragged
        rows.append(
            [
                fdp.ConsumeRegularFloat() if layout == 4 else fdp.ConsumeFloatInRange(-5, 5)
                for _ in range(width)
            ]
        )
    rows = with_nulls(fdp, rows)
    if layout == 3:
        return pa.array([None if r is None else [str(x) for x in r] for r in rows])  # non-numeric
    value_type = pa.float64() if t == pa.float16() else t
    if layout in (0, 4) and all(r is None or len(r) == c for r in rows):
        arr = pa.array(rows, pa.list_(value_type, c))
    elif layout == 1:
        arr = pa.array(rows, pa.large_list(value_type))
    else:
        arr = pa.array(rows, pa.list_(value_type))
    if t == pa.float16():
        arr = arr.cast(
            pa.list_(pa.float16(), c)
            if pa.types.is_fixed_size_list(arr.type)
            else pa.list_(pa.float16())
        )
    return arr


def draw_table(fdp: atheris.FuzzedDataProvider) -> tuple[pa.Table, str]:
    n = fdp.ConsumeIntInRange(0, 40)
    c = fdp.ConsumeIntInRange(0, 5)
    n_epochs = fdp.ConsumeIntInRange(1, 4)
    epochs = draw_ints(fdp, n, -1 if fdp.ConsumeIntInRange(0, 20) == 0 else 0, n_epochs)
    id_mode = fdp.ConsumeIntInRange(0, 4)
    if id_mode == 0:
        ids: pa.Array = int_column(fdp, draw_ints(fdp, n, 0, 2 * max(n, 1)))
    elif id_mode == 1:
        ids = pa.array(draw_ints(fdp, n, -(2**63), 2**63 - 1), pa.int64())
    elif id_mode == 2:
        ids = pa.array(with_nulls(fdp, [fdp.ConsumeUnicodeNoSurrogates(4) for _ in range(n)]))
    elif id_mode == 3:
        ids = pa.array([str(v) for v in draw_ints(fdp, n, 0, 9)]).dictionary_encode()
    else:
        ids = pa.array([fdp.ConsumeFloatInRange(0, 9) for _ in range(n)])
    labels = int_column(
        fdp, draw_ints(fdp, n, -1 if fdp.ConsumeIntInRange(0, 20) == 0 else 0, max(c, 2))
    )
    kind = "logits" if fdp.ConsumeBool() else "probs"
    columns = {
        "epoch": int_column(fdp, epochs),
        "id": ids,
        "label": labels,
        kind: outputs_column(fdp, n, c),
    }
    drop = fdp.ConsumeIntInRange(0, 12)
    names = list(columns)
    if drop < len(names):
        del columns[names[drop]]
    return pa.table(columns), kind


def fuzz_table(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    try:
        table, kind = draw_table(fdp)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return  # not a table pyarrow can build
    split = fdp.ConsumeIntInRange(1, 4)
    table = pa.Table.from_batches(
        table.to_batches(max_chunksize=max(1, table.num_rows // split)), table.schema
    )
    options: dict[str, Any] = {}
    if fdp.ConsumeBool():
        options["nan_policy"] = "omit"
    if fdp.ConsumeIntInRange(0, 3) == 0:
        options["epochs"] = fdp.ConsumeIntInRange(1, 3)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        options["require_complete"] = True
    check(table, **options)
    check(pa.RecordBatchReader.from_batches(table.schema, table.to_batches()), kind=kind, **options)
    fmt = fdp.ConsumeIntInRange(0, 3)
    path = TMP / ["t.arrow", "t.arrows", "t.parquet", "epoch_2.feather"][fmt]
    try:
        if fmt == 0:
            feather.write_feather(
                table, path, compression=["lz4", "zstd", "uncompressed"][split % 3]
            )
        elif fmt == 1:
            with ipc.new_stream(path, table.schema) as w:
                w.write_table(table)
        elif fmt == 2:
            pq.write_table(table, path, row_group_size=max(1, split * 3))
        else:
            feather.write_feather(
                table.drop_columns(["epoch"]) if "epoch" in table.column_names else table, path
            )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return
    check(path, **options)


def main() -> None:
    warnings.simplefilter("ignore")
    target = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in ("bytes", "table") else "bytes"
    os.environ.setdefault("FASTCARTO_NUM_THREADS", "2")
    np.seterr(all="ignore")
    atheris.Setup(sys.argv, fuzz_bytes if target == "bytes" else fuzz_table)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
