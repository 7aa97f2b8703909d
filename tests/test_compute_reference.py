"""Differential tests: ``fastcarto.compute`` against the plain numpy reference (``reference.py``).

Random training dynamics cover shapes (E 1..8, N 1..40, C 1..12 with C == 1 binary), float32 and
float64, logits and probabilities, epoch selections, ddof, compat presets, multi-label targets,
``nan_policy="omit"`` and thread counts. Rows are drawn in adversarial styles: ties (repeated
maxima, all-equal rows, integer logits, near-ties), very confident rows (p(gold) within 1e-12 of
1), confidently wrong rows (tiny p(gold)), logits of magnitude 1e4, one-hot probability rows and
rows with exact zeros and tiny probabilities.

Precision contract (``reference.tolerances``): float64 inputs agree with the float64 reference to
rtol=1e-9, atol=1e-12; float32 inputs (float32 exp/log per row, float64 accumulation) agree with
a float64 reference of the same float32 values to rtol=2e-5, atol=2e-6. Integer and boolean
columns match exactly; argmax is on the raw values in both, first maximum wins.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import fastcarto
import hypothesis.extra.numpy as hnp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import FEW_EXAMPLES, FEWER_EXAMPLES, MORE_EXAMPLES, SOME_MORE_EXAMPLES
from hypothesis import given
from hypothesis import strategies as st
from reference import (
    COMPAT_COLUMNS,
    DEFAULT_COLUMNS,
    assert_matches,
    dataiq_correctness_bounds,
    reference_compat,
    reference_metrics,
    reference_table,
    select_epochs,
    sigmoid,
    softmax,
)

DTYPES = (np.float32, np.float64)
KINDS = ("logits", "probs")
COMPATS = (None, "cartography", "aum", "dataiq", "toneva")


# Half-width of the band around 0.5 in which Data-IQ's "p(gold) > 0.5" may go either way
# (see reference.dataiq_correctness_bounds): a few ulp of p(gold) for float64, and the float32
# exp's error for float32.
DATAIQ_BAND = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}

# ---------------------------------------------------------------------------------------------
# Generating training dynamics
# ---------------------------------------------------------------------------------------------

# Row styles, one per (epoch, example).
BASE, ALL_EQUAL, INTEGER, TIED_MAX, CONFIDENT, CONFIDENT_WRONG, HUGE, NEAR_TIE, ONE_HOT, TINY = (
    range(10)
)
N_STYLES = 10


def _row_logits(
    rng: np.random.Generator, style: int, n_classes: int, label: Any, scale: float, multilabel: bool
) -> np.ndarray:
    """float64 logits of one row (``label`` is the gold class, or the 0/1 targets of the row
    for multi-label, where every column is its own binary problem)."""
    c = n_classes
    z = rng.normal(size=c) * scale
    binary = multilabel or c == 1
    if style == ALL_EQUAL:
        z = np.full(c, rng.normal() * scale)
    elif style == INTEGER:
        z = np.round(rng.normal(size=c) * 2)
    elif style == TIED_MAX and c >= 2 and not multilabel:
        k = rng.integers(c)
        z[k] = z.max()
        if rng.random() < 0.5:
            z[label] = z.max()  # the gold class ties for the maximum too
    elif style == TIED_MAX:
        z = np.zeros(c)  # [0, 0]: a tie of the two-column equivalent
    elif style in (CONFIDENT, CONFIDENT_WRONG):
        big = rng.uniform(30, 40, size=c)  # p(gold) within ~1e-13 of 1 (or of 0)
        if binary:
            targets = np.broadcast_to(np.asarray(label), (c,))
            sign = np.where(targets == 1, 1.0, -1.0)
            z = sign * big if style == CONFIDENT else -sign * big
        elif style == CONFIDENT:
            z[label] = np.delete(z, label).max() + big[0]
        else:
            k = (label + 1 + rng.integers(c - 1)) % c
            z[k] = z.max() + big[0]
    elif style == HUGE:
        z = rng.normal(size=c) * 1e4
        if rng.random() < 0.5:
            z = np.clip(z, -1e4, 1e4)
            z[rng.integers(c)] = 1e4 * rng.choice([-1.0, 1.0])
    elif style == NEAR_TIE:
        z = rng.normal() + rng.normal(size=c) * 1e-7
    return z


def _row_probs(
    rng: np.random.Generator, style: int, z: np.ndarray, label: Any, multilabel: bool
) -> np.ndarray:
    """float64 probabilities of one row from its logits, with the probability-only styles."""
    c = z.shape[0]
    if multilabel or c == 1:
        p = sigmoid(z)
        if style == ONE_HOT:
            p = rng.integers(0, 2, size=c).astype(np.float64)  # exact 0 and 1
        elif style == TINY:
            p = np.where(rng.random(c) < 0.5, 1e-30, 1 - 1e-12)
        return p
    p = softmax(z)
    if style == ONE_HOT:
        p = np.zeros(c)
        p[label if rng.random() < 0.5 else rng.integers(c)] = 1.0
    elif style == TINY:
        p = np.zeros(c)
        k = rng.integers(c)
        tiny = rng.integers(c)
        p[tiny] = 1e-30
        p[k] = 1.0 - p.sum() if k != tiny else 1.0
    return p


@st.composite
def dynamics(
    draw: st.DrawFn,
    *,
    multilabel: bool = False,
    min_classes: int = 1,
    max_classes: int = 12,
    max_epochs: int = 8,
    max_examples: int = 40,
    dtype: Any = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """Outputs (E, N, C) in float32 or float64, logits or probabilities, and their labels."""
    n_epochs = draw(st.integers(1, max_epochs))
    n_examples = draw(st.integers(1, max_examples))
    n_classes = draw(st.integers(min_classes, max_classes))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)) if dtype is None else dtype)
    kind = draw(st.sampled_from(KINDS)) if kind is None else kind
    scale = draw(st.sampled_from([0.3, 1.0, 3.0, 10.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    styles = draw(
        hnp.arrays(np.int8, (n_epochs, n_examples), elements=st.integers(0, N_STYLES - 1))
    )
    if multilabel:
        labels = draw(hnp.arrays(np.int64, (n_examples, n_classes), elements=st.integers(0, 1)))
    else:
        top = 1 if n_classes == 1 else n_classes - 1
        labels = draw(hnp.arrays(np.int64, (n_examples,), elements=st.integers(0, top)))

    rng = np.random.default_rng(seed)
    out = np.empty((n_epochs, n_examples, n_classes), dtype=np.float64)
    for e in range(n_epochs):
        for n in range(n_examples):
            style = int(styles[e, n])
            z = _row_logits(rng, style, n_classes, labels[n], scale, multilabel)
            out[e, n] = z if kind == "logits" else _row_probs(rng, style, z, labels[n], multilabel)
    return {"outputs": out.astype(dtype), "labels": labels, "kind": kind, "dtype": dtype}


@st.composite
def epoch_selections(draw: st.DrawFn, n_epochs: int) -> Any:
    """None, an int k (first k), a non-empty increasing slice, or a strictly increasing list."""
    how = draw(st.sampled_from(["none", "int", "slice", "list"]))
    if how == "int":
        return draw(st.integers(1, n_epochs))
    if how == "slice":
        start = draw(st.none() | st.integers(-n_epochs, n_epochs - 1))
        stop = draw(st.none() | st.integers(-n_epochs, n_epochs))
        step = draw(st.none() | st.integers(1, 3))
        chosen = slice(start, stop, step)
        return chosen if range(n_epochs)[chosen] else None
    if how == "list":
        return sorted(draw(st.sets(st.integers(0, n_epochs - 1), min_size=1)))
    return None


NON_FINITE = (np.nan, np.inf, -np.inf)


@st.composite
def with_non_finite(draw: st.DrawFn, case: dict[str, Any]) -> dict[str, Any]:
    """``case`` with NaN/+inf/-inf written into some (epoch, example) rows (one column of each;
    for multi-label, single (epoch, example, class) values)."""
    outputs = case["outputs"].copy()
    n_epochs, n_examples, n_classes = outputs.shape
    multilabel = case["labels"].ndim == 2
    shape = (n_epochs, n_examples, n_classes) if multilabel else (n_epochs, n_examples)
    # 0: untouched; 1..3: which non-finite value (about one cell in three is hit).
    where = draw(hnp.arrays(np.int8, shape, elements=st.sampled_from([0, 0, 0, 0, 0, 1, 2, 3])))
    column = draw(st.integers(0, n_classes - 1))
    for index in zip(*np.nonzero(where), strict=True):
        value = NON_FINITE[where[index] - 1]
        if multilabel:
            outputs[index] = value
        else:
            e, n = index
            outputs[e, n, (column + n) % n_classes] = value
    return {**case, "outputs": outputs}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def assert_identical(a: fastcarto.DataMap, b: fastcarto.DataMap) -> None:
    """Same columns, types, nulls and bit-for-bit the same values."""
    assert a.columns == b.columns
    ta, tb = a.to_arrow(), b.to_arrow()
    assert ta.schema.equals(tb.schema, check_metadata=True)
    for name in a.columns:
        ca, cb = ta.column(name), tb.column(name)
        assert ca.null_count == cb.null_count, name
        if pa.types.is_floating(ca.type):
            x = ca.to_numpy().astype(np.float64)
            y = cb.to_numpy().astype(np.float64)
            assert np.array_equal(x.view(np.uint64), y.view(np.uint64)), name
        else:
            assert ca.to_pylist() == cb.to_pylist(), name


def compare_dataiq(
    dm: fastcarto.DataMap, expected: dict[str, np.ndarray], case: dict[str, Any], **kw: Any
) -> None:
    """Data-IQ's correctness thresholds a computed p(gold) at 0.5: exact outside a tiny band."""
    lo, hi = dataiq_correctness_bounds(
        case["outputs"], case["labels"], case["kind"], DATAIQ_BAND[case["dtype"]], **kw
    )
    got = dm["correctness"]
    assert np.array_equal(np.isnan(got), np.isnan(expected["correctness"]))
    ok = np.isnan(got) | ((got >= lo) & (got <= hi))
    assert ok.all(), (got[~ok], lo[~ok], hi[~ok])


