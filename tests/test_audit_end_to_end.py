"""The whole audit against cleanlab's Datalab: every default issue type on the same features,
pred_probs (and so the same kNN graph), flags agreeing and scores within float32 noise; and
the issue's bad inputs (one class, k >= N, constant features, duplicated rows only), where each
type either agrees with cleanlab or, where cleanlab's own check fails, raises a clear error."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import warnings
from typing import Any

import numpy as np
import pytest
from fastcarto import Datalab
from fastcarto._audit import ISSUE_TYPES

# cleanlab with numpy's sorts made stable, where its label rule breaks ties by an unstable
# argsort (docs/audit.md: "Ties"); fastcarto is cleanlab with that choice made stable.
from test_audit_label import stable_cleanlab  # noqa: F401


def _missing_types() -> list[str]:
    missing = []
    for name in ISSUE_TYPES:
        try:
            importlib.import_module(f"fastcarto._audit.{name}")
        except ModuleNotFoundError:
            missing.append(name)
    return missing


pytestmark = pytest.mark.skipif(
    bool(_missing_types()), reason=f"issue types not installed: {_missing_types()}"
)

#: Types whose score comes from a random step (non_iid's permutation test): flags only.
RANDOM_SCORES = {"non_iid"}


def mixture(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian mixture with flipped labels, near-duplicates and far rows, and nearest-centroid
    pred_probs fitted on the other half."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(k, d))
    truth = rng.integers(0, k, n)
    x = centres[truth] + rng.normal(size=(n, d))
    dup = rng.choice(n, size=n // 25, replace=False)
    x[dup] = x[rng.choice(n, size=dup.size)] + rng.normal(scale=1e-4, size=(dup.size, d))
    far = rng.choice(n, size=n // 50, replace=False)
    x[far] += rng.normal(scale=15.0, size=(far.size, d))
    labels = truth.copy()
    flip = rng.choice(n, size=n // 10, replace=False)
    labels[flip] = (labels[flip] + rng.integers(1, k, flip.size)) % k
    probs = np.empty((n, k))
    fold = rng.random(n) < 0.5
    for part in (fold, ~fold):
        mu = np.stack([x[~part & (labels == c)].mean(axis=0) for c in range(k)])
        z = -((x[part, None, :] - mu[None]) ** 2).sum(axis=2) / (2.0 * d)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        probs[part] = p / p.sum(axis=1, keepdims=True)
    return x, labels, probs


def cleanlab_run(labels: np.ndarray, **find: Any) -> tuple[Any, set[str]]:
    """cleanlab's Datalab after find_issues, and the types it failed on (it prints those)."""
    from cleanlab import Datalab as CleanlabDatalab

    out = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out):
        warnings.simplefilter("ignore")
        lab = CleanlabDatalab(data={"label": labels}, label_name="label", verbosity=1)
        lab.find_issues(**find)
    failed = set(re.findall(r"^Error in (\w+):", out.getvalue(), flags=re.M))
    return lab, failed


def assert_agree(ours: Datalab, theirs: Any, name: str) -> None:
    a, b = ours.get_issues(name), theirs.get_issues(name)
    flag, score = f"is_{name}_issue", f"{name}_score"
    np.testing.assert_array_equal(a[flag].to_numpy(), b[flag].to_numpy(), err_msg=name)
    sa = ours.get_issue_summary(name)
    sb = theirs.get_issue_summary(name)
    assert int(sa["num_issues"].iloc[0]) == int(sb["num_issues"].iloc[0]), name
    if name in RANDOM_SCORES:
        return
    np.testing.assert_allclose(
        a[score].to_numpy(), b[score].to_numpy(), rtol=1e-5, atol=1e-6, err_msg=name
    )
    np.testing.assert_allclose(
        sa["score"].to_numpy(), sb["score"].to_numpy(), rtol=1e-5, atol=1e-6, err_msg=name
    )


@pytest.mark.parametrize(
    ("n", "d", "k", "seed"),
    [(300, 8, 3, 0), (400, 5, 4, 1), (350, 2, 3, 2), (500, 16, 6, 3)],
)
def test_every_default_type_agrees_with_cleanlab(n: int, d: int, k: int, seed: int) -> None:
    x, labels, probs = mixture(n, d, k, seed)
    theirs, failed = cleanlab_run(labels, features=x, pred_probs=probs)
    assert not failed
    ours = Datalab({"label": labels}, label_name="label", verbosity=0)
    ours.find_issues(features=x, pred_probs=probs)
    assert ours.get_issue_summary()["issue_type"].tolist() == (
        theirs.get_issue_summary()["issue_type"].tolist()
    )
    for name in ours.get_issue_summary()["issue_type"]:
        assert_agree(ours, theirs, name)


def test_a_given_knn_graph_gives_cleanlab_s_flags() -> None:
    from sklearn.neighbors import NearestNeighbors

    x, labels, probs = mixture(300, 6, 3, 7)
    graph = (
        NearestNeighbors(n_neighbors=10, metric="cosine").fit(x).kneighbors_graph(mode="distance")
    )
    theirs, failed = cleanlab_run(labels, features=x, pred_probs=probs, knn_graph=graph)
    assert not failed
    ours = Datalab({"label": labels}, label_name="label", verbosity=0)
    ours.find_issues(features=x, pred_probs=probs, knn_graph=graph)
    for name in theirs.get_issue_summary()["issue_type"]:
        assert_agree(ours, theirs, name)


def bad_inputs() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    n = 120
    x, labels, probs = mixture(n, 4, 3, 5)
    one_row = rng.normal(size=(1, 4))
    return {
        "single class": (x, np.zeros(n, dtype=int), np.ones((n, 1))),
        "constant features": (np.ones((n, 4)), labels, probs),
        "duplicated rows only": (np.repeat(one_row, n, axis=0), labels, probs),
        "NaN in features": (np.where(rng.random((n, 4)) < 0.05, np.nan, x), labels, probs),
    }


@pytest.mark.parametrize("case", list(bad_inputs()))
def test_bad_inputs_agree_with_cleanlab_or_raise_clearly(case: str) -> None:
    x, labels, probs = bad_inputs()[case]
    theirs, failed = cleanlab_run(labels, features=x, pred_probs=probs)
    checked = (
        set(theirs.get_issue_summary()["issue_type"]) if not theirs.issue_summary.empty else set()
    )
    for name in ISSUE_TYPES:
        if name not in checked and name not in failed:
            continue  # cleanlab does not run it on these inputs
        ours = Datalab({"label": labels}, label_name="label", verbosity=0)
        if name in failed:
            # cleanlab's check fails: ours gives a clear error or a result, never a crash.
            try:
                ours.find_issues(features=x, pred_probs=probs, issue_types={name: {}})
            except (ValueError, TypeError) as exc:
                assert str(exc), name
            continue
        ours.find_issues(features=x, pred_probs=probs, issue_types={name: {}})
        assert_agree(ours, theirs, name)


def test_k_at_least_n_is_a_clear_error() -> None:
    x, labels, _ = mixture(40, 3, 2, 1)
    lab = Datalab({"label": labels}, label_name="label", verbosity=0)
    for name in ("outlier", "near_duplicate", "non_iid"):
        with pytest.raises(ValueError, match=r"\bk\b"):
            lab.find_issues(features=x, issue_types={name: {"k": 40}})
