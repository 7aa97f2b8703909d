"""Every kind of bad input: each case raises the documented exception class with a message that
says what and where, and no Rust panic ever reaches Python.

`fastcarto.compute` on clean input is the oracle where a value is expected.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa
import pytest
from conftest import FEWER_EXAMPLES
from fastcarto import (
    Accumulator,
    EmptyInputError,
    FastcartoError,
    FileFormatError,
    InvalidProbabilitiesError,
    LabelError,
    NonFiniteError,
)
from helpers import assert_maps_equal, is_panic, raises
from hypothesis import given
from hypothesis import strategies as st
from reference import softmax

E, N, C = 4, 8, 3


# --------------------------------------------------------------------------------------------
# helpers


def logits(
    dtype: Any = np.float64, seed: int = 0, shape: tuple[int, int, int] = (E, N, C)
) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=2.0, size=shape).astype(dtype)


def probs(
    dtype: Any = np.float64, seed: int = 0, shape: tuple[int, int, int] = (E, N, C)
) -> np.ndarray:
    return softmax(np.random.default_rng(seed).normal(scale=2.0, size=shape)).astype(dtype)


def labels(n: int = N, c: int = C, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, c, size=n)


def test_raises_helper_rejects_panics() -> None:
    class PanicException(BaseException):  # same name as pyo3_runtime's
        pass

    with pytest.raises(AssertionError, match="panic"), raises(ValueError):
        raise PanicException("boom")


# --------------------------------------------------------------------------------------------
# non-finite values


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("kind", ["logits", "probs"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_raises_naming_epoch_and_example(bad: float, kind: str, dtype: Any) -> None:
    x = logits(dtype) if kind == "logits" else probs(dtype)
    x[2, 5, 1] = bad
    with raises(NonFiniteError, "epoch 2", "example 5", "nan_policy"):
        fastcarto.compute(x, labels(), kind=kind)


def test_non_finite_value_is_named() -> None:
    x = logits()
    x[1, 3, 0] = -np.inf
    with raises(NonFiniteError, "-inf"):
        fastcarto.compute(x, labels(), kind="logits")


def test_non_finite_in_binary_one_column() -> None:
    x = logits(shape=(E, N, 1))
    x[3, 7, 0] = np.nan
    with raises(NonFiniteError, "epoch 3", "example 7"):
        fastcarto.compute(x, labels(c=2), kind="logits")


def test_non_finite_in_multilabel() -> None:
    x = logits()
    x[1, 6, 2] = np.inf
    targets = np.random.default_rng(3).integers(0, 2, size=(N, C))
    with raises(NonFiniteError, "epoch 1", "example 6"):
        fastcarto.compute(x, targets, kind="logits")


def test_non_finite_in_large_array_names_the_right_place() -> None:
    # several parallel blocks of examples: the position must still be exact
    x = logits(np.float32, shape=(3, 5000, 4))
    x[2, 4321, 3] = np.nan
    with raises(NonFiniteError, "epoch 2", "example 4321"):
        fastcarto.compute(x, labels(5000, 4), kind="logits", threads=2)


def test_non_finite_reports_position_not_selection_index() -> None:
    x = logits()
    x[2, 5, 1] = np.nan
    with raises(NonFiniteError, "epoch 2", "example 5"):
        fastcarto.compute(x, labels(), kind="logits", epochs=[0, 2])
    # an unselected epoch is never read
    fastcarto.compute(x, labels(), kind="logits", epochs=[0, 1, 3])
    fastcarto.compute(x, labels(), kind="logits", epochs=2)


def test_non_finite_in_npy_file(tmp_path: Path) -> None:
    x = logits(np.float32)
    x[2, 5, 1] = np.nan
    path = tmp_path / "out.npy"
    np.save(path, x)
    with raises(NonFiniteError, "epoch 2", "example 5"):
        fastcarto.compute(path, labels(), kind="logits")


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_nan_omit_skips_observations(kind: str) -> None:
    x = logits() if kind == "logits" else probs()
    y = labels()
    original = x.copy()
    x[2, 5, 1] = np.nan
    x[0, 1, :] = np.inf
    dm = fastcarto.compute(x, y, kind=kind, nan_policy="omit")
    n_epochs = dm["n_epochs"]
    assert n_epochs[5] == E - 1 and n_epochs[1] == E - 1
    assert (np.delete(n_epochs, [1, 5]) == E).all()
    # example 5 is exactly what it is over the epochs it has (epoch numbers are positions)
    ref = fastcarto.compute(x, y, kind=kind, epochs=[0, 1, 3], nan_policy="omit")
    row5 = fastcarto.DataMap(dm.to_arrow().slice(5, 1), kind=kind)
    assert_maps_equal(row5, fastcarto.DataMap(ref.to_arrow().slice(5, 1), kind=kind))
    # the untouched examples do not notice
    clean = fastcarto.compute(original, y, kind=kind)
    keep = [i for i in range(N) if i not in (1, 5)]
    np.testing.assert_allclose(dm["confidence"][keep], clean["confidence"][keep], rtol=1e-12)


def test_nan_omit_every_epoch_of_an_example() -> None:
    x = logits()
    y = labels()
    x[:, 4, 0] = np.nan
    dm = fastcarto.compute(x, y, kind="logits", nan_policy="omit")
    assert len(dm) == N
    assert dm["n_epochs"][4] == 0
    for col in ("confidence", "variability", "correctness", "aum", "el2n", "loss", "entropy"):
        assert np.isnan(dm[col][4]), col
    assert dm["forgetting"][4] == 0
    assert not dm["never_learned"][4]  # never observed is not "never learned"
    for col in ("first_learned", "stable_from", "final_pred"):
        assert np.isnan(dm[col][4]), col
    label = dm["label"][4]
    assert np.isnan(label) or label == y[4]
    # the other examples are complete
    assert (np.delete(dm["n_epochs"], 4) == E).all()
    assert np.isfinite(np.delete(dm["confidence"], 4)).all()
    df = dm.to_pandas()
    assert int(df["n_epochs"].iloc[4]) == 0


def test_nan_omit_all_values_map_repr_does_not_warn() -> None:
    x = np.full((2, 3, 2), np.nan)
    dm = fastcarto.compute(x, [0, 1, 0], kind="logits", nan_policy="omit")
    assert dm["n_epochs"].tolist() == [0, 0, 0]
    # warnings are errors: repr must not emit numpy's "Mean of empty slice"
    assert "3 examples" in repr(dm)


def test_nan_omit_in_accumulator_minibatch() -> None:
    x = logits()
    y = labels()
    acc = Accumulator(N, C, kind="logits", nan_policy="omit")
    for e in range(E):
        out = x[e].copy()
        if e == 1:
            out[[2, 6], 0] = np.nan
        idx = np.arange(N)[::-1].copy()
        acc.update(out[idx], y[idx], epoch=e, ids=idx)
    assert acc.finalize()["n_epochs"].tolist() == [E, E, E - 1, E, E, E, E - 1, E]


def test_extreme_finite_logits_give_finite_metrics() -> None:
    # finite, representable logits whose differences overflow the dtype
    for dtype, big in ((np.float32, 3e38), (np.float64, 1.5e308)):
        x = np.array([[[big, -big, 0.0]]], dtype=dtype)
        dm = fastcarto.compute(x, [0], kind="logits")
        assert dm["confidence"][0] == 1.0
        assert dm["correctness"][0] == 1.0
        assert dm["el2n"][0] == 0.0
        assert dm["loss"][0] == 0.0
        assert np.isfinite(dm["entropy"][0]), f"{dtype.__name__}: entropy {dm['entropy'][0]}"
        assert dm["entropy"][0] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_rows_whose_sum_overflows_are_not_taken_for_infinities(dtype: type, kind: str) -> None:
    # The kernel flags a row when the plain sum of its values is not finite; a finite row whose
    # sum overflows is a false alarm that must neither raise nor be omitted.
    big = np.finfo(dtype).max / 2
    if kind == "logits":
        x = np.array([[[big, big, 0.0], [big, big, big]]], dtype=dtype)
        dm = fastcarto.compute(x, [0, 2], kind="logits", nan_policy="omit")
        assert dm["n_epochs"].tolist() == [1, 1]
        # two (three) tied maxima: the first is predicted, the gold one has probability 1/2 (1/3)
        assert dm["confidence"].tolist() == pytest.approx([0.5, 1 / 3])
        assert dm["correctness"].tolist() == [1.0, 0.0]
        assert dm["aum"].tolist() == [0.0, 0.0]
        assert dm["loss"].tolist() == pytest.approx([np.log(2), np.log(3)])
    else:
        # probabilities cannot overflow a sum and stay valid: a real overflow is an invalid row
        x = np.array([[[big, big, 0.0]]], dtype=dtype)
        with pytest.raises(ValueError, match="outside"):
            fastcarto.compute(x, [0], kind="probs")


# --------------------------------------------------------------------------------------------
# labels


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (-1, "label -1"),
        (C, f"label {C}"),
        (C + 5, f"label {C + 5}"),
        (2**40, "label 1099511627776"),
    ],
)
def test_label_out_of_range(bad: int, fragment: str) -> None:
    y = labels()
    y[6] = bad
    with raises(LabelError, fragment, "example 6", f"{C} classes"):
        fastcarto.compute(logits(), y, kind="logits")


def test_label_out_of_range_in_accumulator() -> None:
    y = labels()
    y[2] = -3
    acc = Accumulator(N, C, kind="logits")
    with raises(LabelError, "label -3", "example 2"):
        acc.update(logits()[0], y)
    assert acc.last_epoch is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float_labels_are_type_error(dtype: Any) -> None:
    with raises(TypeError, "labels must be integers"):
        fastcarto.compute(logits(), labels().astype(dtype), kind="logits")


@pytest.mark.parametrize(
    "bad", [["a"] * N, [None] * N, [0.5] * N], ids=["str", "none", "float-list"]
)
def test_non_integer_label_lists_are_type_error(bad: list[Any]) -> None:
    with raises(TypeError, "labels"):
        fastcarto.compute(logits(), bad, kind="logits")


def test_bool_labels_are_accepted_as_zero_one() -> None:
    y = labels(c=2)
    x = logits(shape=(E, N, 2))
    assert_maps_equal(
        fastcarto.compute(x, y.astype(bool), kind="logits"), fastcarto.compute(x, y, kind="logits")
    )


@pytest.mark.parametrize("n", [N - 1, N + 1, 0])
def test_wrong_number_of_labels(n: int) -> None:
    with raises(ValueError, f"got {n} labels for {N} examples"):
        fastcarto.compute(logits(), labels(n) if n else np.array([], dtype=np.int64), kind="logits")


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((N, 1, 1), dtype=np.int64),
        np.zeros((1, N), dtype=np.int64),
        np.int64(0),
        np.zeros((N, C + 1), dtype=np.int64),
    ],
    ids=["3d", "1xN", "scalar", "N-by-C+1"],
)
def test_labels_of_wrong_ndim_or_shape(bad: np.ndarray) -> None:
    with raises(ValueError, "shape"):
        fastcarto.compute(logits(), bad, kind="logits")


def test_labels_none_is_value_error() -> None:
    with raises(ValueError, "labels are required"):
        fastcarto.compute(logits(), None, kind="logits")
    with raises(ValueError, "labels are required"):
        fastcarto.compute(logits(), kind="logits")
    acc = Accumulator(N, C, kind="logits")
    with raises(ValueError, "labels are required"):
        acc.update(logits()[0], None)


@pytest.mark.parametrize("bad", [2, -1])
def test_binary_one_column_label_must_be_zero_or_one(bad: int) -> None:
    y = labels(c=2)
    y[3] = bad
    with raises(LabelError, f"label {bad}", "example 3", "2 classes"):
        fastcarto.compute(logits(shape=(E, N, 1)), y, kind="logits")


@pytest.mark.parametrize("bad", [2, -1, 7])
def test_multilabel_targets_must_be_zero_or_one(bad: int) -> None:
    t = np.random.default_rng(2).integers(0, 2, size=(N, C))
    t[4, 1] = bad
    with raises(LabelError, "example 4", "class 1", "0 or 1"):
        fastcarto.compute(logits(), t, kind="logits")


def test_uint64_huge_label() -> None:
    y = labels().astype(np.uint64)
    y[5] = np.uint64(2**64 - 1)
    with raises(LabelError, "label 18446744073709551615 of example 5 is out of range"):
        fastcarto.compute(logits(), y, kind="logits")
    y[5] = np.uint64(2**63)
    with raises(LabelError, "out of range"):
        fastcarto.compute(logits(), y, kind="logits")


def test_uint64_small_labels_work() -> None:
    y = labels()
    assert_maps_equal(
        fastcarto.compute(logits(), y.astype(np.uint64), kind="logits"),
        fastcarto.compute(logits(), y, kind="logits"),
    )


# --------------------------------------------------------------------------------------------
# shapes


def test_two_dimensional_outputs_hint_at_epoch_axis() -> None:
    with raises(ValueError, "3 dimensions", "outputs[None]"):
        fastcarto.compute(logits()[0], labels(), kind="logits")


@pytest.mark.parametrize("shape", [(2, E, N, C), (N,), ()], ids=["4d", "1d", "0d"])
def test_wrong_ndim_outputs(shape: tuple[int, ...]) -> None:
    x = np.zeros(shape)
    with raises(ValueError, "3 dimensions"):
        fastcarto.compute(x, labels(), kind="logits")


def test_zero_epochs() -> None:
    with raises(EmptyInputError, "epoch"):
        fastcarto.compute(np.zeros((0, N, C)), labels(), kind="logits")


def test_zero_examples() -> None:
    with raises(EmptyInputError, "no examples"):
        fastcarto.compute(np.zeros((E, 0, C)), np.zeros(0, dtype=np.int64), kind="logits")


def test_zero_classes() -> None:
    with raises(FastcartoError, "classes"):
        fastcarto.compute(np.zeros((E, N, 0)), labels(), kind="logits")


def test_accumulator_update_with_zero_rows_and_index() -> None:
    acc = Accumulator(N, C, kind="logits")
    acc.update(logits()[0], labels())
    before = acc.to_arrow()
    try:
        acc.update(
            np.zeros((0, C)),
            np.zeros(0, dtype=np.int64),
            ids=np.zeros(0, dtype=np.int64),
            epoch=1,
        )
    except BaseException as exc:
        assert not is_panic(exc)
        assert isinstance(exc, FastcartoError)
    assert acc.to_arrow().equals(before)


@pytest.mark.parametrize(
    ("epochs", "cls", "fragment"),
    [
        (5, ValueError, "epochs=5"),
        (0, ValueError, "epochs=0"),
        (-1, ValueError, "epochs=-1"),
        ([4], ValueError, "epoch 4 is out of range"),
        ([0, -5], ValueError, "epoch -5 is out of range"),
        ([], EmptyInputError, "empty"),
        (slice(5, 9), EmptyInputError, "empty"),
        (slice(2, 2), EmptyInputError, "empty"),
        ([2, 1], ValueError, "increasing"),
        ([0, 0], ValueError, "increasing"),
        ([0, 2, 2], ValueError, "increasing"),
        (slice(None, None, -1), ValueError, "increasing"),
        (True, TypeError, "bool"),
        ([True, False], TypeError, "True"),
        ([0.0, 1.0], TypeError, "0.0"),
        (["0"], TypeError, "'0'"),
        (2.0, TypeError, "not float"),
        ("01", TypeError, "not str"),
        (object(), TypeError, "not object"),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_bad_epoch_selection(epochs: Any, cls: type[BaseException], fragment: str) -> None:
    with raises(cls, fragment):
        fastcarto.compute(logits(), labels(), kind="logits", epochs=epochs)


def test_float_epoch_selection_is_type_error() -> None:
    message = "epochs must be an int, a slice or a sequence of ints, not float"
    with raises(TypeError, message):
        fastcarto.compute(logits(), labels(), kind="logits", epochs=2.0)
    table = pa.table({"epoch": [0], "id": [0], "label": [0], "logits": [[0.0, 1.0]]})
    with raises(TypeError, message):
        fastcarto.compute(table, epochs=2.0)


def test_good_epoch_selections_agree() -> None:
    x, y = logits(), labels()
    ref = fastcarto.compute(x, y, kind="logits", epochs=[1, 3])
    for sel in (slice(1, None, 2), np.array([1, 3]), [1, -1], (np.int64(1), np.int32(3))):
        assert_maps_equal(fastcarto.compute(x, y, kind="logits", epochs=sel), ref)
    assert_maps_equal(
        fastcarto.compute(x, y, kind="logits", epochs=np.int64(2)),
        fastcarto.compute(x[:2], y, kind="logits"),
    )


# --------------------------------------------------------------------------------------------
# dtypes and memory layouts


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.astype(np.int64),
        lambda x: x.astype(np.int32),
        lambda x: x > 0,
        lambda x: x.astype(object),
        lambda x: x.astype(np.float16),
        lambda x: (
            x.astype(np.longdouble)
            if np.dtype(np.longdouble).itemsize > 8
            else x.astype(np.complex64)
        ),
        lambda x: x.astype(np.complex128),
        lambda x: x.astype(str),
        lambda x: x.astype(np.float32).view(np.uint32),
    ],
    ids=[
        "int64",
        "int32",
        "bool",
        "object",
        "float16",
        "longdouble",
        "complex",
        "str",
        "uint32-view",
    ],
)
def test_non_float_outputs_are_type_error(make: Any) -> None:
    with raises(TypeError, "float32 or float64"):
        fastcarto.compute(make(logits()), labels(), kind="logits")


@pytest.mark.parametrize(
    "make", [lambda x: x.astype(np.int64), lambda x: x.astype(np.float16), lambda x: x.astype(str)]
)
def test_non_float_outputs_in_accumulator_are_type_error(make: Any) -> None:
    acc = Accumulator(N, C, kind="logits")
    with raises(TypeError, "float32 or float64"):
        acc.update(make(logits()[0]), labels())
    assert acc.last_epoch is None


def test_path_passed_to_accumulator_is_type_error(tmp_path: Path) -> None:
    acc = Accumulator(N, C, kind="logits")
    with raises(TypeError, "path"):
        acc.update(str(tmp_path / "x.npy"), labels())


def test_ragged_nested_list_is_an_error() -> None:
    with raises((TypeError, ValueError)):
        fastcarto.compute([[[0.0, 1.0], [0.0]]], [0, 1], kind="logits")


@pytest.mark.parametrize("dtype", [">f4", ">f8"])
def test_big_endian_arrays_work(dtype: str) -> None:
    x, y = logits(np.float64), labels()
    native = x.astype(dtype.replace(">", "<"))
    assert_maps_equal(
        fastcarto.compute(x.astype(dtype), y, kind="logits"),
        fastcarto.compute(native, y, kind="logits"),
    )
    acc = Accumulator(N, C, kind="logits")
    acc.update(x[0].astype(dtype), y)
    assert_maps_equal(acc.finalize(), fastcarto.compute(native[:1], y, kind="logits"))


@pytest.mark.parametrize(
    "view",
    [
        lambda x: np.ascontiguousarray(x.transpose(2, 1, 0)).transpose(2, 1, 0),  # Fortran-like
        lambda x: np.asfortranarray(x),
        lambda x: np.repeat(x, 2, axis=1)[:, ::2],  # examples strided
        lambda x: np.repeat(x, 2, axis=2)[:, :, ::2],  # classes strided
        lambda x: np.repeat(x, 2, axis=0)[::2],  # epochs strided (rows contiguous)
        lambda x: np.ascontiguousarray(x[::-1])[::-1],  # negative epoch stride
        lambda x: np.ascontiguousarray(x[:, ::-1])[:, ::-1],  # negative example stride
        lambda x: np.concatenate([x, x], axis=2)[:, :, :C],  # a column slice
    ],
    ids=[
        "transposed",
        "fortran",
        "examples-strided",
        "classes-strided",
        "epochs-strided",
        "epochs-reversed",
        "examples-reversed",
        "column-slice",
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_arrays_equal_contiguous_copies(view: Any, dtype: Any) -> None:
    x, y = logits(dtype), labels()
    v = view(x)
    np.testing.assert_array_equal(v, x)
    assert_maps_equal(
        fastcarto.compute(v, y, kind="logits"),
        fastcarto.compute(np.ascontiguousarray(x), y, kind="logits"),
    )


@pytest.mark.parametrize(
    "view",
    [
        lambda e: np.ascontiguousarray(e.T).T,
        lambda e: np.repeat(e, 2, axis=0)[::2],
        lambda e: np.repeat(e, 2, axis=1)[:, ::2],
        lambda e: np.ascontiguousarray(e[::-1])[::-1],
    ],
    ids=["transposed", "rows-strided", "classes-strided", "reversed"],
)
def test_non_contiguous_accumulator_updates(view: Any) -> None:
    x, y = logits(), labels()
    acc = Accumulator(N, C, kind="logits")
    for e in range(E):
        acc.update(view(x[e]), y)
    assert_maps_equal(acc.finalize(), fastcarto.compute(x, y, kind="logits"))


def test_non_contiguous_one_column_accumulator_update() -> None:
    # a binary model's logit taken out of a wider array: a strided 1-d view
    x, y = logits(shape=(E, N, 3)), labels(c=2)
    acc = Accumulator(N, 1, kind="logits")
    for e in range(E):
        acc.update(x[e, :, 2], y)
    assert_maps_equal(
        acc.finalize(), fastcarto.compute(np.ascontiguousarray(x[:, :, 2:]), y, kind="logits")
    )


def test_non_contiguous_labels_and_index() -> None:
    x = logits()
    y2 = np.repeat(labels(), 2)
    y = y2[::2]
    assert_maps_equal(
        fastcarto.compute(x, y, kind="logits"), fastcarto.compute(x, y.copy(), kind="logits")
    )
    acc = Accumulator(N, C, kind="logits")
    idx = np.repeat(np.arange(N), 2)[::2]
    acc.update(x[0], y, ids=idx, epoch=0)
    assert_maps_equal(acc.finalize(), fastcarto.compute(x[:1], y.copy(), kind="logits"))


def test_read_only_arrays_work() -> None:
    x, y = logits(), labels()
    x.flags.writeable = False
    y.flags.writeable = False
    fastcarto.compute(x, y, kind="logits")
    Accumulator(N, C, kind="logits").update(x[0], y)


def test_memmaps_work(tmp_path: Path) -> None:
    x, y = logits(np.float32), labels()
    raw = np.memmap(tmp_path / "raw.bin", dtype=np.float32, mode="w+", shape=x.shape)
    raw[:] = x
    raw.flush()
    ref = fastcarto.compute(x, y, kind="logits")
    assert_maps_equal(fastcarto.compute(raw, y, kind="logits"), ref)
    ro = np.memmap(tmp_path / "raw.bin", dtype=np.float32, mode="r", shape=x.shape)
    assert_maps_equal(fastcarto.compute(ro, y, kind="logits"), ref)
    npy = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.float32, shape=x.shape)
    npy[:] = x
    npy.flush()
    assert_maps_equal(fastcarto.compute(npy, y, kind="logits"), ref)
    assert_maps_equal(fastcarto.compute(tmp_path / "m.npy", y, kind="logits"), ref)
    assert_maps_equal(fastcarto.compute(str(tmp_path / "m.npy"), y, kind="logits"), ref)


def test_nested_lists_work() -> None:
    x, y = logits(), labels()
    ref = fastcarto.compute(x, y, kind="logits")
    assert_maps_equal(fastcarto.compute(x.tolist(), y.tolist(), kind="logits"), ref)
    acc = Accumulator(N, C, kind="logits")
    for e in range(E):
        acc.update(x[e].tolist(), y.tolist())
    assert_maps_equal(acc.finalize(), ref)


def test_flat_list_for_one_column_accumulator() -> None:
    # `update` documents outputs of shape (rows,) when n_classes == 1: a flat list is such outputs
    x, y = logits(shape=(E, N, 1)), labels(c=2)
    acc = Accumulator(N, 1, kind="logits")
    for e in range(E):
        acc.update(x[e, :, 0].tolist(), y)
    assert_maps_equal(acc.finalize(), fastcarto.compute(x, y, kind="logits"))


# --------------------------------------------------------------------------------------------
# probabilities


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(-0.25, "value -0.25 in column 1"), (1.5, "value 1.5 in column 1")],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probability_outside_unit_interval(value: float, fragment: str, dtype: Any) -> None:
    p = probs(dtype)
    p[2, 5, 1] = value
    with raises(InvalidProbabilitiesError, "epoch 2", "example 5", fragment, "[0, 1]"):
        fastcarto.compute(p, labels(), kind="probs")


def test_probability_row_not_summing_to_one() -> None:
    p = probs()
    p[2, 5] = [0.5, 0.6, 0.0]
    with raises(InvalidProbabilitiesError, "epoch 2", "example 5", "sums to 1.1"):
        fastcarto.compute(p, labels(), kind="probs")
    p[2, 5] = [0.3, 0.3, 0.3]
    with raises(InvalidProbabilitiesError, "epoch 2", "example 5", "sums to"):
        fastcarto.compute(p, labels(), kind="probs")


def test_logits_passed_as_probs() -> None:
    with raises(InvalidProbabilitiesError, "epoch 0", "example 0", 'kind="logits"'):
        fastcarto.compute(logits(), labels(), kind="probs")


def test_binary_probability_outside_unit_interval() -> None:
    p = 1 / (1 + np.exp(-logits(shape=(E, N, 1))))
    p[1, 2, 0] = 1.0001
    with raises(InvalidProbabilitiesError, "epoch 1", "example 2"):
        fastcarto.compute(p, labels(c=2), kind="probs")


def test_multilabel_probabilities_need_not_sum_to_one_but_lie_in_unit_interval() -> None:
    t = np.random.default_rng(4).integers(0, 2, size=(N, C))
    p = 1 / (1 + np.exp(-logits()))
    dm = fastcarto.compute(p, t, kind="probs")
    assert len(dm) == N * C
    p[3, 7, 2] = -0.5
    with raises(InvalidProbabilitiesError, "epoch 3", "example 7"):
        fastcarto.compute(p, t, kind="probs")


def test_invalid_probabilities_in_accumulator_change_nothing() -> None:
    p, y = probs(), labels()
    acc = Accumulator(N, C, kind="probs")
    acc.update(p[0], y)
    before = acc.to_arrow()
    bad = p[1].copy()
    bad[N - 1] = [0.9, 0.9, 0.9]
    with raises(InvalidProbabilitiesError, "epoch 1", f"example {N - 1}"):
        acc.update(bad, y)
    assert acc.to_arrow().equals(before)


@pytest.mark.parametrize("n_classes", [2, 10, 1000])
def test_probabilities_summing_to_one_within_float32_rounding_pass(n_classes: int) -> None:
    p64 = softmax(np.random.default_rng(5).normal(scale=3.0, size=(2, 50, n_classes)))
    p32 = p64.astype(np.float32)
    assert np.abs(p32.sum(-1, dtype=np.float32) - 1).max() > 0 or n_classes == 2
    y = labels(50, n_classes)
    dm = fastcarto.compute(p32, y, kind="probs")
    np.testing.assert_allclose(
        dm["confidence"],
        fastcarto.compute(p64, y, kind="probs")["confidence"],
        rtol=1e-5,
        atol=1e-7,
    )


def test_probabilities_slightly_off_within_tolerance_pass() -> None:
    p = probs()
    p[:, :, 0] += 5e-4  # documented tolerance is 1e-3
    fastcarto.compute(p, labels(), kind="probs")
    p[:, :, 0] += 1e-2
    with raises(InvalidProbabilitiesError, "epoch 0", "example 0"):
        fastcarto.compute(p, labels(), kind="probs")


def test_exact_zero_and_one_probabilities_are_valid() -> None:
    p = np.zeros((2, 3, 3))
    p[:, np.arange(3), np.arange(3)] = 1.0
    dm = fastcarto.compute(p, [0, 1, 0], kind="probs")
    assert dm["confidence"].tolist() == [1.0, 1.0, 0.0]
    assert np.isfinite(dm["loss"]).all()
    assert np.isfinite(dm["entropy"]).all()


# --------------------------------------------------------------------------------------------
# options


def test_kind_is_required_keyword() -> None:
    # kind= may be left out only for long tables, whose output column names it; an array without
    # it is refused rather than guessed.
    with raises(ValueError, "kind='logits'", "never guesses"):
        fastcarto.compute(logits(), labels())
    with raises(TypeError):
        fastcarto.compute(logits(), labels(), "logits")  # type: ignore[misc]
    with raises(TypeError, "kind"):
        Accumulator(N, C)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(kind="prob"), "kind must be one of"),
        (dict(kind="Logits"), "kind must be one of"),
        (dict(kind=None), "never guesses"),
        (dict(kind="logits", compat="carto"), "compat must be one of"),
        (dict(kind="logits", compat=""), "compat must be one of"),
        (dict(kind="logits", nan_policy="ignore"), "nan_policy must be one of"),
        (dict(kind="logits", nan_policy=None), "nan_policy must be one of"),
        (dict(kind="logits", threads=0), "threads"),
        (dict(kind="logits", threads=-1), "threads"),
        (dict(kind="logits", threads="2"), "threads"),
        (dict(kind="logits", threads=2.0), "threads"),
        (dict(kind="logits", threads=True), "threads"),
        (dict(kind="logits", threads=2**70), "at most 65536"),
        (dict(kind="logits", ddof=-1), "ddof"),
        (dict(kind="logits", ddof=1.0), "ddof"),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, dict) else None,
)
def test_bad_options_are_value_errors(kwargs: dict[str, Any], fragment: str) -> None:
    with raises(ValueError, fragment):
        fastcarto.compute(logits(), labels(), **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kind="prob"),
        dict(kind="logits", compat="carto"),
        dict(kind="logits", nan_policy="ignore"),
        dict(kind="logits", threads=0),
        dict(kind="logits", threads="2"),
    ],
)
def test_bad_options_for_accumulator_are_value_errors(kwargs: dict[str, Any]) -> None:
    with raises(ValueError):
        Accumulator(N, C, **kwargs)


def test_huge_ddof_is_value_error() -> None:
    with raises(ValueError, "ddof"):
        fastcarto.compute(logits(), labels(), kind="logits", ddof=2**40)


def test_ddof_larger_than_epochs_gives_nan_variability() -> None:
    dm = fastcarto.compute(logits(), labels(), kind="logits", ddof=E)
    assert np.isnan(dm["variability"]).all()
    assert np.isfinite(dm["confidence"]).all()


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_bad_thread_environment_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FASTCARTO_NUM_THREADS", value)
    with raises(ValueError, "FASTCARTO_NUM_THREADS"):
        fastcarto.compute(logits(), labels(), kind="logits")
    acc = Accumulator(N, C, kind="logits")
    with raises(ValueError, "FASTCARTO_NUM_THREADS"):
        acc.update(logits()[0], labels())


def test_bad_thread_environment_variable_is_fastcarto_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FASTCARTO_NUM_THREADS", "abc")
    with raises(FastcartoError, 'FASTCARTO_NUM_THREADS="abc"'):
        fastcarto.compute(logits(), labels(), kind="logits")


def test_good_thread_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = fastcarto.compute(logits(), labels(), kind="logits")
    monkeypatch.setenv("FASTCARTO_NUM_THREADS", " 2 ")
    assert_maps_equal(fastcarto.compute(logits(), labels(), kind="logits"), ref)
    for unset in ("", "  "):  # set but empty is unset (all cores), as for OMP_NUM_THREADS
        monkeypatch.setenv("FASTCARTO_NUM_THREADS", unset)
        assert_maps_equal(fastcarto.compute(logits(), labels(), kind="logits"), ref)


def test_explicit_threads_override_bad_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref = fastcarto.compute(logits(), labels(), kind="logits")
    monkeypatch.setenv("FASTCARTO_NUM_THREADS", "abc")
    assert_maps_equal(fastcarto.compute(logits(), labels(), kind="logits", threads=2), ref)
    acc = Accumulator(N, C, kind="logits", threads=2)
    for e in range(E):
        acc.update(logits()[e], labels())
    assert_maps_equal(acc.finalize(), ref)


def test_last_epoch_with_bad_environment_variable_is_not_silently_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    acc = Accumulator(N, C, kind="logits")
    acc.update(logits()[0], labels())
    monkeypatch.setenv("FASTCARTO_NUM_THREADS", "abc")
    try:
        last = acc.last_epoch
    except BaseException as exc:
        assert not is_panic(exc)
        assert isinstance(exc, FastcartoError) and "FASTCARTO_NUM_THREADS" in str(exc)
    else:
        assert last == 0, f"last_epoch is {last!r} after an update of epoch 0"


# --------------------------------------------------------------------------------------------
# .npy paths


@pytest.fixture
def npy(tmp_path: Path) -> Path:
    path = tmp_path / "outputs.npy"
    np.save(path, logits(np.float32))
    return path


def test_npy_path_works(npy: Path) -> None:
    assert_maps_equal(
        fastcarto.compute(npy, labels(), kind="logits"),
        fastcarto.compute(logits(np.float32), labels(), kind="logits"),
    )


def test_missing_npy_is_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nope.npy"
    with raises(FileNotFoundError, "nope.npy"):
        fastcarto.compute(path, labels(), kind="logits")
    with raises(FileNotFoundError, "nope.npy"):
        fastcarto.compute(str(path), labels(), kind="logits")


@pytest.mark.parametrize("cut", [1, 4, 10, E * N * C * 4 - 1])
def test_truncated_npy(npy: Path, cut: int) -> None:
    data = npy.read_bytes()
    npy.write_bytes(data[:-cut])
    with raises(FileFormatError, "truncated", npy.name):
        fastcarto.compute(npy, labels(), kind="logits")


def test_npy_truncated_inside_header(npy: Path) -> None:
    npy.write_bytes(npy.read_bytes()[:40])
    with raises(FileFormatError, npy.name):
        fastcarto.compute(npy, labels(), kind="logits")


def test_empty_file(npy: Path) -> None:
    npy.write_bytes(b"")
    with raises(FileFormatError, npy.name):
        fastcarto.compute(npy, labels(), kind="logits")


def test_npy_with_trailing_bytes(npy: Path) -> None:
    npy.write_bytes(npy.read_bytes() + b"\x00" * 7)
    with raises(FileFormatError, "7 bytes"):
        fastcarto.compute(npy, labels(), kind="logits")


@pytest.mark.parametrize(("shape", "ndim"), [((N, C), 2), ((1, E, N, C), 4), ((N,), 1)])
def test_npy_of_wrong_ndim(tmp_path: Path, shape: tuple[int, ...], ndim: int) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(shape, dtype=np.float32))
    with raises(FileFormatError, "3-d", f"{ndim} dimensions"):
        fastcarto.compute(path, labels(), kind="logits")


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.complex64, np.bool_])
def test_npy_of_unsupported_dtype(tmp_path: Path, dtype: Any) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((E, N, C), dtype=dtype))
    with raises(FileFormatError, "dtype", "float32 or float64"):
        fastcarto.compute(path, labels(), kind="logits")


def test_npy_of_objects(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((E, N, C), dtype=object), allow_pickle=True)
    with raises(FileFormatError, "dtype"):
        fastcarto.compute(path, labels(), kind="logits")


def test_big_endian_npy(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, logits(">f4"))
    with raises(FileFormatError, "big-endian"):
        fastcarto.compute(path, labels(), kind="logits")


def test_fortran_order_npy(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.asfortranarray(logits(np.float32)))
    with raises(FileFormatError, "Fortran"):
        fastcarto.compute(path, labels(), kind="logits")


@pytest.mark.parametrize(
    "content",
    [
        b"\x93NUMPY garbage",
        bytes(range(256)) * 3,
        b"epoch,example,class\n0,0,0.5\n",
        b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}",
    ],
    ids=["bad-header", "random", "text", "bad-dict"],
)
def test_not_an_npy_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.npy"
    path.write_bytes(content)
    with raises(FileFormatError, "x.npy"):
        fastcarto.compute(path, labels(), kind="logits")


def test_npz_file_with_npy_suffix(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, a=logits(np.float32))
    renamed = path.rename(tmp_path / "x.npy")
    with raises(FileFormatError, "x.npy"):
        fastcarto.compute(renamed, labels(), kind="logits")


@pytest.mark.parametrize("suffix", [".csv", ".npz", ".txt", ""])
def test_unsupported_suffix(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"outputs{suffix}"
    path.write_text("1,2,3\n")
    with raises(FileFormatError, "unknown file type", ".parquet", ".npy"):
        fastcarto.compute(path, labels(), kind="logits")


def test_uppercase_npy_suffix_works(tmp_path: Path) -> None:
    path = tmp_path / "OUT.NPY"
    with path.open("wb") as fh:
        np.save(fh, logits(np.float32))
    fastcarto.compute(path, labels(), kind="logits")


def test_directory_path(tmp_path: Path) -> None:
    # a directory is a source of data files (whatever its name); an empty one says so
    folder = tmp_path / "run.npy"
    folder.mkdir()
    with raises(EmptyInputError, "run.npy", "no data files", "directory"):
        fastcarto.compute(folder, labels(), kind="logits")


def test_npy_labels_mismatch(npy: Path) -> None:
    with raises(ValueError, f"got 3 labels for {N} examples"):
        fastcarto.compute(npy, labels(3), kind="logits")
    y = labels()
    y[1] = 9
    with raises(LabelError, "label 9", "example 1"):
        fastcarto.compute(npy, y, kind="logits")


def test_npy_epoch_selection_errors(npy: Path) -> None:
    with raises(ValueError, "epoch 7 is out of range"):
        fastcarto.compute(npy, labels(), kind="logits", epochs=[7])
    with raises(EmptyInputError):
        fastcarto.compute(npy, labels(), kind="logits", epochs=[])


def test_npy_zero_sized(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((E, 0, C), dtype=np.float32))
    with raises(EmptyInputError, "no examples"):
        fastcarto.compute(path, np.zeros(0, dtype=np.int64), kind="logits")
    np.save(path, np.zeros((0, N, C), dtype=np.float32))
    with raises(EmptyInputError):
        fastcarto.compute(path, labels(), kind="logits")


# --------------------------------------------------------------------------------------------
# absurd sizes: an error, never a panic or an abort


def test_accumulator_with_impossible_size_does_not_panic() -> None:
    with raises((ValueError, MemoryError, OverflowError)):
        Accumulator(10**18, 3, kind="logits")


def test_accumulator_with_impossible_multilabel_size_does_not_panic() -> None:
    with raises((ValueError, MemoryError, OverflowError)):
        Accumulator(2**40, 2**24, kind="logits", multilabel=True)


def test_accumulator_too_large_for_memory_does_not_abort() -> None:
    # 10**13 examples x 88 bytes: allocation fails; that must be a Python exception, not abort()
    code = textwrap.dedent(
        """
        import fastcarto
        try:
            fastcarto.Accumulator(10**13, 3, kind="logits")
        except (MemoryError, ValueError) as exc:
            print("raised", type(exc).__name__)
        """
    )
    env = {**os.environ, "RUST_BACKTRACE": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, (
        f"the interpreter died (rc={proc.returncode}): {proc.stderr[-500:]}"
    )
    assert "raised" in proc.stdout


# --------------------------------------------------------------------------------------------
# random garbage never panics


def _filled(shape: tuple[int, ...], dtype: Any, fill: float) -> np.ndarray[Any, Any]:
    # NaN, inf or 1e30 cast to an integer type is garbage on purpose, not a warning to fail on.
    with np.errstate(invalid="ignore", over="ignore"):
        return np.full(shape, fill, dtype=dtype)


_garbage = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.floats(), max_size=4),
    st.lists(st.lists(st.floats(allow_nan=True), max_size=3), max_size=3),
    st.builds(
        _filled,
        st.lists(st.integers(0, 3), min_size=0, max_size=4).map(tuple),
        st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.float16]),
        st.sampled_from([0.0, 0.5, 1.0, -1.0, np.nan, np.inf, 1e30]),
    ),
)


@FEWER_EXAMPLES
@given(
    source=_garbage,
    lab=st.one_of(_garbage, st.lists(st.integers(-3, 5), min_size=0, max_size=4)),
    kind=st.sampled_from(["logits", "probs"]),
    nan_policy=st.sampled_from(["raise", "omit"]),
)
def test_garbage_to_compute_raises_cleanly(
    source: Any, lab: Any, kind: str, nan_policy: str
) -> None:
    try:
        fastcarto.compute(source, lab, kind=kind, nan_policy=nan_policy)
    except BaseException as exc:
        assert not is_panic(exc), repr(exc)
        assert isinstance(exc, (ValueError, TypeError, OSError)), repr(exc)


@FEWER_EXAMPLES
@given(
    outputs=_garbage,
    lab=st.one_of(_garbage, st.lists(st.integers(-3, 5), min_size=0, max_size=4)),
    index=st.one_of(st.none(), st.lists(st.integers(-2, 6), max_size=4), _garbage),
    epoch=st.one_of(st.none(), st.integers(-2, 2**33), st.floats()),
    n_classes=st.integers(1, 3),
)
def test_garbage_to_update_raises_cleanly_and_changes_nothing(
    outputs: Any, lab: Any, index: Any, epoch: Any, n_classes: int
) -> None:
    acc = Accumulator(3, n_classes, kind="logits")
    acc.update(np.zeros((3, n_classes)), np.zeros(3, dtype=np.int64))
    before = acc.to_arrow()
    try:
        acc.update(outputs, lab, epoch=epoch, ids=index)
    except BaseException as exc:
        assert not is_panic(exc), repr(exc)
        assert isinstance(exc, (ValueError, TypeError)), repr(exc)
        assert acc.to_arrow().equals(before)
