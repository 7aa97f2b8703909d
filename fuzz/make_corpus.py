"""Seed corpus for the fuzz targets: small valid files of every format the readers take, each
prefixed by the byte that selects its format (the encoding of both the cargo-fuzz target
``read_file`` and the atheris target ``bytes``). Writes ``fuzz/corpus/read_file/``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

OUT = Path(__file__).parent / "corpus" / "read_file"
ARROW, ARROWS, PARQUET, JSONL = 0, 1, 2, 3


def table(rng: np.random.Generator, n: int, epochs: int, c: int, string_ids: bool) -> pa.Table:
    e = np.repeat(np.arange(epochs), n)
    ids = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    labels = ids % c
    logits = rng.normal(size=(n * epochs, c)).astype(np.float32)
    return pa.table(
        {
            "epoch": e,
            "id": [f"ex{i}" for i in ids] if string_ids else ids,
            "label": labels,
            "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), c),
        }
    )


def seeds() -> dict[str, bytes]:
    """Every seed, by name: the format byte, then the file's content."""
    rng = np.random.default_rng(0)
    seeds: dict[str, bytes] = {}
    for string_ids in (False, True):
        t = table(rng, 6, 3, 3, string_ids)
        tag = "str" if string_ids else "int"
        for compression in (None, "lz4", "zstd"):
            sink = io.BytesIO()
            options = ipc.IpcWriteOptions(compression=compression)
            with ipc.new_file(sink, t.schema, options=options) as w:
                for b in t.to_batches(max_chunksize=6):
                    w.write_batch(b)
            seeds[f"arrow-{tag}-{compression}"] = bytes([ARROW]) + sink.getvalue()
            sink = io.BytesIO()
            with ipc.new_stream(sink, t.schema, options=options) as w:
                for b in t.to_batches(max_chunksize=6):
                    w.write_batch(b)
            seeds[f"arrows-{tag}-{compression}"] = bytes([ARROWS]) + sink.getvalue()
        sink = io.BytesIO()
        pq.write_table(t, sink, row_group_size=6)
        seeds[f"parquet-{tag}"] = bytes([PARQUET]) + sink.getvalue()
    lines = [
        json.dumps({"guid": i, "logits_epoch_0": rng.normal(size=3).tolist(), "gold": i % 3})
        for i in range(6)
    ]
    seeds["jsonl"] = bytes([JSONL]) + ("\n".join(lines) + "\n").encode()
    return seeds


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    written = seeds()
    for name, data in written.items():
        (OUT / name).write_bytes(data)
    print(f"{len(written)} seeds in {OUT}")


if __name__ == "__main__":
    main()
