"""Plainly written numpy reference of every fastcarto metric, for differential tests.

Nothing here is fast or clever on purpose: each (epoch, example) observation is computed with
float64 numpy formulas straight from the definitions, and each example's observations are then
summarized by an explicit loop over its observed epochs. The engine is compared against this.

Conventions
-----------
* Inputs are upcast to float64 before any arithmetic, so a float32 input is compared against a
  float64 reference of the *same* float32 values. Argmax (the prediction) is taken on the raw
  input values in their own dtype, first maximum wins, as ``np.argmax`` does.
* One output column (``C == 1``) is the binary two-column equivalent, built in the input's dtype:
  ``[0, z]`` for logits (softmax of it is the sigmoid) and ``[1 - p, p]`` for probabilities.
* Multi-label targets ``(N, C)``: each (example, class) pair is an independent one-column binary
  problem on ``outputs[:, n, c]``; rows are example-major (``n * C + c``). Under
  ``nan_policy="omit"`` the unit that is skipped is that pair's single value at one epoch.
* Missing values (an integer column that is null: ``first_learned`` of a never-learned example,
  ``stable_from`` when wrong at the last epoch, ``final_pred`` with nothing observed) are
  ``np.nan`` in a float64 array -- the same thing ``DataMap.__getitem__`` returns for a column
  with nulls. Integer columns without nulls are float64 too; compare them as float64.
* An example with no observation at all (every selected epoch omitted): float metrics are NaN,
  counts are 0, ``never_learned`` is False (there is no evidence it was not learned),
  ``label`` is still the given label, ``n_epochs`` is 0. Under ``compat="cartography"`` its
  ``forgetfulness`` is 1000, as allenai/cartography's ``if not any(correctness_trend): return
  1000`` gives for an empty trend.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_COLUMNS = (
    "id",
    "label",
    "confidence",
    "variability",
    "correctness",
    "forgetting",
    "never_learned",
    "first_learned",
    "stable_from",
    "aum",
    "threshold_closeness",
    "el2n",
    "loss",
    "entropy",
    "final_pred",
    "n_epochs",
)

COMPAT_COLUMNS = {
    "cartography": (
        "guid",
        "index",
        "threshold_closeness",
        "confidence",
        "variability",
        "correctness",
        "forgetfulness",
    ),
    "aum": ("sample_id", "aum"),
    "dataiq": ("id", "confidence", "aleatoric", "variability", "correctness"),
    "toneva": ("id", "forgetting", "never_learned"),
}

# Columns compared exactly (as float64 with NaN for null); the others are floats compared with a
# tolerance, except never_learned which is boolean.
EXACT_COLUMNS = frozenset(
    {
        "id",
        "guid",
        "sample_id",
        "index",
        "class",
        "label",
        "forgetting",
        "forgetfulness",
        "first_learned",
        "stable_from",
        "final_pred",
        "n_epochs",
    }
)
BOOL_COLUMNS = frozenset({"never_learned"})

CARTOGRAPHY_NEVER_LEARNED = 1000


# ---------------------------------------------------------------------------------------------
# Epoch selection
# ---------------------------------------------------------------------------------------------


def select_epochs(epochs: Any, n_epochs: int) -> list[int]:
    """Positions selected by ``epochs``: None (all), int k (first k), a slice, or a list."""
    if epochs is None:
        return list(range(n_epochs))
    if isinstance(epochs, (int, np.integer)):
        return list(range(int(epochs)))
    if isinstance(epochs, slice):
        return list(range(n_epochs))[epochs]
    return [int(e) % n_epochs for e in epochs]


# ---------------------------------------------------------------------------------------------
# One epoch: the observation of every row
# ---------------------------------------------------------------------------------------------


def as_two_columns(rows: np.ndarray, kind: str) -> np.ndarray:
    """One-column binary outputs as their two-column equivalent, in the input's own dtype."""
    if rows.shape[-1] != 1:
        return rows
    x = rows[..., 0]
    if kind == "logits":
        first = np.zeros_like(x)
    else:
        first = (1 - x).astype(rows.dtype)
    return np.stack([first, x], axis=-1)


