"""The streaming, mergeable `fastcarto.Accumulator`: equivalence with `fastcarto.compute`,
minibatches, merge laws, all-or-nothing updates, serialization, and fork safety.

`fastcarto.compute` on the stacked array is the oracle throughout.
"""

from __future__ import annotations

import inspect
import io
import multiprocessing
import pickle
import re
from typing import Any

import fastcarto
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import FEWEST_EXAMPLES
from fastcarto import (
    Accumulator,
    EpochOrderError,
    FastcartoError,
    IncompatibleStateError,
    LabelError,
    NonFiniteError,
)
from helpers import assert_maps_equal, raises
from hypothesis import given
from hypothesis import strategies as st
from reference import sigmoid, softmax

RTOL = 1e-12
ATOL = 1e-12  # sums of margins may cancel to ~0, where a relative tolerance means nothing


# --------------------------------------------------------------------------------------------
# helpers


def make_run(
    seed: int,
    n_epochs: int,
    n_examples: int,
    n_classes: int,
    kind: str = "logits",
    *,
    multilabel: bool = False,
    dtype: Any = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (E, N, C) whose predictions flip between epochs, and matching labels."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n_epochs, n_examples, n_classes))
    if kind == "probs":
        out = sigmoid(z) if (multilabel or n_classes == 1) else softmax(z)
    else:
        out = z
    if multilabel:
        labels = rng.integers(0, 2, size=(n_examples, n_classes))
    else:
        labels = rng.integers(0, max(n_classes, 2), size=n_examples)
    return out.astype(dtype), labels


def planned_run(
    plan: dict[str, Any],
) -> tuple[int, int, int, str, bool, np.ndarray, np.ndarray]:
    """A plan's shape and its run: ``(epochs, examples, classes, kind, multilabel, outputs,
    labels)``."""
    e_, n, c = plan["n_epochs"], plan["n_examples"], plan["n_classes"]
    kind, ml = plan["kind"], plan["multilabel"]
    x, y = make_run(plan["seed"], e_, n, c, kind, multilabel=ml)
    return e_, n, c, kind, ml, x, y


def copy_acc(acc: Accumulator) -> Accumulator:
    out = pickle.loads(pickle.dumps(acc))
    assert isinstance(out, Accumulator)
    return out


def fed(
    outputs: np.ndarray,
    labels: np.ndarray,
    epochs: range | list[int],
    *,
    kind: str,
    multilabel: bool = False,
    compat: str | None = None,
) -> Accumulator:
    """An accumulator fed whole epochs `epochs` of `outputs` (explicit epoch numbers)."""
    _, n, c = outputs.shape
    acc = Accumulator(n, c, kind=kind, multilabel=multilabel, compat=compat)
    for e in epochs:
        acc.update(outputs[e], labels, epoch=e)
    return acc


def state_snapshot(acc: Accumulator) -> pa.RecordBatch:
    return acc.to_arrow()


def assert_unchanged(
    acc: Accumulator, before_state: pa.RecordBatch, before_map: fastcarto.DataMap
) -> None:
    assert acc.to_arrow().equals(before_state)
    assert_maps_equal(acc.finalize(), before_map, exact=True)


# --------------------------------------------------------------------------------------------
# whole epochs == compute


CASES = [
    # (n_classes, kind, multilabel)
    (3, "logits", False),
    (5, "probs", False),
    (2, "logits", False),
    (1, "logits", False),
    (1, "probs", False),
    (4, "logits", True),
    (3, "probs", True),
]


@pytest.mark.parametrize(("n_classes", "kind", "multilabel"), CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_whole_epochs_equal_compute(
    n_classes: int, kind: str, multilabel: bool, dtype: Any
) -> None:
    x, y = make_run(1, 6, 37, n_classes, kind, multilabel=multilabel, dtype=dtype)
    acc = Accumulator(37, n_classes, kind=kind, multilabel=multilabel)
    for e in range(6):
        acc.update(x[e], y)  # epoch defaults to the next one
    assert acc.last_epoch == 5
    expected = fastcarto.compute(x, y, kind=kind)
    got = acc.finalize()
    assert_maps_equal(got, expected)
    assert len(got) == 37 * (n_classes if multilabel else 1)
    assert got["n_epochs"].tolist() == [6] * len(got)


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_binary_one_column_flat_or_column_outputs(kind: str) -> None:
    x, y = make_run(2, 4, 20, 1, kind)
    flat = Accumulator(20, 1, kind=kind)
    column = Accumulator(20, 1, kind=kind)
    for e in range(4):
        flat.update(x[e, :, 0].copy(), y)
        column.update(x[e], y)
    expected = fastcarto.compute(x, y, kind=kind)
    assert_maps_equal(flat.finalize(), expected)
    assert_maps_equal(column.finalize(), expected)


@pytest.mark.parametrize("compat", ["cartography", "aum", "dataiq", "toneva"])
def test_compat_tables_equal_compute(compat: str) -> None:
    x, y = make_run(3, 5, 30, 3)
    acc = Accumulator(30, 3, kind="logits", compat=compat)
    for e in range(5):
        acc.update(x[e], y)
    assert acc.compat == compat
    assert_maps_equal(acc.finalize(), fastcarto.compute(x, y, kind="logits", compat=compat))


@pytest.mark.parametrize("ddof", [0, 1])
def test_finalize_ddof_equals_compute(ddof: int) -> None:
    x, y = make_run(4, 5, 12, 3)
    acc = fed(x, y, range(5), kind="logits")
    assert_maps_equal(acc.finalize(ddof=ddof), fastcarto.compute(x, y, kind="logits", ddof=ddof))


# --------------------------------------------------------------------------------------------
# minibatches


@st.composite
def minibatch_plan(draw: st.DrawFn) -> dict[str, Any]:
    n_classes, kind, multilabel = draw(st.sampled_from(CASES))
    return {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "n_epochs": draw(st.integers(1, 5)),
        "n_examples": draw(st.integers(1, 40)),
        "n_classes": n_classes,
        "kind": kind,
        "multilabel": multilabel,
    }


@FEWEST_EXAMPLES
@given(plan=minibatch_plan())
def test_shuffled_minibatches_equal_whole_epochs(plan: dict[str, Any]) -> None:
    e_, n, c, kind, ml, x, y = planned_run(plan)
    rng = np.random.default_rng(plan["seed"] + 1)
    acc = Accumulator(n, c, kind=kind, multilabel=ml)
    for e in range(e_):
        perm = rng.permutation(n)
        cuts = (
            np.sort(
                rng.choice(np.arange(1, n), size=min(n - 1, int(rng.integers(0, 5))), replace=False)
            )
            if n > 1
            else []
        )
        for idx in np.split(perm, cuts):
            if len(idx) == 0:
                continue
            acc.update(x[e][idx], y[idx], epoch=e, ids=idx)
    whole = fed(x, y, range(e_), kind=kind, multilabel=ml)
    assert_maps_equal(acc.finalize(), whole.finalize())
    assert_maps_equal(acc.finalize(), fastcarto.compute(x, y, kind=kind))
    assert acc.last_epoch == e_ - 1


def test_minibatch_index_dtypes_and_lists() -> None:
    x, y = make_run(5, 2, 10, 3)
    ref = fed(x, y, range(2), kind="logits")
    for make_index in (
        lambda a: a.astype(np.int32),
        lambda a: a.astype(np.uint64),
        lambda a: a.astype(np.uint8),
        lambda a: a.tolist(),
    ):
        acc = Accumulator(10, 3, kind="logits")
        for e in range(2):
            for idx in (np.arange(0, 10, 2), np.arange(1, 10, 2)):
                acc.update(x[e][idx], y[idx], epoch=e, ids=make_index(idx))
        assert_maps_equal(acc.finalize(), ref.finalize())


def test_examples_seen_in_some_epochs_only() -> None:
    """Minibatches that skip an example in some epoch: it has fewer epochs, like omit."""
    x, y = make_run(6, 4, 8, 3)
    acc = Accumulator(8, 3, kind="logits")
    for e in range(4):
        idx = np.arange(8) if e != 2 else np.arange(1, 8)
        acc.update(x[e][idx], y[idx], epoch=e, ids=idx)
    dm = acc.finalize()
    assert dm["n_epochs"].tolist() == [3] + [4] * 7
    sub = fastcarto.compute(x, y, kind="logits", epochs=[0, 1, 3])
    first = fastcarto.DataMap(dm.to_arrow().slice(0, 1), kind="logits")
    assert_maps_equal(first, fastcarto.DataMap(sub.to_arrow().slice(0, 1), kind="logits"))


# --------------------------------------------------------------------------------------------
# a map after every epoch


@pytest.mark.parametrize(
    ("n_classes", "kind", "multilabel"),
    [(3, "logits", False), (1, "probs", False), (2, "logits", True)],
)
def test_map_after_each_epoch_equals_compute_prefix(
    n_classes: int, kind: str, multilabel: bool
) -> None:
    x, y = make_run(7, 5, 25, n_classes, kind, multilabel=multilabel)
    acc = Accumulator(25, n_classes, kind=kind, multilabel=multilabel)
    for k in range(5):
        acc.update(x[k], y)
        assert acc.last_epoch == k
        first = acc.finalize()
        assert_maps_equal(first, fastcarto.compute(x, y, kind=kind, epochs=k + 1))
        # finalize does not consume or change anything
        assert_maps_equal(acc.finalize(), first, exact=True)
    assert_maps_equal(acc.finalize(), fastcarto.compute(x, y, kind=kind))


def test_epochs_past_the_packed_state_widen_it_in_place() -> None:
    """An accumulator keeps 64 bytes per example while epoch numbers stay below 4,095; an update
    at epoch 5,000 (here a minibatch) widens it to the 88-byte form with nothing lost, and a
    pickled packed accumulator carries on the same way."""
    x, y = make_run(3, 3, 40, 3, "logits")
    numbers = [0, 4094, 5000]
    spread = np.zeros((5001, 40, 3), np.float32)
    spread[numbers] = x
    want = fastcarto.compute(spread, y, kind="logits", epochs=numbers).to_pandas()
    acc = Accumulator(40, 3, kind="logits")
    acc.update(x[0], y, epoch=0)
    acc.update(x[1], y, epoch=4094)
    resumed = pickle.loads(pickle.dumps(acc))
    for a in (acc, resumed):
        half = np.arange(0, 40, 2)
        a.update(x[2][half], y[half], epoch=5000, ids=half)
        a.update(x[2][half + 1], y[half + 1], epoch=5000, ids=half + 1)
        got = a.finalize().to_pandas()
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert acc.last_epoch == 5000


def test_fresh_accumulator_finalizes_to_empty_rows() -> None:
    acc = Accumulator(4, 3, kind="logits")
    assert acc.last_epoch is None
    dm = acc.finalize()
    assert len(dm) == 4
    assert dm["n_epochs"].tolist() == [0, 0, 0, 0]
    assert np.isnan(dm["confidence"]).all()
    assert dm["forgetting"].tolist() == [0, 0, 0, 0]
    assert not dm["never_learned"].any()


def test_fresh_accumulator_map_repr_does_not_warn() -> None:
    # pytest turns warnings into errors: the repr of an all-NaN map must not emit
    # numpy's "Mean of empty slice" RuntimeWarning.
    dm = Accumulator(4, 3, kind="logits").finalize()
    text = repr(dm)
    assert "4 examples" in text


# --------------------------------------------------------------------------------------------
# merge laws


@st.composite
def merge_plan(draw: st.DrawFn) -> dict[str, Any]:
    n_classes, kind, multilabel = draw(st.sampled_from(CASES))
    n_epochs = draw(st.integers(2, 6))
    return {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "n_epochs": n_epochs,
        "n_examples": draw(st.integers(1, 30)),
        "n_classes": n_classes,
        "kind": kind,
        "multilabel": multilabel,
        "split": draw(st.integers(1, n_epochs - 1)),
    }


@FEWEST_EXAMPLES
@given(plan=merge_plan())
def test_merge_epoch_split_equals_whole_in_either_order(plan: dict[str, Any]) -> None:
    e_, _, _, kind, ml, x, y = planned_run(plan)
    k = plan["split"]
    whole = fed(x, y, range(e_), kind=kind, multilabel=ml).finalize()

    early = fed(x, y, range(k), kind=kind, multilabel=ml)
    late = fed(x, y, range(k, e_), kind=kind, multilabel=ml)
    ab = copy_acc(early)
    ab.merge(late)
    assert_maps_equal(ab.finalize(), whole)
    assert ab.last_epoch == e_ - 1

    ba = copy_acc(late)
    ba.merge(early)
    assert_maps_equal(ba.finalize(), whole)
    assert ba.last_epoch == e_ - 1

    assert_maps_equal(ab.finalize(), fastcarto.compute(x, y, kind=kind))


@FEWEST_EXAMPLES
@given(plan=merge_plan(), data=st.data())
def test_merge_disjoint_examples_equals_whole(plan: dict[str, Any], data: st.DataObject) -> None:
    e_, n, c, kind, ml, x, y = planned_run(plan)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    parts = []
    for sel in (np.flatnonzero(mask), np.flatnonzero(~mask)):
        acc = Accumulator(n, c, kind=kind, multilabel=ml)
        if len(sel):
            for e in range(e_):
                acc.update(x[e][sel], y[sel], epoch=e, ids=sel)
        parts.append(acc)
    a, b = parts
    a.merge(b)
    whole = fed(x, y, range(e_), kind=kind, multilabel=ml).finalize()
    assert_maps_equal(a.finalize(), whole)


@FEWEST_EXAMPLES
@given(plan=merge_plan())
def test_merge_with_empty_is_identity(plan: dict[str, Any]) -> None:
    e_, n, c, kind, ml, x, y = planned_run(plan)
    acc = fed(x, y, range(e_), kind=kind, multilabel=ml)
    before = acc.to_arrow()

    left = copy_acc(acc)
    left.merge(Accumulator(n, c, kind=kind, multilabel=ml))
    assert left.to_arrow().equals(before)

    right = Accumulator(n, c, kind=kind, multilabel=ml)
    right.merge(acc)
    assert right.to_arrow().equals(before)
    assert_maps_equal(right.finalize(), acc.finalize(), exact=True)
    # `other` is not modified by a merge
    assert acc.to_arrow().equals(before)


@FEWEST_EXAMPLES
@given(
    seed=st.integers(0, 2**32 - 1),
    n_epochs=st.integers(3, 7),
    cuts=st.lists(st.integers(1, 6), min_size=2, max_size=2, unique=True),
    case=st.sampled_from(CASES),
)
def test_merge_is_associative(
    seed: int, n_epochs: int, cuts: list[int], case: tuple[int, str, bool]
) -> None:
    c, kind, ml = case
    lo, hi = sorted(min(k, n_epochs - 1) for k in cuts)
    if lo == hi:
        hi = min(lo + 1, n_epochs)
    x, y = make_run(seed, n_epochs, 15, c, kind, multilabel=ml)
    a = fed(x, y, range(lo), kind=kind, multilabel=ml)
    b = fed(x, y, range(lo, hi), kind=kind, multilabel=ml)
    c3 = fed(x, y, range(hi, n_epochs), kind=kind, multilabel=ml)

    left = copy_acc(a)
    left.merge(b)
    left.merge(c3)  # (a + b) + c

    bc = copy_acc(b)
    bc.merge(c3)
    right = copy_acc(a)
    right.merge(bc)  # a + (b + c)

    scrambled = copy_acc(c3)
    scrambled.merge(b)
    scrambled.merge(a)  # (c + b) + a: each merge joins adjacent epoch ranges

    whole = fastcarto.compute(x, y, kind=kind)
    for acc in (left, right, scrambled):
        assert_maps_equal(acc.finalize(), whole)


def test_merge_split_epochs_and_examples_at_once() -> None:
    """Shards by examples inside each of two epoch ranges: four states merge into the whole."""
    x, y = make_run(8, 6, 20, 3)
    idx_a, idx_b = np.arange(0, 20, 3), np.setdiff1d(np.arange(20), np.arange(0, 20, 3))
    shards = []
    for epochs in (range(3), range(3, 6)):
        for idx in (idx_a, idx_b):
            acc = Accumulator(20, 3, kind="logits")
            for e in epochs:
                acc.update(x[e][idx], y[idx], epoch=e, ids=idx)
            shards.append(acc)
    total = shards[3]
    for s in (shards[0], shards[2], shards[1]):
        total.merge(s)
    assert_maps_equal(total.finalize(), fastcarto.compute(x, y, kind="logits"))


# --------------------------------------------------------------------------------------------
# merge errors


def _merge_fails(acc: Accumulator, other: Any, cls: type[BaseException], *fragments: str) -> None:
    before_state, before_map = acc.to_arrow(), acc.finalize()
    other_before = other.to_arrow() if isinstance(other, Accumulator) else None
    with raises(cls, *fragments):
        acc.merge(other)
    assert_unchanged(acc, before_state, before_map)
    if other_before is not None:
        assert other.to_arrow().equals(other_before)


def test_merge_duplicate_epoch_is_epoch_order_error() -> None:
    x, y = make_run(9, 3, 6, 3)
    a = fed(x, y, [0, 1], kind="logits")
    b = fed(x, y, [1, 2], kind="logits")
    _merge_fails(a, b, EpochOrderError, "example 0")


def test_merge_same_single_epoch_is_duplicate() -> None:
    x, y = make_run(9, 3, 6, 3)
    a = fed(x, y, [1], kind="logits")
    b = fed(x, y, [1], kind="logits")
    _merge_fails(a, b, EpochOrderError, "epoch 1", "example 0")


def test_merge_with_itself_is_a_duplicate_or_nothing() -> None:
    x, y = make_run(9, 3, 6, 3)
    a = fed(x, y, [1], kind="logits")
    _merge_fails(a, a, EpochOrderError, "epoch 1", "example 0")
    empty = fastcarto.Accumulator(6, 3, kind="logits")
    empty.merge(empty)
    assert empty.finalize().to_pandas()["n_epochs"].tolist() == [0] * 6


def test_merge_interleaved_epochs_is_epoch_order_error() -> None:
    x, y = make_run(10, 3, 6, 3)
    a = fed(x, y, [0, 2], kind="logits")
    b = fed(x, y, [1], kind="logits")
    _merge_fails(a, b, EpochOrderError, "interleave")
    _merge_fails(b, a, EpochOrderError, "interleave")


def test_merge_conflict_in_one_example_only_changes_nothing() -> None:
    """The last example overlaps; every other example would merge fine: all-or-nothing."""
    x, y = make_run(11, 3, 50, 3)
    a = fed(x, y, [0], kind="logits")
    b = Accumulator(50, 3, kind="logits")
    b.update(x[1][:49], y[:49], epoch=1, ids=np.arange(49))
    b.update(x[0][49:], y[49:], epoch=0, ids=[49])
    _merge_fails(a, b, EpochOrderError, "example 49")


def test_merge_label_conflict_is_label_error() -> None:
    x, y = make_run(12, 2, 6, 3)
    a = fed(x, y, [0], kind="logits")
    b = fed(x, (y + 1) % 3, [1], kind="logits")
    _merge_fails(a, b, LabelError, "example 0")


@pytest.mark.parametrize(
    ("other", "fragment"),
    [
        (dict(n_examples=6, n_classes=4, kind="logits"), "tasks differ"),
        (dict(n_examples=7, n_classes=3, kind="logits"), "6 and 7 examples"),
        (dict(n_examples=6, n_classes=3, kind="probs"), "kinds differ"),
        (dict(n_examples=6, n_classes=3, kind="logits", multilabel=True), "tasks differ"),
    ],
    ids=["classes", "size", "kind", "multilabel"],
)
def test_merge_incompatible_is_incompatible_state_error(
    other: dict[str, Any], fragment: str
) -> None:
    x, y = make_run(13, 2, 6, 3)
    acc = fed(x, y, range(2), kind="logits")
    _merge_fails(acc, Accumulator(**other), IncompatibleStateError, "cannot merge", fragment)
    # also when the other one has data
    o = Accumulator(**other)
    _merge_fails(o, acc, IncompatibleStateError, "cannot merge")


@pytest.mark.parametrize("other", [None, 3, "acc", np.zeros((6, 3))])
def test_merge_non_accumulator_is_type_error(other: Any) -> None:
    x, y = make_run(14, 2, 6, 3)
    acc = fed(x, y, range(2), kind="logits")
    _merge_fails(acc, other, TypeError, "Accumulator")


def test_merge_raw_state_is_type_error() -> None:
    x, y = make_run(14, 2, 6, 3)
    acc = fed(x, y, range(2), kind="logits")
    other = fed(x, y, range(2), kind="logits")
    _merge_fails(acc, other._state, TypeError, "Accumulator")


# --------------------------------------------------------------------------------------------
# update errors: all-or-nothing


def _update_fails(
    acc: Accumulator, cls: type[BaseException], *fragments: str, **kwargs: Any
) -> None:
    before_state, before_map = acc.to_arrow(), acc.finalize()
    last = acc.last_epoch
    outputs, labels = kwargs.pop("outputs"), kwargs.pop("labels")
    with raises(cls, *fragments):
        acc.update(outputs, labels, **kwargs)
    assert_unchanged(acc, before_state, before_map)
    assert acc.last_epoch == last


@pytest.fixture
def run3() -> tuple[np.ndarray, np.ndarray, Accumulator]:
    x, y = make_run(15, 6, 20, 3)
    return x, y, fed(x, y, range(3), kind="logits")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_non_finite_in_last_row_changes_nothing(run3: Any, bad: float, dtype: Any) -> None:
    x, y, acc = run3
    out = x[3].astype(dtype)
    out[-1, 1] = bad
    _update_fails(acc, NonFiniteError, "epoch 3", "example 19", outputs=out, labels=y)
    # then the same epoch, clean, goes in
    acc.update(x[3], y)
    assert_maps_equal(acc.finalize(), fastcarto.compute(x, y, kind="logits", epochs=4))


def test_update_non_finite_with_probs(run3: Any) -> None:
    x, y, _ = run3
    p = softmax(x)
    acc = fed(p, y, range(2), kind="probs")
    out = p[2].copy()
    out[7, 0] = np.nan
    _update_fails(acc, NonFiniteError, "epoch 2", "example 7", outputs=out, labels=y)


def test_update_non_finite_in_minibatch_names_the_example_not_the_row(run3: Any) -> None:
    x, y, acc = run3
    idx = np.array([11, 4, 17])
    out = x[3][idx].copy()
    out[2, 0] = np.nan  # row 2 is example 17
    _update_fails(
        acc, NonFiniteError, "epoch 3", "example 17", outputs=out, labels=y[idx], ids=idx, epoch=3
    )


def test_update_label_out_of_range_in_minibatch_names_the_example(run3: Any) -> None:
    x, y, acc = run3
    idx = np.array([11, 4, 17])
    labels = y[idx].copy()
    labels[1] = 7  # row 1 is example 4
    _update_fails(
        acc,
        LabelError,
        "label 7",
        "example 4",
        outputs=x[3][idx],
        labels=labels,
        ids=idx,
        epoch=3,
    )


def test_update_nan_omit_skips_observation() -> None:
    x, y = make_run(16, 3, 5, 3)
    acc = Accumulator(5, 3, kind="logits", nan_policy="omit")
    for e in range(3):
        out = x[e].copy()
        if e == 1:
            out[2, 0] = np.nan
        acc.update(out, y)
    dm = acc.finalize()
    assert dm["n_epochs"].tolist() == [3, 3, 2, 3, 3]
    assert acc.last_epoch == 2


def test_update_repeated_epoch_is_duplicate(run3: Any) -> None:
    x, y, acc = run3
    # epoch 2 again, e.g. a training loop calling update twice for the same epoch
    _update_fails(acc, EpochOrderError, "example 0", outputs=x[3], labels=y, epoch=2)


def test_update_repeated_epoch_message_says_duplicate(run3: Any) -> None:
    x, y, acc = run3
    before = acc.to_arrow()
    with pytest.raises(EpochOrderError) as info:
        acc.update(x[3], y, epoch=2)
    assert re.search(r"duplicate|already", str(info.value)), str(info.value)
    assert acc.to_arrow().equals(before)


def test_update_repeated_epoch_in_minibatch(run3: Any) -> None:
    x, y, acc = run3
    idx = np.array([3, 9])
    acc.update(x[3][idx], y[idx], epoch=3, ids=idx)
    _update_fails(
        acc, EpochOrderError, "example 9", outputs=x[3][[9]], labels=y[[9]], ids=[9], epoch=3
    )


def test_update_epoch_inside_seen_range_is_epoch_order_error() -> None:
    x, y = make_run(17, 3, 6, 3)
    acc = fed(x, y, [0, 2], kind="logits")
    _update_fails(acc, EpochOrderError, "example 0", outputs=x[1], labels=y, epoch=1)


def test_update_with_an_earlier_epoch_is_ordered_exactly() -> None:
    # Epochs may arrive out of order: merging orders them, so the map equals the in-order one.
    x, y = make_run(18, 6, 6, 3)
    acc = Accumulator(6, 3, kind="logits")
    acc.update(x[5], y, epoch=5)
    acc.update(x[3], y, epoch=3)
    in_order = fastcarto.compute(x, y, kind="logits", epochs=[3, 5]).to_pandas()
    got = acc.finalize().to_pandas()
    pd.testing.assert_frame_equal(got, in_order, check_exact=False, rtol=1e-12)


def test_update_with_an_epoch_between_recorded_ones_is_epoch_order_error() -> None:
    x, y = make_run(18, 6, 6, 3)
    acc = Accumulator(6, 3, kind="logits")
    acc.update(x[2], y, epoch=2)
    acc.update(x[5], y, epoch=5)
    _update_fails(acc, EpochOrderError, "example 0", outputs=x[3], labels=y, epoch=3)


def test_update_repeated_index_in_one_update(run3: Any) -> None:
    x, y, acc = run3
    idx = np.array([2, 5, 2])
    _update_fails(
        acc,
        EpochOrderError,
        "example 2 already has an observation for epoch 3",
        outputs=x[3][idx],
        labels=y[idx],
        ids=idx,
        epoch=3,
    )


@pytest.mark.parametrize("bad", [20, 21, 2**40])
def test_update_index_out_of_range(run3: Any, bad: int) -> None:
    x, y, acc = run3
    idx = np.array([0, bad], dtype=np.uint64)
    _update_fails(
        acc,
        FastcartoError,
        f"index {bad}",
        "out of range",
        outputs=x[3][:2],
        labels=y[:2],
        ids=idx,
        epoch=3,
    )


def test_update_negative_index(run3: Any) -> None:
    x, y, acc = run3
    _update_fails(acc, ValueError, "negative", outputs=x[3][:2], labels=y[:2], ids=[0, -1], epoch=3)


@pytest.mark.parametrize(
    ("index", "cls"),
    [
        (np.array([0.0, 1.0]), TypeError),
        (np.array([True, False]), TypeError),
        (np.array([0, 1, 2]), ValueError),  # wrong length
        (np.array([[0, 1]]), ValueError),  # wrong ndim
    ],
)
def test_update_bad_index(run3: Any, index: Any, cls: type[BaseException]) -> None:
    x, y, acc = run3
    _update_fails(acc, cls, outputs=x[3][:2], labels=y[:2], ids=index, epoch=3)


def test_update_label_change_is_label_error(run3: Any) -> None:
    x, y, acc = run3
    y2 = y.copy()
    y2[13] = (y2[13] + 1) % 3
    _update_fails(acc, LabelError, "example 13", f"label {y2[13]}", outputs=x[3], labels=y2)


def test_update_label_change_allowed_with_aum_compat_keeps_latest() -> None:
    x, y = make_run(19, 4, 10, 3)
    y2 = y.copy()
    y2[[1, 6]] = (y2[[1, 6]] + 1) % 3
    acc = Accumulator(10, 3, kind="logits", compat="aum")
    label_per_epoch = [y, y, y2, y2]
    for e in range(4):
        acc.update(x[e], label_per_epoch[e])
    # the raw state keeps the latest label
    assert acc.to_arrow().column("label").to_pylist() == y2.tolist()
    plain = Accumulator.from_arrow(acc.to_arrow())
    assert plain.finalize()["label"].tolist() == y2.tolist()
    # AUM: the margin of each epoch is taken with that epoch's label (as the aum package does)
    per_epoch = [
        fastcarto.compute(x[e : e + 1], label_per_epoch[e], kind="logits")["aum"] for e in range(4)
    ]
    np.testing.assert_allclose(
        acc.finalize()["aum"], np.mean(per_epoch, axis=0), rtol=RTOL, atol=ATOL
    )
    # and the aum accumulator also merges states whose labels differ
    late = Accumulator(10, 3, kind="logits", compat="aum")
    late.update(x[3], y2, epoch=3)
    early = Accumulator(10, 3, kind="logits", compat="aum")
    for e in range(3):
        early.update(x[e], label_per_epoch[e])
    early.merge(late)
    assert_maps_equal(early.finalize(), acc.finalize())


def test_update_with_ids_requires_epoch(run3: Any) -> None:
    x, y, acc = run3
    _update_fails(acc, ValueError, "epoch=", outputs=x[3][:2], labels=y[:2], ids=[0, 1])


def test_update_index_is_a_deprecated_alias_of_ids(run3: Any) -> None:
    x, y, acc = run3
    twin = Accumulator.from_arrow(acc.to_arrow())
    idx = np.array([4, 1, 7])
    with pytest.warns(DeprecationWarning, match=r"index=.*deprecated; pass ids="):
        acc.update(x[3][idx], y[idx], epoch=3, index=idx)
    twin.update(x[3][idx], y[idx], epoch=3, ids=idx)
    assert_maps_equal(acc.finalize(), twin.finalize())
    _update_fails(
        acc, TypeError, "ids= only", outputs=x[4][idx], labels=y[idx], epoch=4, ids=idx, index=idx
    )


def test_update_and_record_take_the_same_arguments() -> None:
    # One signature for the two ways of feeding minibatches: (outputs, labels, *, epoch, ids).
    update = inspect.signature(Accumulator.update).parameters
    record = inspect.signature(fastcarto.Recorder.record).parameters
    for params in (update, record):
        assert list(params)[1:3] == ["outputs", "labels"]
        assert params["epoch"].kind is params["ids"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("epoch", [-1, 2**32 - 1, 2**40, 1.0, True, "3"])
def test_update_bad_epoch_value(run3: Any, epoch: Any) -> None:
    x, y, acc = run3
    _update_fails(acc, ValueError, "epoch", outputs=x[3], labels=y, epoch=epoch)


def test_update_numpy_integer_epoch(run3: Any) -> None:
    # a numpy integer (e.g. from `for epoch in np.arange(n)`) is a good epoch number, as it is
    # in `compute(epochs=...)` and in `ids=`
    x, y, acc = run3
    acc.update(x[3], y, epoch=np.int64(3))
    assert acc.last_epoch == 3


def test_update_wrong_rows_without_index(run3: Any) -> None:
    x, y, acc = run3
    _update_fails(acc, FastcartoError, "index", outputs=x[3][:5], labels=y[:5])


def test_update_wrong_columns_and_label_shapes(run3: Any) -> None:
    x, y, acc = run3
    _update_fails(acc, ValueError, "columns", outputs=x[3][:, :2], labels=y)
    _update_fails(acc, ValueError, "labels", outputs=x[3], labels=y[:4])
    _update_fails(acc, ValueError, "multilabel=True", outputs=x[3], labels=np.zeros((20, 3), int))
    _update_fails(acc, ValueError, "dimensions", outputs=x[3:5], labels=y)
    _update_fails(acc, TypeError, "float32", outputs=x[3].astype(np.int64), labels=y)
    _update_fails(acc, TypeError, "integers", outputs=x[3], labels=y.astype(float))


def test_multilabel_update_errors() -> None:
    x, t = make_run(20, 3, 8, 4, multilabel=True)
    acc = Accumulator(8, 4, kind="logits", multilabel=True)
    acc.update(x[0], t)
    _update_fails(acc, ValueError, "targets", outputs=x[1], labels=t[:, 0].copy())
    bad_t = t.copy()
    bad_t[5, 2] = 2
    _update_fails(acc, LabelError, "example 5", outputs=x[1], labels=bad_t)
    out = x[1].copy()
    out[6, 3] = np.inf
    _update_fails(acc, NonFiniteError, "epoch 1", "example 6", outputs=out, labels=t)
    flipped = t.copy()
    flipped[2, 1] = 1 - flipped[2, 1]
    _update_fails(acc, LabelError, "example 2", outputs=x[1], labels=flipped)
    _update_fails(acc, EpochOrderError, "example 0", outputs=x[1], labels=t, epoch=0)


# --------------------------------------------------------------------------------------------
# serialization


@pytest.mark.parametrize(("n_classes", "kind", "multilabel"), CASES)
def test_pickle_round_trip_and_continue(n_classes: int, kind: str, multilabel: bool) -> None:
    x, y = make_run(21, 5, 17, n_classes, kind, multilabel=multilabel)
    acc = Accumulator(
        17, n_classes, kind=kind, multilabel=multilabel, compat=None, nan_policy="omit", threads=1
    )
    for e in range(3):
        acc.update(x[e], y)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        clone = pickle.loads(pickle.dumps(acc, protocol=protocol))
        assert isinstance(clone, Accumulator)
        assert clone.to_arrow().equals(acc.to_arrow())
        assert_maps_equal(clone.finalize(), acc.finalize(), exact=True)
        assert (clone.n_examples, clone.n_classes, clone.kind, clone.multilabel, clone.compat) == (
            17,
            n_classes,
            kind,
            multilabel,
            None,
        )
        assert clone.last_epoch == 2
        assert repr(clone) == repr(acc)
    for e in range(3, 5):
        clone.update(x[e], y)
    assert_maps_equal(clone.finalize(), fastcarto.compute(x, y, kind=kind))
    # the original is independent of the clone
    assert acc.last_epoch == 2


def test_pickle_keeps_options() -> None:
    x, y = make_run(22, 3, 6, 3)
    acc = Accumulator(6, 3, kind="logits", compat="aum", nan_policy="omit", threads=2)
    acc.update(x[0], y)
    clone = copy_acc(acc)
    assert clone.compat == "aum"
    out = x[1].copy()
    out[0, 0] = np.nan
    clone.update(out, (y + 1) % 3)  # omit and label changes still allowed
    assert clone.finalize().columns == ["sample_id", "aum"]


def test_pickle_empty_accumulator() -> None:
    for kwargs in (dict(kind="logits"), dict(kind="probs", multilabel=True)):
        acc = Accumulator(5, 2, **kwargs)  # type: ignore[arg-type]
        clone = copy_acc(acc)
        assert clone.last_epoch is None
        assert clone.to_arrow().equals(acc.to_arrow())
        assert_maps_equal(clone.finalize(), acc.finalize(), exact=True)
        x, y = make_run(23, 2, 5, 2, kwargs["kind"], multilabel=bool(kwargs.get("multilabel")))
        clone.update(x[0], y)
        clone.update(x[1], y)
        assert_maps_equal(clone.finalize(), fastcarto.compute(x, y, kind=kwargs["kind"]))


@pytest.mark.parametrize(("n_classes", "kind", "multilabel"), CASES)
def test_arrow_round_trips(n_classes: int, kind: str, multilabel: bool) -> None:
    x, y = make_run(24, 4, 13, n_classes, kind, multilabel=multilabel)
    acc = Accumulator(13, n_classes, kind=kind, multilabel=multilabel)
    for e in range(2):
        acc.update(x[e], y)
    batch = acc.to_arrow()
    assert isinstance(batch, pa.RecordBatch)
    assert batch.num_rows == 13 * (n_classes if multilabel else 1)

    sink = io.BytesIO()
    with pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    from_file = pa.ipc.open_file(pa.BufferReader(sink.getvalue())).read_all()

    stream = io.BytesIO()
    with pa.ipc.new_stream(stream, batch.schema) as writer:
        writer.write_batch(batch)
    from_stream = pa.ipc.open_stream(pa.BufferReader(stream.getvalue()))

    for source in (batch, pa.Table.from_batches([batch]), from_file, from_stream):
        clone = Accumulator.from_arrow(source)
        assert clone.to_arrow().equals(batch)
        assert (clone.n_examples, clone.n_classes, clone.kind, clone.multilabel) == (
            13,
            n_classes,
            kind,
            multilabel,
        )
        assert_maps_equal(clone.finalize(), acc.finalize(), exact=True)
        for e in range(2, 4):
            clone.update(x[e], y)
        assert_maps_equal(clone.finalize(), fastcarto.compute(x, y, kind=kind))


def test_arrow_round_trip_of_table_in_several_chunks() -> None:
    x, y = make_run(25, 3, 10, 3)
    acc = fed(x, y, range(3), kind="logits")
    batch = acc.to_arrow()
    table = pa.Table.from_batches([batch.slice(0, 4), batch.slice(4, 6)])
    clone = Accumulator.from_arrow(table)
    assert_maps_equal(clone.finalize(), acc.finalize(), exact=True)


def test_from_arrow_compat_and_merge_with_original() -> None:
    x, y = make_run(26, 4, 10, 3)
    early = fed(x, y, range(2), kind="logits")
    late = Accumulator.from_arrow(
        fed(x, y, range(2, 4), kind="logits").to_arrow(), compat="cartography"
    )
    assert late.compat == "cartography"
    early.merge(late)
    assert_maps_equal(early.finalize(), fastcarto.compute(x, y, kind="logits"))
    assert_maps_equal(
        late.finalize(), fastcarto.compute(x, y, kind="logits", compat="cartography", epochs=[2, 3])
    )


def _with_column(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    arrays = [values if n == name else batch.column(n) for n in batch.schema.names]
    fields = [
        pa.field(n, a.type, nullable=True) for n, a in zip(batch.schema.names, arrays, strict=True)
    ]
    return pa.RecordBatch.from_arrays(
        arrays, schema=pa.schema(fields, metadata=batch.schema.metadata)
    )


def _with_meta(batch: pa.RecordBatch, key: str, value: str | None) -> pa.RecordBatch:
    meta = dict(batch.schema.metadata)
    k = key.encode()
    if value is None:
        del meta[k]
    else:
        meta[k] = value.encode()
    return batch.replace_schema_metadata(meta)


def _corruptions() -> list[tuple[str, Any, str]]:
    def u32(values: list[int]) -> pa.Array:
        return pa.array(values, type=pa.uint32())

    def f64(values: list[float]) -> pa.Array:
        return pa.array(values, type=pa.float64())

    def set_u32(name: str, row: int, value: int) -> Any:
        return lambda b: _with_column(
            b,
            name,
            u32([value if i == row else v for i, v in enumerate(b.column(name).to_pylist())]),
        )

    def set_f64(name: str, row: int, value: float) -> Any:
        return lambda b: _with_column(
            b,
            name,
            f64([value if i == row else v for i, v in enumerate(b.column(name).to_pylist())]),
        )

    return [
        ("count above n", set_u32("n_correct", 1, 99), "row 1"),
        ("confident above n", set_u32("n_confident", 0, 50), "row 0"),
        ("forgetting above n", set_u32("forgetting", 2, 3), "row 2"),
        ("n above span", set_u32("n", 0, 7), "row 0"),
        ("label out of range", set_u32("label", 3, 3), "row 3"),
        ("pred out of range", set_u32("final_pred", 3, 9), "row 3"),
        ("first after last", set_u32("first_epoch", 0, 5), "row 0"),
        ("learned outside span", set_u32("first_learned", 4, 40), "row 4"),
        ("mean above 1", set_f64("mean", 0, 1.5), "row 0"),
        ("mean nan", set_f64("mean", 0, float("nan")), "row 0"),
        ("m2 negative", set_f64("m2", 0, -1.0), "row 0"),
        ("m2 infinite", set_f64("m2", 0, float("inf")), "row 0"),
        ("empty slot with values", lambda b: set_u32("n", 5, 0)(b), "row 5"),
        ("dropped column", lambda b: b.drop_columns(["sum_loss"]), "sum_loss"),
        ("wrong dtype u32", lambda b: _with_column(b, "n", b.column("n").cast(pa.int64())), '"n"'),
        (
            "wrong dtype f64",
            lambda b: _with_column(b, "mean", b.column("mean").cast(pa.float32())),
            '"mean"',
        ),
        (
            "nulls",
            lambda b: _with_column(b, "m2", pa.array([None] * b.num_rows, type=pa.float64())),
            "null",
        ),
        ("version", lambda b: _with_meta(b, "fastcarto.state_version", "2"), "version"),
        ("no version", lambda b: _with_meta(b, "fastcarto.state_version", None), "state_version"),
        ("no metadata", lambda b: b.replace_schema_metadata(None), "metadata"),
        ("kind", lambda b: _with_meta(b, "fastcarto.kind", "scores"), "kind"),
        ("task", lambda b: _with_meta(b, "fastcarto.task", "regression"), "task"),
        ("n_classes text", lambda b: _with_meta(b, "fastcarto.n_classes", "three"), "n_classes"),
        (
            "n_classes zero",
            lambda b: _with_meta(b, "fastcarto.n_classes", "0"),
            "not a fastcarto state",
        ),
        ("n_classes too small", lambda b: _with_meta(b, "fastcarto.n_classes", "2"), "row"),
        (
            "multilabel rows",
            lambda b: _with_meta(b, "fastcarto.task", "multilabel"),
            "slots per example",
        ),
    ]


@pytest.mark.parametrize(
    ("what", "corrupt", "fragment"), _corruptions(), ids=[c[0] for c in _corruptions()]
)
def test_corrupted_state_is_fastcarto_error(what: str, corrupt: Any, fragment: str) -> None:
    x, y = make_run(27, 3, 10, 3)
    y[3] = 2
    acc = fed(x, y, range(3), kind="logits")
    batch = corrupt(acc.to_arrow())
    with raises(FastcartoError, fragment):
        Accumulator.from_arrow(batch)
    # the same corruption through pickle's path (IPC bytes)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    state = acc.__getstate__()
    state["state"] = sink.getvalue()
    clone = Accumulator.__new__(Accumulator)
    with raises(FastcartoError):
        clone.__setstate__(state)


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", b"\xff\xff\xff\xff" + b"\x00" * 64],
    ids=["empty", "text", "ipc-ish"],
)
def test_corrupted_pickle_bytes_are_fastcarto_error(data: bytes) -> None:
    acc = Accumulator(3, 2, kind="logits")
    state = acc.__getstate__()
    state["state"] = data
    clone = Accumulator.__new__(Accumulator)
    with raises(FastcartoError):
        clone.__setstate__(state)


def test_every_overwritten_byte_of_a_pickled_state_is_an_error_or_a_state() -> None:
    # A message claiming a body of terabytes once aborted the process (the stream reader
    # allocated the claim before reading); each byte of a small state set to 0x7f covers the
    # high byte of every length field.
    x, y = make_run(30, 2, 3, 3)
    acc = fed(x, y, range(2), kind="logits")
    state = acc.__getstate__()
    data = state["state"]
    for at in range(len(data)):
        state["state"] = data[:at] + b"\x7f" + data[at + 1 :]
        clone = Accumulator.__new__(Accumulator)
        try:
            clone.__setstate__(state)
        except FastcartoError:
            continue
        assert len(clone.finalize()) == 3


def test_state_bytes_are_read_in_place_and_only_bytes_are_accepted() -> None:
    # The binding reads the bytes object without copying it; the state it builds owns its
    # data, so it stays valid after the bytes are gone. Only `bytes` are accepted.
    from fastcarto import _core

    x, y = make_run(31, 3, 5, 3)
    acc = fed(x, y, range(3), kind="logits")
    data = bytes(acc.__getstate__()["state"])
    state = _core.State.from_ipc(data)
    del data
    clone = Accumulator.__new__(Accumulator)
    clone.__setstate__({**acc.__getstate__(), "state": state.to_ipc()})
    pd.testing.assert_frame_equal(clone.finalize().to_pandas(), acc.finalize().to_pandas())
    for not_bytes in (bytearray(b"x"), memoryview(b"x"), "x"):
        with pytest.raises(TypeError):
            _core.State.from_ipc(not_bytes)  # type: ignore[arg-type]


def test_truncated_pickle_state_is_fastcarto_error() -> None:
    x, y = make_run(28, 2, 10, 3)
    acc = fed(x, y, range(2), kind="logits")
    state = acc.__getstate__()
    state["state"] = state["state"][: len(state["state"]) // 2]
    clone = Accumulator.__new__(Accumulator)
    with raises(FastcartoError):
        clone.__setstate__(state)


def test_ipc_with_two_batches_is_fastcarto_error() -> None:
    x, y = make_run(29, 2, 4, 3)
    batch = fed(x, y, range(2), kind="logits").to_arrow()
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
        writer.write_batch(batch)
    state = Accumulator(4, 3, kind="logits").__getstate__()
    state["state"] = sink.getvalue()
    clone = Accumulator.__new__(Accumulator)
    with raises(FastcartoError, "one record batch"):
        clone.__setstate__(state)


@pytest.mark.parametrize("data", ["not arrow", 3, None, {"a": [1]}, b"bytes"])
def test_from_arrow_of_non_arrow_object(data: Any) -> None:
    with raises((TypeError, ValueError)):
        Accumulator.from_arrow(data)


def test_from_arrow_bad_options() -> None:
    batch = Accumulator(3, 2, kind="logits").to_arrow()
    with raises(ValueError, "compat"):
        Accumulator.from_arrow(batch, compat="carto")
    with raises(ValueError, "nan_policy"):
        Accumulator.from_arrow(batch, nan_policy="skip")
    with raises(ValueError, "threads"):
        Accumulator.from_arrow(batch, threads=0)


# --------------------------------------------------------------------------------------------
# properties, repr, constructor


def test_properties_and_repr() -> None:
    acc = Accumulator(1234, 3, kind="probs", compat="dataiq", nan_policy="omit", threads=1)
    assert (acc.n_examples, acc.n_classes, acc.kind, acc.multilabel, acc.compat) == (
        1234,
        3,
        "probs",
        False,
        "dataiq",
    )
    assert acc.last_epoch is None
    text = repr(acc)
    assert (
        "1,234 examples" in text
        and "3 classes" in text
        and "probs" in text
        and "no epochs yet" in text
    )
    assert "multilabel" not in text

    ml = Accumulator(5, 4, kind="logits", multilabel=True)
    assert ml.multilabel and ml.n_classes == 4 and ml.n_examples == 5
    assert "multilabel" in repr(ml)


def test_last_epoch_tracks_latest_observation() -> None:
    x, y = make_run(30, 8, 6, 3)
    acc = Accumulator(6, 3, kind="logits")
    acc.update(x[4][[1, 2]], y[[1, 2]], epoch=4, ids=[1, 2])
    assert acc.last_epoch == 4
    assert "up to epoch 4" in repr(acc)
    acc.update(x[2][[0]], y[[0]], epoch=2, ids=[0])  # another example, earlier epoch
    assert acc.last_epoch == 4
    acc.update(x[7][[3]], y[[3]], epoch=7, ids=[3])
    assert acc.last_epoch == 7
    # without index the next epoch is the one after the latest of any example
    acc.update(np.zeros((6, 3)), y)
    assert acc.last_epoch == 8
    assert acc.finalize()["n_epochs"].tolist() == [2, 2, 2, 2, 1, 1]


@pytest.mark.parametrize(
    ("args", "kwargs", "cls", "fragment"),
    [
        ((0, 3), dict(kind="logits"), ValueError, "n_examples"),
        ((-1, 3), dict(kind="logits"), ValueError, "n_examples"),
        ((3, 0), dict(kind="logits"), ValueError, "n_classes"),
        ((3.0, 3), dict(kind="logits"), ValueError, "n_examples"),
        ((True, 3), dict(kind="logits"), ValueError, "n_examples"),
        ((3, 3), dict(kind="prob"), ValueError, "kind"),
        ((3, 3), dict(kind="logits", compat="carto"), ValueError, "compat"),
        ((3, 3), dict(kind="logits", nan_policy="ignore"), ValueError, "nan_policy"),
        ((3, 3), dict(kind="logits", threads=0), ValueError, "threads"),
        ((3, 3), dict(kind="logits", threads=2**70), ValueError, "at most 65536"),
        ((3, 2**32), dict(kind="logits"), ValueError, "n_classes must be at most 4294967295"),
        ((3, 3), dict(), TypeError, "kind"),
    ],
)
def test_constructor_errors(
    args: tuple[Any, ...], kwargs: dict[str, Any], cls: type[BaseException], fragment: str
) -> None:
    with raises(cls, fragment):
        Accumulator(*args, **kwargs)


def test_numpy_integers_are_integers() -> None:
    acc = Accumulator(np.int64(3), np.uint8(2), kind="logits", threads=np.int32(1))
    acc.update(np.zeros((3, 2)), np.array([0, 1, 0]))
    assert acc.n_examples == 3 and acc.n_classes == 2
    assert isinstance(acc.n_examples, int)


def test_finalize_bad_ddof_is_value_error() -> None:
    acc = Accumulator(3, 2, kind="logits")
    with raises(ValueError, "ddof"):
        acc.finalize(ddof=-1)


# --------------------------------------------------------------------------------------------
# fork safety


def _child_compute(x: np.ndarray, y: np.ndarray, expected_conf: np.ndarray) -> None:
    dm = fastcarto.compute(x, y, kind="logits", threads=2)
    np.testing.assert_array_equal(dm["confidence"], expected_conf)
    acc = Accumulator(x.shape[1], x.shape[2], kind="logits", threads=2)
    for e in range(x.shape[0]):
        acc.update(x[e], y)
    np.testing.assert_array_equal(acc.finalize()["confidence"], expected_conf)


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_after_parallel_use_does_not_deadlock() -> None:
    # enough rows (epochs x examples >= 2**15) that the engine really runs on a 2-thread pool
    x, y = make_run(31, 4, 10_000, 3, dtype=np.float32)
    expected = fastcarto.compute(x, y, kind="logits", threads=2)
    acc = Accumulator(10_000, 3, kind="logits", threads=2)
    acc.update(x[0], y)
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_child_compute, args=(x, y, expected["confidence"]))
    proc.start()
    proc.join(60)
    alive = proc.is_alive()
    if alive:
        proc.kill()
        proc.join(10)
    assert not alive, "the forked child deadlocked in fastcarto"
    assert proc.exitcode == 0
    # and the parent's pools still work
    assert_maps_equal(fastcarto.compute(x, y, kind="logits", threads=2), expected, exact=True)


def test_from_arrow_compat_decides_whether_labels_may_change() -> None:
    x, y = make_run(23, 2, 6, 3)
    y2 = (y + 1) % 3
    aum = Accumulator(6, 3, kind="logits", compat="aum")
    aum.update(x[0], y)
    restored_plain = Accumulator.from_arrow(aum.to_arrow())
    with pytest.raises(LabelError):
        restored_plain.update(x[1], y2)
    plain = Accumulator(6, 3, kind="logits")
    plain.update(x[0], y)
    restored_aum = Accumulator.from_arrow(plain.to_arrow(), compat="aum")
    restored_aum.update(x[1], y2)
    assert restored_aum.finalize()["sample_id"].tolist() == list(range(6))


@pytest.mark.parametrize("compat", [None, "cartography", "aum", "dataiq", "toneva"])
def test_take_table_equals_finalize_and_empties_the_state(compat: str | None) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 50, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    acc = fastcarto.Accumulator(50, 3, kind="logits", compat=compat)
    for e in range(4):
        acc.update(x[e], y)
    state = acc._state
    ids = pa.array(np.arange(50, dtype=np.int64) * 10)
    want = state.finalize(compat=compat, ids=ids)
    got = state.take_table(compat=compat, ids=ids)
    assert got.equals(want)
    assert state.n_examples == 0


def test_take_table_with_wrong_ids_leaves_the_state_intact() -> None:
    acc = fastcarto.Accumulator(5, 2, kind="logits")
    acc.update(np.zeros((5, 2), np.float32), np.array([0, 1, 0, 1, 0]))
    state = acc._state
    with pytest.raises(ValueError, match="3 ids for 5 examples"):
        state.take_table(ids=pa.array([1, 2, 3]))
    assert state.n_examples == 5
    assert state.finalize().num_rows == 5
