"""Seed corpus for the fuzz targets: small valid files of every format the readers take, each
prefixed by the byte that selects its format (the encoding of both the cargo-fuzz target
``read_file`` and the atheris target ``bytes``), in ``fuzz/corpus/read_file/``; and pickled
accumulator states (Arrow IPC streams) for the cargo-fuzz target ``state_bytes``, in
``fuzz/corpus/state_bytes/``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

CORPUS = Path(__file__).parent / "corpus"
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


def state_seeds() -> dict[str, bytes]:
    """Accumulator states as pickle stores them, by name: multi-class logits and probabilities,
    one-column binary and multi-label."""
    import fastcarto

    rng = np.random.default_rng(1)
    seeds: dict[str, bytes] = {}
    for name, classes, kind, multilabel in [
        ("logits", 3, "logits", False),
        ("probs", 3, "probs", False),
        ("binary", 1, "logits", False),
        ("multilabel", 3, "logits", True),
    ]:
        n = 5
        acc = fastcarto.Accumulator(n, classes, kind=kind, multilabel=multilabel)
        if multilabel:
            labels = rng.integers(0, 2, size=(n, classes))
        else:
            labels = np.arange(n) % max(classes, 2)
        for _ in range(3):
            x = rng.normal(size=(n, classes)).astype(np.float32)
            if kind == "probs":
                x = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
            acc.update(x, labels)
        seeds[name] = acc.__getstate__()["state"]
    return seeds


def main() -> None:
    for target, written in (("read_file", seeds()), ("state_bytes", state_seeds())):
        out = CORPUS / target
        out.mkdir(parents=True, exist_ok=True)
        for name, data in written.items():
            (out / name).write_bytes(data)
        print(f"{len(written)} seeds in {out}")


if __name__ == "__main__":
    main()