def observe_rows(rows: np.ndarray, labels: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """Per-row observation of one epoch.

    ``rows`` is ``(R, C)`` with C >= 2 in the input dtype, every value finite; ``labels`` ``(R,)``.
    Returns float64 ``gold_prob``, ``margin``, ``el2n``, ``loss``, ``entropy`` and int ``pred``.
    """
    n_rows, n_classes = rows.shape
    r = np.arange(n_rows)
    labels = np.asarray(labels, dtype=np.int64)
    pred = np.argmax(rows, axis=1)  # on the raw values; the first maximum wins
    x = rows.astype(np.float64)
    gold = np.zeros((n_rows, n_classes), dtype=bool)
    gold[r, labels] = True
    other = ~gold

    # Margin on the scores: logits for kind="logits", probabilities for kind="probs".
    margin = x[r, labels] - np.where(other, x, -np.inf).max(axis=1)

    if kind == "logits":
        # Softmax with the maximum subtracted. The (first) argmax term is exp(0) == 1 exactly;
        # the sum of the other terms, `rest`, gives ln S = log1p(rest) without cancellation.
        d = x - x.max(axis=1, keepdims=True)
        with np.errstate(under="ignore"):
            e = np.exp(d)
        not_top = np.ones((n_rows, n_classes), dtype=bool)
        not_top[r, pred] = False
        rest = np.where(not_top, e, 0.0).sum(axis=1)
        s = 1.0 + rest
        ln_s = np.log1p(rest)
        with np.errstate(under="ignore"):
            p = e / s[:, None]
        gold_prob = p[r, labels]
        # 1 - p(gold) as the sum of the other probabilities (no cancellation when p(gold) ~ 1).
        one_minus_g = np.where(other, p, 0.0).sum(axis=1)
        loss = ln_s - d[r, labels]  # -ln p(gold) = ln S - (z_gold - max)
        log_p = d - ln_s[:, None]
        with np.errstate(under="ignore"):
            entropy = -(p * log_p).sum(axis=1)  # p == 0 gives 0 * finite == 0
    elif kind == "probs":
        p = x
        gold_prob = p[r, labels]
        one_minus_g = 1.0 - gold_prob
        eps = np.finfo(rows.dtype).eps  # sklearn log_loss's clip
        loss = -np.log(np.maximum(gold_prob, eps))
        positive = p > 0
        with np.errstate(under="ignore"):
            plogp = np.where(positive, p * np.log(np.where(positive, p, 1.0)), 0.0)  # 0 ln 0 = 0
        entropy = -plogp.sum(axis=1)
    else:
        raise ValueError(kind)

    with np.errstate(under="ignore"):
        el2n = np.sqrt(one_minus_g**2 + np.where(other, p**2, 0.0).sum(axis=1))
    return {
        "gold_prob": gold_prob,
        "margin": margin,
        "el2n": el2n,
        "loss": loss,
        "entropy": entropy,
        "pred": pred.astype(np.int64),
    }


# ---------------------------------------------------------------------------------------------
# All epochs: each row's (slot's) list of observations
# ---------------------------------------------------------------------------------------------


@dataclass
class Slot:
    """Everything observed about one row of the output table, in epoch order."""

    label: int
    epochs: list[int] = field(default_factory=list)
    gold_prob: list[float] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)
    el2n: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    pred: list[int] = field(default_factory=list)

    @property
    def correct(self) -> list[bool]:
        return [p == self.label for p in self.pred]


