"""A vectorized numpy implementation of fastcarto's default metrics: the baseline that
benchmarks divide by. It is what a competent user would write by hand — one pass per epoch,
vectorized over examples and classes, float64 accumulators — not a strawman."""

from __future__ import annotations

import numpy as np


def numpy_metrics(outputs: np.ndarray, labels: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    n_epochs, n, _ = outputs.shape
    rows = np.arange(n)
    s1 = np.zeros(n)
    s2 = np.zeros(n)
    n_correct = np.zeros(n, dtype=np.int64)
    forgetting = np.zeros(n, dtype=np.int64)
    prev = np.zeros(n, dtype=bool)
    aum = np.zeros(n)
    el2n = np.zeros(n)
    loss = np.zeros(n)
    entropy = np.zeros(n)
    for e in range(n_epochs):
        z = outputs[e]
        if kind == "logits":
            z = z - z.max(axis=1, keepdims=True)
            ez = np.exp(z)
            p = ez / ez.sum(axis=1, keepdims=True)
            scores = outputs[e]
        else:
            p = z
            scores = z
        g = p[rows, labels]
        pred = scores.argmax(axis=1)
        correct = pred == labels
        s1 += g
        s2 += g * g
        n_correct += correct
        forgetting += prev & ~correct
        prev = correct
        other = scores.copy()
        other[rows, labels] = -np.inf
        aum += scores[rows, labels] - other.max(axis=1)
        d = p.copy()
        d[rows, labels] -= 1.0
        el2n += np.sqrt((d * d).sum(axis=1))
        loss -= np.log(np.maximum(g, np.finfo(p.dtype).eps))
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy -= np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    mean = s1 / n_epochs
    return {
        "confidence": mean,
        "variability": np.sqrt(np.maximum(s2 / n_epochs - mean * mean, 0.0)),
        "correctness": n_correct / n_epochs,
        "forgetting": forgetting,
        "aum": aum / n_epochs,
        "el2n": el2n / n_epochs,
        "loss": loss / n_epochs,
        "entropy": entropy / n_epochs,
    }
