"""Label issues from training dynamics: the default AUM rule, threshold samples (Pleiss et al.,
2020), the per-class summary and the report, plus a quality regression check on real data
(scikit-learn's digits with 20% of the labels flipped, floors measured from
``benches/eval_label_noise.py`` runs)."""

from __future__ import annotations

import fastcarto
import numpy as np
import pandas as pd
import pytest
from fastcarto import RegionRule

E, N, C = 5, 240, 3


@pytest.fixture(scope="module")
def run() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    labels = rng.integers(0, C, size=N)
    logits = rng.normal(size=(E, N, C))
    logits[:, np.arange(N), labels] += rng.normal(0.8, 2.0, size=N)
    return logits, labels


@pytest.fixture(scope="module")
def dm(run: tuple[np.ndarray, np.ndarray]) -> fastcarto.DataMap:
    return fastcarto.compute(run[0], run[1], kind="logits")


def test_columns_aligned_with_the_map(dm: fastcarto.DataMap) -> None:
    issues = dm.label_issues()
    assert list(issues.columns) == [
        "id",
        "is_label_issue",
        "label_score",
        "given_label",
        "predicted_label",
        "suggested_label",
    ]
    assert len(issues) == len(dm) and issues["id"].tolist() == dm["id"].tolist()
    assert issues["is_label_issue"].dtype == bool
    assert issues["given_label"].tolist() == dm["label"].astype(int).tolist()
    assert issues["predicted_label"].tolist() == dm["final_pred"].astype(int).tolist()


def test_default_rule_is_negative_aum(dm: fastcarto.DataMap) -> None:
    issues = dm.label_issues()
    aum = dm["aum"]
    assert (issues["is_label_issue"].to_numpy() == (aum < 0)).all()
    score = issues["label_score"].to_numpy()
    assert ((score >= 0) & (score <= 1)).all()
    np.testing.assert_allclose(score, 1 / (1 + np.exp(-aum)), rtol=1e-12)
    # flags are exactly the scores below 0.5, and the score ranks like the AUM
    assert (issues["is_label_issue"].to_numpy() == (score < 0.5)).all()
    order = np.argsort(aum)
    assert (np.diff(score[order]) >= 0).all()


def test_probability_scores_are_cleanlabs_normalized_margin(
    run: tuple[np.ndarray, np.ndarray],
) -> None:
    logits, labels = run
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    dm = fastcarto.compute(probs, labels, kind="probs", epochs=[-1])
    score = dm.label_issues()["label_score"].to_numpy()
    p = probs[-1]
    gold = p[np.arange(N), labels]
    other = np.where(np.eye(C, dtype=bool)[labels], -np.inf, p).max(axis=1)
    np.testing.assert_allclose(score, (gold - other + 1) / 2, rtol=1e-12, atol=1e-15)


def test_suggested_label(dm: fastcarto.DataMap) -> None:
    issues = dm.label_issues()
    flagged = issues["is_label_issue"]
    assert (issues["suggested_label"][flagged] == issues["predicted_label"][flagged]).all()
    assert (issues["suggested_label"][~flagged] == issues["given_label"][~flagged]).all()


def test_unobserved_examples_are_not_flagged() -> None:
    acc = fastcarto.Accumulator(n_examples=3, n_classes=2, kind="logits")
    acc.update(np.array([[0.0, 2.0]]), [0], ids=[0], epoch=0)
    issues = acc.finalize().label_issues()
    assert issues["is_label_issue"].tolist() == [True, False, False]
    assert issues["label_score"].isna().tolist() == [False, True, True]


def test_multilabel_maps_get_a_class_column() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((10, 3)) < 0.5).astype(np.int8)
    dm = fastcarto.compute(rng.normal(size=(4, 10, 3)), targets, kind="logits")
    issues = dm.label_issues()
    assert list(issues.columns[:2]) == ["id", "class"] and len(issues) == 30
    assert (issues["is_label_issue"].to_numpy() == (dm["aum"] < 0)).all()


# --------------------------------------------------------------------------------------------
# threshold samples