def _problem(outputs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(E, rows, C')`` outputs and ``(rows,)`` labels of the table's rows."""
    outputs = np.asarray(outputs)
    labels = np.asarray(labels)
    if outputs.dtype not in (np.float32, np.float64) or outputs.ndim != 3:
        raise ValueError(
            f"outputs must be a 3-d float32/float64 array, got {outputs.dtype} {outputs.shape}"
        )
    n_epochs, n_examples, n_classes = outputs.shape
    if labels.ndim == 2:
        if labels.shape != (n_examples, n_classes):
            raise ValueError("multi-label targets must have shape (examples, classes)")
        # outputs[:, n, c] is row n * C + c: example-major.
        return (
            outputs.reshape(n_epochs, n_examples * n_classes, 1),
            labels.reshape(-1).astype(np.int64),
            True,
        )
    return outputs, labels.astype(np.int64), False


def collect(
    outputs: np.ndarray,
    labels: np.ndarray,
    kind: str,
    epochs: Any = None,
    nan_policy: str = "raise",
) -> tuple[list[Slot], bool, int]:
    """The observations of every row; also whether the task is multi-label and C."""
    rows_all, flat_labels, multilabel = _problem(outputs, labels)
    n_classes = np.asarray(outputs).shape[2]
    slots = [Slot(label=int(y)) for y in flat_labels]
    for e in select_epochs(epochs, rows_all.shape[0]):
        raw = rows_all[e]
        finite = np.isfinite(raw).all(axis=1)
        if not finite.all():
            if nan_policy == "raise":
                raise ValueError(f"non-finite output at epoch {e}")
            if nan_policy != "omit":
                raise ValueError(nan_policy)
        # Non-finite rows are replaced by a harmless finite row and then ignored.
        safe = np.where(finite[:, None], raw, np.zeros((), raw.dtype)).astype(raw.dtype)
        if kind == "probs" and safe.shape[1] == 1:
            safe = np.where(finite[:, None], safe, np.full((), 0.5, raw.dtype)).astype(raw.dtype)
        obs = observe_rows(as_two_columns(safe, kind), flat_labels, kind)
        for i, slot in enumerate(slots):
            if not finite[i]:
                continue
            slot.epochs.append(e)
            for key in ("gold_prob", "margin", "el2n", "loss", "entropy"):
                getattr(slot, key).append(float(obs[key][i]))
            slot.pred.append(int(obs["pred"][i]))
    return slots, multilabel, n_classes


# ---------------------------------------------------------------------------------------------
# One slot: the metrics
# ---------------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else np.nan


def _std(values: list[float], ddof: int) -> float:
    if len(values) - ddof <= 0:
        return np.nan
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=ddof))


def forgetting_events(correct: list[bool]) -> int:
    """Correct at the previous observed epoch and wrong at this one."""
    count = 0
    for previous, current in itertools.pairwise(correct):
        if previous and not current:
            count += 1
    return count


def first_learned(slot: Slot) -> float:
    for epoch, ok in zip(slot.epochs, slot.correct, strict=True):
        if ok:
            return float(epoch)
    return np.nan


def stable_from(slot: Slot) -> float:
    """First epoch from which every later observed epoch is correct (NaN if wrong at the end)."""
    result = np.nan
    for epoch, ok in zip(reversed(slot.epochs), reversed(slot.correct), strict=True):
        if not ok:
            break
        result = float(epoch)
    return result


def slot_metrics(slot: Slot, ddof: int = 0) -> dict[str, float]:
    """fastcarto's default metrics of one row (everything but the id)."""
    n = len(slot.epochs)
    correct = slot.correct
    confidence = _mean(slot.gold_prob)
    n_correct = sum(correct)
    return {
        "label": float(slot.label),
        "confidence": confidence,
        "variability": _std(slot.gold_prob, ddof),
        "correctness": n_correct / n if n else np.nan,
        "forgetting": float(forgetting_events(correct)),
        "never_learned": n > 0 and n_correct == 0,
        "first_learned": first_learned(slot),
        "stable_from": stable_from(slot),
        "aum": _mean(slot.margin),
        "threshold_closeness": confidence * (1 - confidence),
        "el2n": _mean(slot.el2n),
        "loss": _mean(slot.loss),
        "entropy": _mean(slot.entropy),
        "final_pred": float(slot.pred[-1]) if n else np.nan,
        "n_epochs": float(n),
    }


def slot_compat(slot: Slot, compat: str, ddof: int = 0) -> dict[str, float]:
    """The metric columns of one row under a published convention (no id columns)."""
    n = len(slot.epochs)
    g = slot.gold_prob
    correct = slot.correct
    n_correct = sum(correct)
    confidence = _mean(g)
    if compat == "cartography":
        return {
            "threshold_closeness": confidence * (1 - confidence),
            "confidence": confidence,
            "variability": _std(g, ddof),
            "correctness": float(n_correct),
            "forgetfulness": float(
                CARTOGRAPHY_NEVER_LEARNED if n_correct == 0 else forgetting_events(correct)
            ),
        }
    if compat == "aum":
        return {"aum": _mean(slot.margin)}
    if compat == "dataiq":
        return {
            "confidence": confidence,
            "aleatoric": _mean([gi * (1 - gi) for gi in g]),
            "variability": _std(g, ddof),
            "correctness": sum(gi > 0.5 for gi in g) / n if n else np.nan,
        }
    if compat == "toneva":
        never = n > 0 and n_correct == 0
        return {
            "forgetting": float(n if never else forgetting_events(correct)),
            "never_learned": never,
        }
    raise ValueError(compat)


# ---------------------------------------------------------------------------------------------
# Whole tables
# ---------------------------------------------------------------------------------------------


def _table(
    slots: list[Slot], multilabel: bool, n_classes: int, id_name: str, rows: list[dict[str, Any]]
) -> dict[str, np.ndarray]:
    n_rows = len(slots)
    per = n_classes if multilabel else 1
    out: dict[str, np.ndarray] = {id_name: np.arange(n_rows, dtype=np.float64) // per}
    if multilabel:
        out["class"] = np.arange(n_rows, dtype=np.float64) % per
    for key in rows[0] if rows else ():
        values = [row[key] for row in rows]
        if key in BOOL_COLUMNS:
            out[key] = np.array(values, dtype=bool)
        else:
            out[key] = np.array(values, dtype=np.float64)
    return out


def reference_metrics(
    outputs: np.ndarray,
    labels: np.ndarray,
    kind: str,
    epochs: Any = None,
    nan_policy: str = "raise",
    ddof: int = 0,
) -> dict[str, np.ndarray]:
    """fastcarto's default table, column name -> array, in column order.

    ``labels`` is ``(N,)`` (multi-class, C == 1 binary) or ``(N, C)`` 0/1 targets (multi-label,
    which adds a ``class`` column after ``id``).
    """
    slots, multilabel, n_classes = collect(outputs, labels, kind, epochs, nan_policy)
    return _table(slots, multilabel, n_classes, "id", [slot_metrics(s, ddof) for s in slots])


def reference_compat(
    outputs: np.ndarray,
    labels: np.ndarray,
    kind: str,
    compat: str,
    epochs: Any = None,
    nan_policy: str = "raise",
    ddof: int = 0,
) -> dict[str, np.ndarray]:
    """The table under ``compat`` ("cartography", "aum", "dataiq", "toneva"), in column order."""
    slots, multilabel, n_classes = collect(outputs, labels, kind, epochs, nan_policy)
    id_name = COMPAT_COLUMNS[compat][0]
    rows = [slot_compat(s, compat, ddof) for s in slots]
    if compat == "cartography":
        # `index` is the row position in the table.
        for position, row in enumerate(rows):
            rows[position] = {"index": float(position), **row}
    return _table(slots, multilabel, n_classes, id_name, rows)


def reference_table(
    outputs: np.ndarray,
    labels: np.ndarray,
    kind: str,
    compat: str | None = None,
    epochs: Any = None,
    nan_policy: str = "raise",
    ddof: int = 0,
) -> dict[str, np.ndarray]:
    """``reference_metrics`` or ``reference_compat``, as ``fastcarto.compute`` dispatches."""
    if compat is None:
        return reference_metrics(outputs, labels, kind, epochs, nan_policy, ddof)
    return reference_compat(outputs, labels, kind, compat, epochs, nan_policy, ddof)


def dataiq_correctness_bounds(
    outputs: np.ndarray,
    labels: np.ndarray,
    kind: str,
    tol: float,
    epochs: Any = None,
    nan_policy: str = "raise",
) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest Data-IQ correctness (fraction of epochs with p(gold) > 0.5) when every
    p(gold) within ``tol`` of 0.5 may land on either side of the threshold.

    The comparison is on a computed probability, so an engine that evaluates p(gold) with a
    float32 ``exp`` (float32 input) may legitimately see ``0.5`` where the float64 reference sees
    ``0.5 + 3e-9``; outside that band the counts must agree exactly.
    """
    slots, _, _ = collect(outputs, labels, kind, epochs, nan_policy)
    lo, hi = [], []
    for s in slots:
        n = len(s.epochs)
        if n == 0:
            lo.append(np.nan)
            hi.append(np.nan)
            continue
        lo.append(sum(g > 0.5 + tol for g in s.gold_prob) / n)
        hi.append(sum(g > 0.5 - tol for g in s.gold_prob) / n)
    return np.array(lo), np.array(hi)


# ---------------------------------------------------------------------------------------------
# Comparing an engine table with a reference table
# ---------------------------------------------------------------------------------------------


def tolerances(dtype: Any) -> tuple[float, float]:
    """(rtol, atol) of the precision contract for inputs of ``dtype``.

    float64: agrees with the float64 reference to ~1e-10 relative. float32: the engine uses a
    float32 exp/log per row and accumulates in float64; the reference uses float64 throughout on
    the same float32 values.
    """
    if np.dtype(dtype) == np.float64:
        return 1e-9, 1e-12
    if np.dtype(dtype) == np.float32:
        return 2e-5, 2e-6
    raise ValueError(dtype)


def assert_matches(
    datamap: Any,
    expected: dict[str, np.ndarray],
    dtype: Any,
    *,
    compat: str | None = None,
    skip: tuple[str, ...] = (),
    rtol: float | None = None,
    atol: float | None = None,
    context: str = "",
) -> None:
    """Asserts a ``DataMap`` has exactly ``expected``'s columns, in order, and equal values:
    integer and boolean columns exactly, float columns within the dtype's tolerances (NaN
    where the reference has NaN). ``compat`` names the preset ``expected`` follows (its
    ``correctness`` is an integer count under "cartography")."""
    exact = EXACT_COLUMNS | ({"correctness"} if compat == "cartography" else set())
    default_rtol, default_atol = tolerances(dtype)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    assert datamap.columns == list(expected), (
        f"{context}columns {datamap.columns} != {list(expected)}"
    )
    assert len(datamap) == len(next(iter(expected.values()))), context
    for name, want in expected.items():
        if name in skip:
            continue
        got = np.asarray(datamap[name])
        msg = f"{context}column {name!r}"
        if name in BOOL_COLUMNS:
            assert got.dtype == np.bool_, msg
            np.testing.assert_array_equal(got, want, err_msg=msg)
        elif name in exact:
            # Integer columns are int64; DataMap gives float with NaN for one that has nulls.
            assert got.dtype.kind in ("f" if np.isnan(want).any() else "iu"), msg
            np.testing.assert_array_equal(got.astype(np.float64), want, err_msg=msg)
        else:
            assert got.dtype == np.float64, msg
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=msg)


def softmax(logits: np.ndarray) -> np.ndarray:
    """float64 softmax over the last axis (max subtracted)."""
    x = np.asarray(logits, dtype=np.float64)
    d = x - x.max(axis=-1, keepdims=True)
    with np.errstate(under="ignore"):
        e = np.exp(d)
        return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """float64 logistic function, without overflow."""
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(under="ignore"):
        ez = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0 / (1.0 + ez), ez / (1.0 + ez))
