"""A vectorized numpy implementation of fastcarto's default metrics: the baseline that
benchmarks divide by. It is what a competent user would write by hand — one pass per epoch,
vectorized over examples and classes, float64 accumulators — not a strawman."""

from __future__ import annotations

import numpy as np


def row_terms(outputs: np.ndarray, labels: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """Each row's per-epoch terms: p(gold), whether it is predicted right, the margin, EL2N, the
    loss and the entropy (rows of one epoch, or of one minibatch)."""
    rows = np.arange(len(labels))
    if kind == "logits":
        z = outputs - outputs.max(axis=1, keepdims=True)
        ez = np.exp(z)
        p = ez / ez.sum(axis=1, keepdims=True)
    else:
        p = outputs
    g = p[rows, labels]
    other = outputs.copy()
    other[rows, labels] = -np.inf
    d = p.copy()
    d[rows, labels] -= 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return {
        "g": g,
        "correct": outputs.argmax(axis=1) == labels,
        "margin": outputs[rows, labels] - other.max(axis=1),
        "el2n": np.sqrt((d * d).sum(axis=1)),
        "loss": -np.log(np.maximum(g, np.finfo(p.dtype).eps)),
        "entropy": entropy,
    }


class RunningSums:
    """The per-example sums a training loop would keep by hand, updated one minibatch at a time
    (``index``: the minibatch's examples, each once; ``None``: every example, in order)."""

    def __init__(self, n: int) -> None:
        self.sums = {k: np.zeros(n) for k in ("g", "g2", "margin", "el2n", "loss", "entropy")}
        self.n_correct = np.zeros(n, dtype=np.int64)
        self.forgetting = np.zeros(n, dtype=np.int64)
        self.prev = np.zeros(n, dtype=bool)

    def update(
        self, outputs: np.ndarray, labels: np.ndarray, index: np.ndarray | None, kind: str
    ) -> None:
        t = row_terms(outputs, labels, kind)
        for key in ("g", "margin", "el2n", "loss", "entropy"):
            _add(self.sums[key], index, t[key])
        _add(self.sums["g2"], index, t["g"] * t["g"])
        _add(self.n_correct, index, t["correct"])
        prev = self.prev if index is None else self.prev[index]
        _add(self.forgetting, index, prev & ~t["correct"])
        if index is None:
            self.prev = t["correct"]
        else:
            self.prev[index] = t["correct"]


def _add(total: np.ndarray, index: np.ndarray | None, values: np.ndarray) -> None:
    """``total[index] += values``; in place over the whole array when ``index`` is None (an
    ``a[:] += b`` would copy ``a`` back into itself)."""
    if index is None:
        total += values
    else:
        total[index] += values


def numpy_metrics(outputs: np.ndarray, labels: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    n_epochs, n, _ = outputs.shape
    sums = RunningSums(n)
    for e in range(n_epochs):
        sums.update(outputs[e], labels, None, kind)
    s = sums.sums
    mean = s["g"] / n_epochs
    return {
        "confidence": mean,
        "variability": np.sqrt(np.maximum(s["g2"] / n_epochs - mean * mean, 0.0)),
        "correctness": sums.n_correct / n_epochs,
        "forgetting": sums.forgetting,
        "aum": s["margin"] / n_epochs,
        "el2n": s["el2n"] / n_epochs,
        "loss": s["loss"] / n_epochs,
        "entropy": s["entropy"] / n_epochs,
    }