def check_against_reference(
    case: dict[str, Any],
    *,
    compat: str | None = None,
    epochs: Any = None,
    nan_policy: str = "raise",
    ddof: int = 0,
    threads: int | None = None,
) -> fastcarto.DataMap:
    dm = fastcarto.compute(
        case["outputs"],
        case["labels"],
        kind=case["kind"],
        compat=compat,
        epochs=epochs,
        nan_policy=nan_policy,
        ddof=ddof,
        threads=threads,
    )
    expected = reference_table(
        case["outputs"],
        case["labels"],
        case["kind"],
        compat=compat,
        epochs=epochs,
        nan_policy=nan_policy,
        ddof=ddof,
    )
    skip: tuple[str, ...] = ()
    if compat == "dataiq":
        skip = ("correctness",)
        compare_dataiq(dm, expected, case, epochs=epochs, nan_policy=nan_policy)
    if compat is None and nan_policy == "omit":
        # Examples with every observation omitted: their label is checked by
        # test_fully_omitted_example_keeps_its_label; here only observed examples' labels.
        skip = ("label",)
        seen = expected["n_epochs"] > 0
        np.testing.assert_array_equal(dm["label"][seen], expected["label"][seen])
    assert_matches(dm, expected, case["dtype"], compat=compat, skip=skip)
    return dm