def test_threshold_samples() -> None:
    labels = np.arange(1000) % 9
    targets, mask = fastcarto.threshold_samples(labels, 9, seed=1)
    assert mask.dtype == bool and mask.sum() == 1000 // 10
    assert (targets[mask] == 9).all() and (targets[~mask] == labels[~mask]).all()
    assert targets.dtype == np.int64
    again, mask2 = fastcarto.threshold_samples(labels, 9, seed=1)
    assert (again == targets).all() and (mask2 == mask).all()
    _, other = fastcarto.threshold_samples(labels, 9, seed=2, exclude=mask)
    assert not (other & mask).any() and other.sum() == 100


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (([0, 1, 2], 2), {}, ValueError),  # label out of range
        (([0.0, 1.0], 2), {}, TypeError),
        (([[0, 1]], 2), {}, ValueError),
        (([0, 1], 2), {}, ValueError),  # too few examples
        ((np.zeros(10, int), 1), {"exclude": np.ones(10, bool)}, ValueError),
        ((np.zeros(10, int), 1), {"exclude": np.ones(3, bool)}, ValueError),
        ((np.zeros(10, int), 0), {}, ValueError),
    ],
)
def test_threshold_samples_errors(args: tuple, kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        fastcarto.threshold_samples(*args, **kwargs)


@pytest.fixture(scope="module")
def threshold_run(
    run: tuple[np.ndarray, np.ndarray],
) -> tuple[fastcarto.DataMap, np.ndarray]:
    logits, labels = run
    targets, mask = fastcarto.threshold_samples(labels, C, seed=0)
    # an extra output column; threshold samples score low on their (fake) class
    extra = np.random.default_rng(1).normal(-1.0, 1.0, size=(E, N, 1))
    return fastcarto.compute(np.concatenate([logits, extra], axis=2), targets, kind="logits"), mask


def test_aum_threshold_is_the_99th_percentile(
    threshold_run: tuple[fastcarto.DataMap, np.ndarray],
) -> None:
    dm, mask = threshold_run
    aum = dm["aum"]
    assert dm.aum_threshold(mask) == pytest.approx(np.percentile(aum[mask], 99), rel=1e-12)
    assert dm.aum_threshold(mask, percentile=50) == pytest.approx(np.median(aum[mask]))
    assert dm.aum_threshold(np.flatnonzero(mask)) == dm.aum_threshold(mask)


def test_label_issues_with_threshold_samples(
    threshold_run: tuple[fastcarto.DataMap, np.ndarray],
) -> None:
    dm, mask = threshold_run
    thr = dm.aum_threshold(mask, percentile=90)
    issues = dm.label_issues(threshold_mask=mask, percentile=90)
    expected = (dm["aum"] < thr) & ~mask
    assert (issues["is_label_issue"].to_numpy() == expected).all()
    assert issues["label_score"][mask].isna().all()
    assert issues["label_score"][~mask].notna().all()
    assert issues["suggested_label"][mask].isna().all()


def test_threshold_mask_must_match_the_run(
    dm: fastcarto.DataMap, threshold_run: tuple[fastcarto.DataMap, np.ndarray]
) -> None:
    _, mask = threshold_run
    with pytest.raises(ValueError, match="extra class"):
        dm.label_issues(threshold_mask=mask)  # the map of a run without threshold samples
    with pytest.raises(ValueError, match="one entry per example"):
        dm.aum_threshold(mask[:-1])
    with pytest.raises(ValueError, match="selects no example"):
        dm.aum_threshold(np.zeros(N, bool))
    with pytest.raises(ValueError, match="percentile"):
        threshold_run[0].aum_threshold(mask, percentile=101)


# --------------------------------------------------------------------------------------------
# per-class summary and report


def test_class_summary(dm: fastcarto.DataMap) -> None:
    summary = dm.class_summary()
    assert list(summary.columns) == [
        "label",
        "examples",
        "label_issues",
        "label_noise",
        "easy-to-learn",
        "ambiguous",
        "hard-to-learn",
        "mean_confidence",
        "mean_label_score",
    ]
    df = dm.to_pandas().assign(
        region=dm.regions().astype(str), issue=dm.label_issues()["is_label_issue"]
    )
    for _, row in summary.iterrows():
        members = df[df["label"] == row["label"]]
        assert row["examples"] == len(members)
        assert row["label_issues"] == members["issue"].sum()
        assert row["label_noise"] == pytest.approx(members["issue"].mean())
        assert row["mean_confidence"] == pytest.approx(members["confidence"].mean())
        for region in fastcarto.REGIONS:
            assert row[region] == (members["region"] == region).sum()
    assert summary["examples"].sum() == len(dm)
    assert (np.diff(summary["label_noise"]) <= 0).all()  # worst class first
    rule = RegionRule(confidence=0.9)
    assert (
        dm.class_summary(rule=rule)["easy-to-learn"].sum()
        == (dm.regions(rule) == "easy-to-learn").sum()
    )


def test_class_summary_leaves_threshold_samples_out(
    threshold_run: tuple[fastcarto.DataMap, np.ndarray],
) -> None:
    dm, mask = threshold_run
    summary = dm.class_summary(threshold_mask=mask)
    assert sorted(summary["label"]) == list(range(C))
    assert summary["examples"].sum() == N - mask.sum()


def test_report(dm: fastcarto.DataMap) -> None:
    text = dm.report()
    lines = text.splitlines()
    assert lines[0] == repr(dm)
    counts = dm.regions().value_counts()
    assert lines[1].startswith("regions: easy-to-learn")
    for region in fastcarto.REGIONS:
        assert f"{region} {counts[region]:,}" in lines[1]
    assert "rule: ambiguous: variability >= " in text
    assert f"label issues: {int((dm['aum'] < 0).sum()):,} of {N:,} examples" in text
    assert "never learned:" in text and "classes with the most label issues" in text


def test_report_with_threshold_samples(
    threshold_run: tuple[fastcarto.DataMap, np.ndarray],
) -> None:
    dm, mask = threshold_run
    assert "99th percentile of the threshold samples" in dm.report(threshold_mask=mask)


# --------------------------------------------------------------------------------------------
# quality on real data


def test_digits_with_flipped_labels() -> None:
    """Regression check on quality: scikit-learn's digits, 20% of the labels flipped, an MLP
    trained 20 epochs. The benchmark measured precision 0.86-0.88 and recall 0.99 here."""
    from fastcarto._demo import noisy_digits, precision_recall, train_and_map

    x, noisy, true = noisy_digits(0.2, seed=0)
    dm = train_and_map(x, noisy, epochs=20, seed=0)
    issues = dm.label_issues()
    precision, recall = precision_recall(issues["is_label_issue"].to_numpy(), noisy != true)
    assert precision >= 0.8
    assert recall >= 0.95
    # the hard-to-learn region is mostly flipped labels
    hard = (dm.regions() == "hard-to-learn").to_numpy()
    assert (noisy != true)[hard].mean() >= 0.5
    assert isinstance(dm.class_summary(), pd.DataFrame)
