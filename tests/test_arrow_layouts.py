"""Arrow layouts the long-table reader converts itself, and Arrow data across the binding.

The reader widens ids, labels and epochs of any integer width, reads string ids in any Arrow
string layout (plain, large, view, dictionary-encoded, sliced) and float16 outputs: each must give
the same map as the plain layout. Record batches and streams come in through the Arrow PyCapsule
interface and results go out as pyarrow objects.
"""

from __future__ import annotations

from typing import Any

import fastcarto
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastcarto import FastcartoError

E, N, C = 3, 12, 3


def long_table(ids: pa.Array | None = None, logits: pa.Array | None = None) -> pa.Table:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(E, N, C)).astype(np.float32)
    labels = rng.integers(0, C, size=N)
    default_ids = pa.array([f"ex{i:02d}" for i in range(N)] * E)
    default_logits = pa.FixedSizeListArray.from_arrays(values.ravel(), C)
    return pa.table(
        {
            "epoch": np.repeat(np.arange(E), N),
            "id": default_ids if ids is None else ids,
            "label": np.tile(labels, E),
            "logits": default_logits if logits is None else logits,
        }
    )


def frame(table: Any) -> pd.DataFrame:
    return fastcarto.compute(table, progress=False).to_pandas()


PLAIN = [f"ex{i:02d}" for i in range(N)] * E


@pytest.mark.parametrize(
    "ids",
    [
        pa.array(PLAIN, pa.large_string()),
        pa.array(PLAIN, pa.string_view()),
        pa.array(PLAIN).dictionary_encode(),
        pa.array(PLAIN, pa.large_string()).dictionary_encode(),
        pa.DictionaryArray.from_arrays(
            pa.array([i % N for i in range(N * E)], pa.int8()),
            pa.array(PLAIN[:N], pa.string_view()),
        ),
        pa.array(["pad", *PLAIN]).slice(1),
        pa.array(["pad", *PLAIN]).dictionary_encode().slice(1),
    ],
    ids=[
        "large",
        "view",
        "dictionary",
        "dictionary-large",
        "dictionary-int8-view",
        "sliced",
        "sliced-dictionary",
    ],
)
def test_every_string_layout_reads_as_plain_strings(ids: pa.Array) -> None:
    pd.testing.assert_frame_equal(frame(long_table(ids)), frame(long_table()))


def test_dictionary_of_integers_reads_as_their_decimal_text() -> None:
    numbers = pa.DictionaryArray.from_arrays(
        pa.array([i % N for i in range(N * E)], pa.int16()),
        pa.array(range(100, 100 + N), pa.int64()),
    )
    got = frame(long_table(numbers))
    assert got["id"].tolist() == [str(100 + i) for i in range(N)]
    text = pa.array([str(100 + i % N) for i in range(N * E)])
    pd.testing.assert_frame_equal(got, frame(long_table(text)))


def test_null_string_ids_are_errors_in_every_layout() -> None:
    with_null = [None, *PLAIN[1:]]
    for ids in (
        pa.array(with_null, pa.large_string()),
        pa.array(with_null, pa.string_view()),
        pa.DictionaryArray.from_arrays(
            pa.array([0, *([1] * (N * E - 1))], pa.int32()), pa.array([None, "a"], pa.string())
        ),
    ):
        with pytest.raises(FastcartoError, match=r'column "id" has 1 missing'):
            frame(long_table(ids))


def test_dictionary_of_floats_is_not_an_id() -> None:
    floats = pa.array([float(i % N) for i in range(N * E)]).dictionary_encode()
    with pytest.raises(FastcartoError, match="must hold integer or string ids"):
        frame(long_table(floats))


def test_unsigned_ids_above_int64_name_the_value() -> None:
    big = pa.array([2**63 + i % N for i in range(N * E)], pa.uint64())
    with pytest.raises(
        FastcartoError, match=rf'"id" does not fit in int64: value {2**63} is above'
    ):
        frame(long_table(big))
    fits = pa.array([2**62 + i % N for i in range(N * E)], pa.uint64())
    assert frame(long_table(fits))["id"].tolist() == [2**62 + i for i in range(N)]


def test_float16_outputs_read_as_their_float32_values() -> None:
    halves = np.random.default_rng(6).normal(size=(E * N * C)).astype(np.float16)
    as16 = pa.FixedSizeListArray.from_arrays(pa.array(halves, pa.float16()), C)
    as32 = pa.FixedSizeListArray.from_arrays(halves.astype(np.float32), C)
    pd.testing.assert_frame_equal(frame(long_table(logits=as16)), frame(long_table(logits=as32)))


class CapsuleOnly:
    """Arrow data known only by the PyCapsule protocol (not a pyarrow object)."""

    def __init__(self, data: Any, method: str) -> None:
        self._data, self._method = data, method

    def __getattr__(self, name: str) -> Any:
        if name == self._method:
            return getattr(self._data, name)
        raise AttributeError(name)


def test_record_batches_and_streams_cross_by_capsule() -> None:
    table = long_table()
    want = frame(table)
    batch = table.combine_chunks().to_batches()[0]
    pd.testing.assert_frame_equal(frame(CapsuleOnly(table, "__arrow_c_stream__")), want)
    pd.testing.assert_frame_equal(frame(CapsuleOnly(batch, "__arrow_c_stream__")), want)
    acc = fastcarto.Accumulator(n_examples=4, n_classes=2, kind="logits")
    acc.update(np.zeros((4, 2), np.float32), [0, 1, 0, 1])
    state = acc.to_arrow()
    assert isinstance(state, pa.RecordBatch)
    for source in (
        CapsuleOnly(state, "__arrow_c_array__"),
        CapsuleOnly(state, "__arrow_c_stream__"),
        pa.Table.from_batches([state.slice(0, 2), state.slice(2)]),
    ):
        again = fastcarto.Accumulator.from_arrow(source)
        pd.testing.assert_frame_equal(again.finalize().to_pandas(), acc.finalize().to_pandas())


def test_a_struct_array_with_null_rows_is_not_a_record_batch() -> None:
    acc = fastcarto.Accumulator(n_examples=2, n_classes=2, kind="logits")
    acc.update(np.zeros((2, 2), np.float32), [0, 1])
    state = acc.to_arrow()
    rows = pa.StructArray.from_arrays(
        state.columns, fields=list(state.schema), mask=pa.array([False, True])
    )
    with pytest.raises(ValueError, match="null rows"):
        fastcarto.Accumulator.from_arrow(rows)
    with pytest.raises(ValueError, match="record batch"):
        fastcarto.Accumulator.from_arrow(pa.array([1, 2]))