# ---------------------------------------------------------------------------------------------
# Differential tests
# ---------------------------------------------------------------------------------------------


@MORE_EXAMPLES
@given(data=st.data(), ddof=st.sampled_from([0, 1]), threads=st.sampled_from([1, 2]))
def test_default_table_matches_reference(data: st.DataObject, ddof: int, threads: int) -> None:
    case = data.draw(dynamics())
    epochs = data.draw(epoch_selections(case["outputs"].shape[0]))
    dm = check_against_reference(case, epochs=epochs, ddof=ddof, threads=threads)
    assert dm.columns == list(DEFAULT_COLUMNS)


@SOME_MORE_EXAMPLES
@given(data=st.data(), compat=st.sampled_from(COMPATS[1:]), ddof=st.sampled_from([0, 1]))
def test_compat_tables_match_reference(data: st.DataObject, compat: str, ddof: int) -> None:
    case = data.draw(dynamics())
    epochs = data.draw(epoch_selections(case["outputs"].shape[0]))
    dm = check_against_reference(case, compat=compat, epochs=epochs, ddof=ddof)
    assert dm.columns == list(COMPAT_COLUMNS[compat])


@SOME_MORE_EXAMPLES
@given(data=st.data(), compat=st.sampled_from(COMPATS), threads=st.sampled_from([1, 2]))
def test_nan_policy_omit_matches_reference(
    data: st.DataObject, compat: str | None, threads: int
) -> None:
    case = data.draw(with_non_finite(data.draw(dynamics())))
    epochs = data.draw(epoch_selections(case["outputs"].shape[0]))
    check_against_reference(case, compat=compat, epochs=epochs, nan_policy="omit", threads=threads)


