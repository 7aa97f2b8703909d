"""DataMap: the table users get, and its interop with pandas, pyarrow and polars."""

from __future__ import annotations

import fastcarto
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest


@pytest.fixture(scope="module")
def datamap() -> fastcarto.DataMap:
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(4, 50, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 50)
    return fastcarto.compute(logits, labels, kind="logits")


def test_pyarrow_and_capsule_interop(datamap: fastcarto.DataMap) -> None:
    table = datamap.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.num_rows == len(datamap) == 50
    # Any consumer of the Arrow PyCapsule stream interface reads it without copies.
    assert pa.table(datamap).equals(table)
    assert table.schema.metadata[b"fastcarto.kind"] == b"logits"


def test_polars_interop(datamap: fastcarto.DataMap) -> None:
    pl = pytest.importorskip("polars")
    df = datamap.to_polars()
    assert isinstance(df, pl.DataFrame)
    assert df.columns == datamap.columns
    np.testing.assert_array_equal(df["confidence"].to_numpy(), datamap["confidence"])
    via_capsule = pl.DataFrame(datamap)
    assert via_capsule.equals(df)


def test_pandas_uses_nullable_integers_only_where_needed() -> None:
    # example 0 is never learned (first_learned null), example 1 always right
    logits = np.array([[[0.0, 5.0], [5.0, 0.0]], [[0.0, 5.0], [5.0, 0.0]]], dtype=np.float64)
    df = fastcarto.compute(logits, [0, 0], kind="logits").to_pandas()
    assert str(df["first_learned"].dtype) == "Int64"
    assert df["first_learned"].isna().tolist() == [True, False]
    assert df["forgetting"].dtype == np.int64
    assert df["never_learned"].tolist() == [True, False]
    assert df["first_learned"].tolist() == [pd.NA, 0]


def test_pandas_nullable_columns_hold_arrow_values_and_nulls() -> None:
    rng = np.random.default_rng(3)
    datamap = fastcarto.compute(
        rng.normal(size=(6, 5000, 3)), rng.integers(0, 3, 5000), kind="logits"
    )
    df = datamap.to_pandas()
    table = datamap.to_arrow()
    for name in ("first_learned", "stable_from"):
        column = table.column(name)
        assert 0 < column.null_count < len(column)
        expected = pd.array(column.to_pylist(), dtype="Int64")
        pd.testing.assert_series_equal(df[name], pd.Series(expected, name=name))


def test_getitem_and_columns(datamap: fastcarto.DataMap) -> None:
    assert datamap.columns[:3] == ["id", "label", "confidence"]
    assert datamap["n_epochs"].tolist() == [4] * 50
    with pytest.raises(KeyError, match="no column 'nope'"):
        datamap["nope"]


def test_repr_summarizes(datamap: fastcarto.DataMap) -> None:
    text = repr(datamap)
    assert text.startswith("DataMap(50 examples, logits, 4 epochs; mean confidence")
    multilabel = fastcarto.compute(np.zeros((2, 3, 2)), np.ones((3, 2), dtype=int), kind="logits")
    assert "6 rows" in repr(multilabel)
    assert isinstance(multilabel.to_pandas(), pd.DataFrame)
    assert multilabel.columns[:3] == ["id", "class", "label"]
