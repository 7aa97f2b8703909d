"""What a new user meets first: labels given as a path, messages that blame the right argument
and read as plain English, a hint for an unquoted glob, a warning for probabilities declared as
logits, a data map whose labels leave the points visible, and a demo that shows what it says."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa
import pytest
from fastcarto import cli
from matplotlib.backends.backend_agg import FigureCanvasAgg

E, N, C = 5, 60, 3


@pytest.fixture
def run() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(E, N, C)).astype(np.float32)
    labels = rng.integers(0, C, size=N)
    return logits, labels


def softmax(z: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(z.dtype)


def no_rust_ranges(message: str) -> None:
    """Ranges are written in words ("0 to 3"), never as Rust's ``0..=3`` or ``0..3``."""
    assert not re.search(r"\d\s*\.\.=?\s*[\d+{]", message), message


def test_no_rust_range_notation_in_messages(
    run: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]], tmp_path: Path
) -> None:
    logits, labels = run
    messages = []
    with pytest.raises(fastcarto.LabelError) as err:
        fastcarto.compute(logits, labels + 3, kind="logits")
    assert "(valid labels: 0 to 2)" in str(err.value)
    messages.append(str(err.value))
    acc = fastcarto.Accumulator(N, C, kind="logits")
    with pytest.raises(fastcarto.LabelError) as err:
        acc.update(logits[0], labels - 1)
    messages.append(str(err.value))
    a, b = (fastcarto.Accumulator(N, C, kind="logits") for _ in range(2))
    for e in (0, 2):
        a.update(logits[e], labels, epoch=e)
    for e in (1, 3):
        b.update(logits[e], labels, epoch=e)
    with pytest.raises(fastcarto.EpochOrderError) as err:
        a.merge(b)
    assert "epochs 0 to 2 and 1 to 3 interleave" in str(err.value)
    messages.append(str(err.value))
    with pytest.raises(IndexError) as index_err:
        fastcarto.trajectories([N], logits, labels, kind="logits")
    messages.append(str(index_err.value))
    with fastcarto.Recorder(tmp_path / "rec", kind="logits", n_classes=C) as rec:
        with pytest.raises(fastcarto.LabelError) as err:
            rec.record(0, np.arange(N), logits[0], labels + 3)
        messages.append(str(err.value))
    with pytest.raises(ValueError) as value_err:
        fastcarto.Recorder(tmp_path / "live", kind="logits", n_classes=C, accumulator=True)
    messages.append(str(value_err.value))
    for message in messages:
        no_rust_ranges(message)