@given(
    data=st.data(),
    compat=st.sampled_from(COMPATS),
    omit=st.booleans(),
    ddof=st.sampled_from([0, 1]),
)
def test_multilabel_matches_reference(
    data: st.DataObject, compat: str | None, omit: bool, ddof: int
) -> None:
    case = data.draw(dynamics(multilabel=True, max_classes=6, max_examples=20))
    if omit:
        case = data.draw(with_non_finite(case))
    epochs = data.draw(epoch_selections(case["outputs"].shape[0]))
    nan_policy = "omit" if omit else "raise"
    dm = check_against_reference(
        case, compat=compat, epochs=epochs, nan_policy=nan_policy, ddof=ddof
    )
    columns = list(DEFAULT_COLUMNS if compat is None else COMPAT_COLUMNS[compat])
    assert dm.columns == [columns[0], "class", *columns[1:]]


@FEWER_EXAMPLES
@given(case=dynamics(multilabel=True, max_classes=5, max_examples=15))
def test_multilabel_rows_are_independent_binary_problems(case: dict[str, Any]) -> None:
    """Row (n, c) of a multi-label table is example n of the one-column binary problem c."""
    outputs, targets, kind = case["outputs"], case["labels"], case["kind"]
    n_classes = outputs.shape[2]
    dm = fastcarto.compute(outputs, targets, kind=kind)
    table = dm.to_arrow()
    for c in range(n_classes):
        single = fastcarto.compute(
            np.ascontiguousarray(outputs[:, :, c : c + 1]), targets[:, c], kind=kind
        )
        rows = table.filter(pc.equal(table.column("class"), c))
        assert rows.drop_columns(["class"]).equals(single.to_arrow(), check_metadata=False), c
    assert (
        reference_metrics(outputs, targets, kind)["class"].tolist()
        == list(range(n_classes)) * outputs.shape[1]
    )


@given(data=st.data(), compat=st.sampled_from(COMPATS))
def test_single_column_equals_two_column_equivalent(
    data: st.DataObject, compat: str | None
) -> None:
    case = data.draw(dynamics(min_classes=1, max_classes=1))
    x = case["outputs"]
    if case["kind"] == "logits":
        two = np.concatenate(
            [np.zeros_like(x), x], axis=2
        )  # softmax([0, z]) = [1 - sigmoid z, sigmoid z]
    else:
        two = np.concatenate([(1 - x).astype(x.dtype), x], axis=2)
    assert two.dtype == x.dtype
    epochs = data.draw(epoch_selections(x.shape[0]))
    one_col = fastcarto.compute(x, case["labels"], kind=case["kind"], compat=compat, epochs=epochs)
    two_col = fastcarto.compute(
        two, case["labels"], kind=case["kind"], compat=compat, epochs=epochs
    )
    expected = {name: np.asarray(two_col[name]) for name in two_col.columns}
    if compat is None:
        for name in ("label", "first_learned", "stable_from", "final_pred"):
            expected[name] = expected[name].astype(np.float64)
    assert_matches(one_col, expected, case["dtype"], compat=compat)
    # And both against the reference (which expands one column the same way).
    check_against_reference(case, compat=compat, epochs=epochs)


@FEWER_EXAMPLES
@given(data=st.data(), compat=st.sampled_from(COMPATS), omit=st.booleans())
def test_thread_count_does_not_change_results(
    data: st.DataObject, compat: str | None, omit: bool
) -> None:
    case = data.draw(dynamics(multilabel=data.draw(st.booleans())))
    if omit:
        case = data.draw(with_non_finite(case))
    kw = {"kind": case["kind"], "compat": compat, "nan_policy": "omit" if omit else "raise"}
    one = fastcarto.compute(case["outputs"], case["labels"], threads=1, **kw)
    two = fastcarto.compute(case["outputs"], case["labels"], threads=2, **kw)
    default = fastcarto.compute(case["outputs"], case["labels"], **kw)
    assert_identical(one, two)
    assert_identical(one, default)


