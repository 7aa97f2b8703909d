"""The Ray Data and PySpark recipes of docs/dask.md (``examples/ray_datamap.py``,
``examples/spark_datamap.py``) against ``fastcarto.compute``, bit for bit. Marked ``ray`` and
``spark``; skipped unless the package imports (neither is in the test extra: ``pip install
fastcarto[recipes]``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastcarto
import pyarrow as pa
import pytest

EXAMPLES = str(Path(__file__).resolve().parents[1] / "examples")
sys.path.insert(0, EXAMPLES)

from ray_datamap import long_table  # noqa: E402


def assert_same_map(got: fastcarto.DataMap, table: pa.Table) -> None:
    want = fastcarto.compute(table, kind="logits", progress=False).to_arrow()
    have = got.to_arrow()
    assert have.column_names == want.column_names
    for name in want.column_names:
        assert have.column(name).equals(want.column(name)), name


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    # Ray's workers import the recipe's functions by module name.
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": EXAMPLES}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.ray
# Ray's own modules warn about their deprecated settings on import.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_ray_recipe_equals_compute(ray_session: Any) -> None:
    from ray_datamap import ray_datamap

    table = long_table(300, 3, 6, seed=1)
    ds = ray_session.data.from_arrow(table).repartition(5)
    dm = ray_datamap(ds, n_examples=300, n_classes=3, kind="logits", shards=4)
    assert_same_map(dm, table)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    # Spark's Python workers import the recipe's functions by module name.
    session.sparkContext.addPyFile(str(Path(EXAMPLES) / "spark_datamap.py"))
    try:
        yield session
    finally:
        session.stop()


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_spark_recipe_equals_compute(spark: Any) -> None:
    from spark_datamap import spark_datamap

    table = long_table(300, 3, 6, seed=2)
    # Spark's arrays of floats are float64: compare with compute on the same values.
    table = table.set_column(3, "logits", table.column("logits").cast(pa.list_(pa.float64(), 3)))
    pdf = table.to_pandas()
    pdf["logits"] = [list(map(float, v)) for v in pdf["logits"]]
    df = spark.createDataFrame(pdf).repartition(3)
    dm = spark_datamap(df, n_examples=300, n_classes=3, kind="logits", shards=4)
    assert_same_map(dm, table)