@pytest.fixture(scope="module")
def scratch_dir() -> Any:
    with tempfile.TemporaryDirectory(prefix="fastcarto-test-") as d:
        yield Path(d)


@FEW_EXAMPLES
@given(case=dynamics(), compat=st.sampled_from(COMPATS), number=st.integers(0, 2**31))
def test_npy_path_and_memmap_equal_in_memory(
    scratch_dir: Path, case: dict[str, Any], compat: str | None, number: int
) -> None:
    outputs, labels = case["outputs"], case["labels"]
    kw = {"kind": case["kind"], "compat": compat}
    in_memory = fastcarto.compute(outputs, labels, **kw)
    path = scratch_dir / f"outputs-{number}.npy"
    np.save(path, outputs)
    try:
        assert_identical(fastcarto.compute(path, labels, **kw), in_memory)
        assert_identical(fastcarto.compute(str(path), labels, **kw), in_memory)
        mapped = np.load(path, mmap_mode="r")
        assert isinstance(mapped, np.memmap)
        assert_identical(fastcarto.compute(mapped, labels, **kw), in_memory)
        raw = np.memmap(
            scratch_dir / f"raw-{number}.bin", dtype=outputs.dtype, mode="w+", shape=outputs.shape
        )
        raw[:] = outputs
        raw.flush()
        assert_identical(fastcarto.compute(raw, labels, **kw), in_memory)
        del raw, mapped
    finally:
        path.unlink()
        (scratch_dir / f"raw-{number}.bin").unlink(missing_ok=True)


@FEW_EXAMPLES
@given(case=dynamics())
def test_non_contiguous_input_equals_contiguous(case: dict[str, Any]) -> None:
    outputs, labels = case["outputs"], case["labels"]
    contiguous = fastcarto.compute(outputs, labels, kind=case["kind"])
    assert_identical(
        fastcarto.compute(np.asfortranarray(outputs), labels, kind=case["kind"]), contiguous
    )
    # A strided view: the first C columns of a wider array (rows are not contiguous).
    view = np.concatenate([outputs, outputs], axis=2)[:, :, : outputs.shape[2]]
    assert_identical(fastcarto.compute(view, labels, kind=case["kind"]), contiguous)


# ---------------------------------------------------------------------------------------------
# Large inputs: the engine's 1024-example blocks and its 32768-row parallel threshold
# ---------------------------------------------------------------------------------------------


def _large_logits(
    rng: np.random.Generator, n_epochs: int, n_examples: int, n_classes: int
) -> np.ndarray:
    z = rng.normal(size=(n_epochs, n_examples, n_classes)) * 3
    # Sprinkle adversarial rows across block boundaries: ties, huge and very confident logits.
    z[:, ::7] = np.round(z[:, ::7])
    z[:, 5::11] *= 3000
    z[:, 3::13, 0] += 35
    return z


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_input_crosses_blocks_and_parallel_threshold(dtype: Any) -> None:
    # 3 epochs x 20001 examples = 60003 rows > 32768 (parallel), 20001 = 19 * 1024 + 545 and is
    # not a multiple of 8 (the kernel's lane count).
    rng = np.random.default_rng(20240601)
    n_epochs, n_examples, n_classes = 3, 20001, 3
    logits = _large_logits(rng, n_epochs, n_examples, n_classes).astype(dtype)
    labels = rng.integers(0, n_classes, size=n_examples)
    one = fastcarto.compute(logits, labels, kind="logits", threads=1)
    two = fastcarto.compute(logits, labels, kind="logits", threads=2)
    assert_identical(one, two)
    assert_matches(two, reference_metrics(logits, labels, "logits"), dtype)


def test_large_probs_with_omitted_rows() -> None:
    rng = np.random.default_rng(7)
    n_epochs, n_examples, n_classes = 2, 17000, 4
    probs = softmax(_large_logits(rng, n_epochs, n_examples, n_classes))
    probs[:, 9::17] = 0.0
    probs[:, 9::17, 1] = 1.0  # exact one-hot rows
    labels = rng.integers(0, n_classes, size=n_examples)
    probs[1, 1000:1100, 2] = np.nan
    probs[0, 5000::997, 0] = np.inf
    one = fastcarto.compute(probs, labels, kind="probs", nan_policy="omit", threads=1)
    two = fastcarto.compute(probs, labels, kind="probs", nan_policy="omit", threads=2)
    assert_identical(one, two)
    assert_matches(two, reference_metrics(probs, labels, "probs", nan_policy="omit"), np.float64)


def test_large_multilabel_table() -> None:
    # 11001 examples x 3 classes = 33003 (example, class) rows: finalizing crosses 32768 too.
    rng = np.random.default_rng(11)
    logits = (rng.normal(size=(2, 11001, 3)) * 4).astype(np.float32)
    targets = rng.integers(0, 2, size=(11001, 3))
    one = fastcarto.compute(logits, targets, kind="logits", threads=1)
    two = fastcarto.compute(logits, targets, kind="logits", threads=2)
    assert_identical(one, two)
    assert_matches(two, reference_metrics(logits, targets, "logits"), np.float32)


# ---------------------------------------------------------------------------------------------
# Explicit adversarial cases
# ---------------------------------------------------------------------------------------------


def _adversarial_logits() -> tuple[np.ndarray, np.ndarray]:
    """4 epochs x 10 examples x 4 classes of hand-made hard rows."""
    z = np.zeros((4, 10, 4))
    z[:, 0] = [3.0, 3.0, 1.0, 3.0]  # gold 0 ties with 1 and 3: first maximum (0) wins
    z[:, 1] = 2.5  # all equal: predicted class 0, p = 1/4
    z[:, 2] = [
        [1e4, -1e4, 0, 9999.5],
        [-1e4, 1e4, 1e4, 0],
        [1e4, 1e4, -1e4, -1e4],
        [0, 0, 1e4, -1e4],
    ]
    z[:, 3] = [
        [40.0, 0, 0, 0],
        [0, 40.0, 0, 0],
        [45.0, 1.0, 2.0, 3.0],
        [38.0, -38.0, 0, 1],
    ]  # p ~ 1 - 1e-17
    z[:, 4] = [[0, 30.0, 0, 0], [0, 0, 0, 35.0], [-1e4, 0, 0, 0], [-700.0, 0, 0, 0]]  # tiny p(gold)
    z[:, 5] = [[1, 2, 3, 4], [4, 3, 2, 1], [1, 2, 3, 4], [4, 3, 2, 1]]  # forgotten and relearned
    z[:, 6] = [[0, 1e-9, 0, 0], [1e-9, 0, 0, 0], [0, 0, 0, 1e-12], [5e-324, 0, 0, 0]]  # near ties
    z[:, 7] = [[-3e4, -3e4 + 1, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2.5], [-1, -1, -1, -1]]
    z[:, 8] = [[27.6, 0, 0, 0], [28.0, 0, 0, 0], [0, 0, 0, 0], [29.0, 0, 0, 0]]  # 1 - g ~ 1e-12
    z[:, 9] = [[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [1e-3, 0, 0, 0], [0, 0, 0, 0]]
    labels = np.array([0, 2, 1, 0, 0, 3, 3, 1, 0, 0])
    return z, labels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compat", COMPATS)
@pytest.mark.parametrize("threads", [1, 2])
def test_adversarial_logits(dtype: Any, compat: str | None, threads: int) -> None:
    z, labels = _adversarial_logits()
    z = z.astype(dtype)
    case = {"outputs": z, "labels": labels, "kind": "logits", "dtype": np.dtype(dtype)}
    check_against_reference(case, compat=compat, threads=threads)
    check_against_reference(case, compat=compat, epochs=[0, 2], ddof=1, threads=threads)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compat", COMPATS)
def test_adversarial_probs(dtype: Any, compat: str | None) -> None:
    z, labels = _adversarial_logits()
    p = softmax(z)
    p[1, 0] = [1.0, 0.0, 0.0, 0.0]  # exact one-hot, gold
    p[2, 0] = [0.0, 1.0, 0.0, 0.0]  # exact one-hot, wrong: p(gold) = 0, loss clipped at eps
    p[3, 1] = [0.25, 0.25, 0.25, 0.25]
    p[0, 9] = [1e-30, 1.0, 0.0, 0.0]  # tiny p(gold)
    p = p.astype(dtype)
    case = {"outputs": p, "labels": labels, "kind": "probs", "dtype": np.dtype(dtype)}
    dm = check_against_reference(case, compat=compat)
    if compat is None:
        assert np.isfinite(dm["loss"]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_argmax_ties_first_maximum_wins(dtype: Any) -> None:
    z = np.array(
        [[[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [5.0, 5.0, 5.0], [0.0, 0.0, 0.0]]], dtype=dtype
    )
    dm = fastcarto.compute(z, [1, 2, 1, 0], kind="logits")
    assert dm["final_pred"].tolist() == [0, 1, 0, 0]
    assert dm["correctness"].tolist() == [0.0, 0.0, 0.0, 1.0]
    p = np.array([[[0.5, 0.5], [0.5, 0.5]]], dtype=dtype)
    assert fastcarto.compute(p, [1, 0], kind="probs")["final_pred"].tolist() == [0, 0]
    # One column: z == 0 (p == 0.5) is the tie [0, 0] / [0.5, 0.5], predicted class 0.
    for kind, value in (("logits", 0.0), ("probs", 0.5)):
        one = np.full((1, 2, 1), value, dtype=dtype)
        assert fastcarto.compute(one, [0, 1], kind=kind)["final_pred"].tolist() == [0, 0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dataiq_threshold_is_strict(dtype: Any) -> None:
    # Data-IQ counts p(gold) > 0.5; an exact 0.5 (a two-way tie) is not confident.
    # (The differential tests allow p(gold) within a rounding band of 0.5 to go either way.)
    z = np.array([[[1.5, 1.5], [0.0, 0.0]], [[2.0, 1.0], [0.0, 0.0]]], dtype=dtype)
    one = np.zeros((2, 2, 1), dtype=dtype)  # sigmoid(0) == 0.5 exactly
    for outputs, kind in ((z, "logits"), (softmax(z).astype(dtype), "probs"), (one, "logits")):
        dm = fastcarto.compute(outputs, [0, 1], kind=kind, compat="dataiq")
        assert dm["correctness"].tolist() == ([0.5, 0.0] if outputs is not one else [0.0, 0.0]), (
            kind
        )
    p = np.full((1, 2, 1), 0.5, dtype=dtype)
    assert fastcarto.compute(p, [0, 1], kind="probs", compat="dataiq")["correctness"].tolist() == [
        0.0,
        0.0,
    ]


def test_binary_single_logit_is_sigmoid() -> None:
    z = np.array([[[-2.0], [0.0], [3.0]], [[1.0], [-40.0], [40.0]]])
    labels = np.array([1, 0, 1])
    dm = fastcarto.compute(z, labels, kind="logits")
    g = np.where(labels == 1, sigmoid(z[..., 0]), 1 - sigmoid(z[..., 0]))
    np.testing.assert_allclose(dm["confidence"], g.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        dm["aum"], np.where(labels == 1, z[..., 0], -z[..., 0]).mean(axis=0), rtol=1e-12
    )


# ---------------------------------------------------------------------------------------------
# Epoch selection and nan_policy details
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "epochs",
    [None, 1, 3, 5, slice(1, None), slice(None, None, 2), slice(-2, None), [0, 4], [1, 2, 3], [4]],
)
def test_epoch_numbers_are_positions_in_the_full_array(epochs: Any) -> None:
    # Correctness pattern over the 5 epochs for label 0: example 0: 0 1 0 1 1, example 1: 1 1 1 0 1.
    right, wrong = [2.0, 0.0], [0.0, 2.0]
    z = np.array(
        [[wrong, right], [right, right], [wrong, right], [right, wrong], [right, right]],
        dtype=np.float64,
    )
    labels = np.array([0, 0])
    dm = fastcarto.compute(z, labels, kind="logits", epochs=epochs)
    assert_matches(dm, reference_metrics(z, labels, "logits", epochs=epochs), np.float64)
    chosen = select_epochs(epochs, 5)
    assert dm["n_epochs"].tolist() == [len(chosen)] * 2
    if epochs == slice(1, None):
        # 1 0 1 1 and 1 1 0 1: learned at epoch 1, stable from epoch 3 and 4, forgotten once.
        assert dm["first_learned"].tolist() == [1, 1]
        assert dm["stable_from"].tolist() == [3, 4]
        assert dm["forgetting"].tolist() == [1, 1]


def test_forgetting_counts_between_observed_epochs_only() -> None:
    # Label 0; correct, wrong (omitted), correct: no forgetting is seen when epoch 1 is omitted.
    z = np.array([[[2.0, 0.0]], [[np.nan, 1.0]], [[2.0, 0.0]], [[0.0, 2.0]]])
    dm = fastcarto.compute(z, [0], kind="logits", nan_policy="omit")
    assert dm["forgetting"].tolist() == [1]  # only the 2 -> 3 transition
    assert dm["n_epochs"].tolist() == [3]
    assert dm["first_learned"].tolist() == [0]
    assert np.isnan(dm["stable_from"]).all()
    z[1, 0] = [0.0, 1.0]
    assert fastcarto.compute(z, [0], kind="logits")["forgetting"].tolist() == [2]


@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_in_unselected_epochs_is_ignored(kind: str) -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 6, 3))
    outputs = z if kind == "logits" else softmax(z)
    outputs[1, 2, 0] = np.nan
    outputs[3, 4, 1] = np.inf
    labels = rng.integers(0, 3, size=6)
    for epochs in ([0, 2], slice(0, 4, 2), 1):
        dm = fastcarto.compute(outputs, labels, kind=kind, epochs=epochs)
        assert_matches(dm, reference_metrics(outputs, labels, kind, epochs=epochs), np.float64)
    with pytest.raises(fastcarto.NonFiniteError):
        fastcarto.compute(outputs, labels, kind=kind)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fully_omitted_example(dtype: Any) -> None:
    z = np.array([[[np.nan, 1.0], [0.0, 1.0]], [[np.inf, 0.0], [1.0, 0.0]]], dtype=dtype)
    labels = np.array([1, 0])
    dm = fastcarto.compute(z, labels, kind="logits", nan_policy="omit")
    expected = reference_metrics(z, labels, "logits", nan_policy="omit")
    assert_matches(dm, expected, dtype, skip=("label",))
    assert dm["n_epochs"].tolist() == [0, 2]
    assert not dm["never_learned"][0]
    for compat in COMPATS[1:]:
        assert_matches(
            fastcarto.compute(z, labels, kind="logits", nan_policy="omit", compat=compat),
            reference_compat(z, labels, "logits", compat, nan_policy="omit"),
            dtype,
            compat=compat,
        )


def test_fully_omitted_example_keeps_its_label() -> None:
    # compute() is given every example's label, so the label column should hold it even for an
    # example whose every observation was omitted (its metrics are NaN / null, n_epochs 0).
    z = np.array([[[np.nan, 1.0], [0.0, 1.0]], [[np.inf, 0.0], [1.0, 0.0]]])
    dm = fastcarto.compute(z, [1, 0], kind="logits", nan_policy="omit")
    assert dm["label"].tolist() == [1, 0]


# ---------------------------------------------------------------------------------------------
# Table schema
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("multilabel", [False, True])
def test_default_schema(multilabel: bool) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 5, 2)).astype(np.float32)
    labels = rng.integers(0, 2, size=(5, 2) if multilabel else 5)
    table = fastcarto.compute(z, labels, kind="logits").to_arrow()
    types = {
        "id": pa.int64(),
        "class": pa.int64(),
        "label": pa.int64(),
        "forgetting": pa.int64(),
        "never_learned": pa.bool_(),
        "first_learned": pa.int64(),
        "stable_from": pa.int64(),
        "final_pred": pa.int64(),
        "n_epochs": pa.int64(),
    }
    columns = list(DEFAULT_COLUMNS)
    if multilabel:
        columns.insert(1, "class")
    assert table.column_names == columns
    for name in columns:
        assert table.schema.field(name).type == types.get(name, pa.float64()), name
    assert len(fastcarto.compute(z, labels, kind="logits")) == 5 * (2 if multilabel else 1)
