"""fastcarto.datamodels against scikit-learn's Lasso and lasso_path, scipy and numpy."""

from __future__ import annotations

import fastcarto
import fastcarto.datamodels as fdm
import numpy as np
import pytest
from fastcarto.datamodels import DatamodelWarning
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import spearmanr
from sklearn.linear_model import Lasso, lasso_path
from sklearn.preprocessing import StandardScaler


def problem(m: int, n: int, k: int, seed: int, noise: float = 1.0):
    rng = np.random.default_rng(seed)
    masks = rng.random((m, n)) < 0.5
    w = rng.normal(size=(n, k)) * (rng.random((n, k)) < 0.3)
    outputs = masks @ w + rng.normal(0, noise, (m, k)) + rng.normal(size=k)
    return masks, outputs


def sklearn_raw(masks, y, alpha, **kw):
    """Raw weights and bias of sklearn's Lasso on StandardScaler-ed masks."""
    sc = StandardScaler().fit(masks.astype(np.float64))
    las = Lasso(alpha=alpha, tol=1e-12, max_iter=200_000, **kw).fit(sc.transform(masks), y)
    scale = np.where(sc.scale_ > 0, sc.scale_, 1.0)
    coef = np.where(sc.var_ > 0, las.coef_ / scale, 0.0)
    return coef, float(las.intercept_ - coef @ sc.mean_)


@given(
    m=st.integers(30, 300),
    n=st.integers(1, 40),
    seed=st.integers(0, 10_000),
    frac=st.floats(0.002, 0.8),
)
def test_matches_sklearn_lasso_at_the_same_lambda(m, n, seed, frac):
    masks, y = problem(m, n, 1, seed)
    sc = StandardScaler().fit(masks.astype(np.float64))
    xs = sc.transform(masks)
    lam = frac * max(np.abs(xs.T @ (y[:, 0] - y[:, 0].mean())).max() / m, 1e-3)
    with_warnings = m < n or (sc.var_ == 0).any()
    with pytest.warns(DatamodelWarning) if with_warnings else _no_warning():
        model = fdm.fit(masks, y, lam=lam, tol=1e-12, max_iter=100_000)
    coef, bias = sklearn_raw(masks, y[:, 0], lam)
    np.testing.assert_allclose(model.weights[:, 0], coef, atol=1e-6)
    assert abs(model.bias[0] - bias) < 1e-6
    assert model.converged[0] and -1e-12 <= model.gap[0] < 1e-9


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_validation_curve_and_refit_follow_the_sklearn_protocol():
    masks, y = problem(700, 25, 3, 1)
    tr, va = slice(0, 630), slice(630, 700)
    model = fdm.fit(
        masks, y, val_fraction=0.1, n_lambdas=20, patience=None, step=1, tol=1e-12, max_iter=100_000
    )
    for t in range(3):
        sc = StandardScaler().fit(masks[tr].astype(np.float64))
        xs, yt = sc.transform(masks[tr]), y[tr, t]
        lams = model.lambdas[t]
        assert np.isclose(lams[0], np.abs(xs.T @ (yt - yt.mean())).max() / 630)
        _, coefs, _ = lasso_path(xs, yt - yt.mean(), alphas=lams, tol=1e-12, max_iter=100_000)
        raw = coefs / sc.scale_[:, None]
        bias = yt.mean() - sc.mean_ @ raw
        pred = masks[va].astype(np.float64) @ raw + bias
        mse = ((pred - y[va, t][:, None]) ** 2).mean(0)
        np.testing.assert_allclose(model.val_mse[t], mse, rtol=1e-6)
        best = int(np.argmin(mse))
        assert model.lam[t] == lams[best]
        coef, b = sklearn_raw(masks, y[:, t], lams[best])
        np.testing.assert_allclose(model.weights[:, t], coef, atol=1e-6)
        assert abs(model.bias[t] - b) < 1e-6


def test_early_stop_leaves_the_rest_of_the_curve_empty():
    masks, y = problem(300, 30, 2, 2, noise=5.0)
    model = fdm.fit(masks, y, n_lambdas=100, patience=3, step=1)
    full = fdm.fit(masks, y, n_lambdas=100, patience=None, step=1)
    assert np.isnan(model.val_mse).any()
    for t in range(2):
        walked = ~np.isnan(model.val_mse[t])
        assert walked[0]
        if walked.all():  # the curve kept improving (or stopped improving only at its end)
            continue
        last = int(np.flatnonzero(walked)[-1])
        best = int(np.nanargmin(model.val_mse[t]))
        assert last - best == 3
        np.testing.assert_allclose(model.val_mse[t, walked], full.val_mse[t, walked], rtol=1e-6)


def test_statistics_are_plain_sums_and_add_across_shards(tmp_path):
    masks, y = problem(300, 19, 2, 3)
    a = fdm.statistics(masks, y)
    n, xtx, xty, sy, syy = a.parts()
    x = masks.astype(np.float64)
    assert n == 300
    np.testing.assert_array_equal(xtx, x.T @ x)
    np.testing.assert_allclose(xty, x.T @ y)
    np.testing.assert_allclose(sy, y.sum(0))
    np.testing.assert_allclose(syy, (y**2).sum(0))
    b = fdm.statistics(masks[:100], y[:100])
    b.merge(fdm.statistics(masks[100:], y[100:]))
    np.testing.assert_array_equal(b.parts()[1], xtx)
    for order in ("big", "little"):
        packed = np.packbits(masks, axis=1, bitorder=order)
        p = fdm.statistics(packed, y.astype(np.float16), n_train=19, bitorder=order)
        np.testing.assert_array_equal(p.parts()[1], xtx)
    np.save(tmp_path / "m.npy", masks)
    np.save(tmp_path / "y.npy", y.astype(np.float32))
    from_files = fdm.statistics(tmp_path / "m.npy", str(tmp_path / "y.npy"))
    np.testing.assert_array_equal(from_files.parts()[1], xtx)
    again = fdm.DatamodelStats.from_parts(*a.parts())
    assert again.n_rows == 300 and again.n_cols == 19 and again.n_targets == 2
    c = a.copy()
    c.merge(c)
    assert c.n_rows == 600 and a.n_rows == 300


def test_shards_fit_like_the_whole(tmp_path):
    masks, y = problem(900, 20, 2, 4)
    whole = fdm.fit(masks, y, val_fraction=0.2)
    train = fdm.statistics(masks[:300], y[:300])
    train.merge(fdm.statistics(masks[300:720], y[300:720]))
    val = fdm.statistics(masks[720:], y[720:])
    sharded = fdm.fit_statistics(train, val)
    # XᵀY sums shards in another order: equal up to rounding
    np.testing.assert_allclose(whole.weights, sharded.weights, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(whole.lam, sharded.lam, rtol=1e-12)


def test_questions_to_a_model(tmp_path):
    all_masks, all_y = problem(3200, 40, 4, 5, noise=0.3)
    masks, y, held, yh = all_masks[:3000], all_y[:3000], all_masks[3000:], all_y[3000:]
    model = fdm.fit(masks, y)
    pred = model.predict(masks[:10])
    np.testing.assert_allclose(
        pred, masks[:10] @ model.weights.astype(np.float64) + model.bias, rtol=1e-5
    )
    packed = np.packbits(masks[:10], axis=1)
    np.testing.assert_allclose(model.predict(packed, n_train=40), pred)
    rho = fdm.lds(model, held, yh, per_target=True)
    expect = [spearmanr(model.predict(held)[:, t], yh[:, t]).statistic for t in range(4)]
    np.testing.assert_allclose(rho, expect, rtol=1e-12)
    assert fdm.lds(model, held, yh) == pytest.approx(np.mean(expect))
    t = 2
    w = model.weights[:, t]
    assert model.counterfactual(t, remove=[0, 5]) == pytest.approx(-(w[0] + w[5]), rel=1e-6)
    inf = model.most_influential(t, k=3)
    assert inf.helpful.tolist() == np.argsort(-w)[:3].tolist()
    assert (inf.harmful_weights < 0).all() and inf.harmful[0] == int(np.argmin(w))
    flip = model.brittleness(t, output=float(w[w > 0].sum()) / 2)
    assert flip is not None and w[flip].sum() >= w[w > 0].sum() / 2
    assert w[flip[:-1]].sum() < w[w > 0].sum() / 2
    assert model.brittleness(t, output=float(w[w > 0].sum()) + 1) is None
    sim = model.similar(k=2)
    assert sim.indices.shape == (4, 2) and (sim.indices != np.arange(4)[:, None]).all()
    e = model.embeddings
    cos = e @ e.T
    np.fill_diagonal(cos, -np.inf)
    np.testing.assert_array_equal(sim.indices[:, 0], cos.argmax(1))
    model.save(tmp_path / "model")
    back = fdm.Datamodel.load(tmp_path / "model")
    np.testing.assert_array_equal(back.weights, model.weights)
    np.testing.assert_array_equal(back.val_mse, model.val_mse)


def test_constant_columns_targets_and_small_inputs():
    masks, y = problem(400, 10, 3, 6)
    masks[:, 3] = True
    masks[:, 7] = False
    y[:, 1] = 2.5
    with pytest.warns(DatamodelWarning, match="2 training examples are in every model or in none"):
        model = fdm.fit(masks, y)
    assert model.constant_columns.tolist() == [3, 7]
    assert (model.weights[[3, 7]] == 0).all()
    assert (model.weights[:, 1] == 0).all() and model.bias[1] == 2.5 and np.isnan(model.lam[1])
    with pytest.warns(DatamodelWarning, match="models for 50 training examples"):
        fdm.fit(*problem(40, 50, 1, 7))
    with pytest.raises(ValueError, match="too few"):
        fdm.fit(*problem(2, 5, 1, 7))


def test_bad_input_is_a_clear_error(tmp_path):
    masks, y = problem(100, 8, 2, 8)
    with pytest.raises(ValueError, match=r"masks have 100 rows .* outputs have 99"):
        fdm.fit(masks, y[:99])
    bad = y.copy()
    bad[17, 1] = np.nan
    with pytest.raises(fastcarto.FastcartoError, match="model 17, target 1"):
        fdm.fit(masks, bad)
    with pytest.raises(TypeError, match="masks must be bool"):
        fdm.fit(masks.astype(np.float32), y)
    with pytest.raises(TypeError, match="outputs must be float"):
        fdm.fit(masks, y.astype(np.int64))
    with pytest.raises(ValueError, match="bytes per row"):
        fdm.fit(np.packbits(masks, axis=1), y, n_train=20)
    with pytest.raises(ValueError, match="val_fraction"):
        fdm.fit(masks, y, val_fraction=1.0)
    with pytest.raises(fastcarto.FastcartoError, match="λ must be positive"):
        fdm.fit(masks, y, lam=-1.0)
    with pytest.raises(FileNotFoundError):
        fdm.fit(tmp_path / "missing.npy", y)
    with pytest.raises(fastcarto.FastcartoError, match="n_lambdas"):
        fdm.fit(masks, y, n_lambdas=0)
    model = fdm.fit(masks, y)
    with pytest.raises(IndexError):
        model.counterfactual(5, remove=[0])
    with pytest.raises(IndexError):
        model.counterfactual(0, remove=[8])
    with pytest.raises(ValueError, match="the datamodels 8"):
        model.predict(masks[:, :5])
    with pytest.raises(fastcarto.IncompatibleStateError):
        fdm.statistics(masks, y).merge(fdm.statistics(masks[:, :4], y))
    with pytest.raises(FileNotFoundError, match=r"datamodel\.json"):
        fdm.Datamodel.load(tmp_path)


def test_subsets_train_resume_and_feed_fit(tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    run = fdm.Subsets(LogisticRegression(), X, y, X[:7], y[:7], n_models=12, out=tmp_path, n_jobs=1)
    masks, outputs = run.run(batch=5)
    assert masks.shape == (12, 60) and (masks.sum(1) == 30).all()
    first = np.array(outputs)
    est = LogisticRegression().fit(X[masks[3]], y[masks[3]])
    s = est.decision_function(X[:7])
    np.testing.assert_allclose(first[3], np.where(y[:7] == 1, s, -s), rtol=1e-5)
    done = np.load(tmp_path / "done.npy", mmap_mode="r+")
    done[4:6] = False
    done.flush()
    again = fdm.Subsets(LogisticRegression(), X, y, X[:7], y[:7], n_models=12, out=tmp_path)
    _, out2 = again.run()
    np.testing.assert_allclose(np.array(out2), first, rtol=1e-6)
    with pytest.raises(ValueError, match="other settings"):
        fdm.Subsets(LogisticRegression(), X, y, X[:7], y[:7], n_models=13, out=tmp_path).run()


def test_subsets_margins_stay_finite_when_a_probability_is_zero(tmp_path):
    from sklearn.naive_bayes import GaussianNB

    # Far-apart classes: GaussianNB gives the other class probability exactly 0.
    X = np.r_[np.arange(5.0), 100 + np.arange(5.0)][:, None]
    y = (np.arange(10) >= 5).astype(int)
    t = [0, 9]
    assert (GaussianNB().fit(X, y).predict_proba(X[t]) == 0).any()
    masks, outputs = fdm.Subsets(GaussianNB(), X, y, X[t], y[t], n_models=3, out=tmp_path).run()
    out = np.asarray(outputs)
    assert np.isfinite(out).all()
    for m, row in zip(np.asarray(masks), out, strict=True):
        est = GaussianNB().fit(X[m], y[m])
        logp = np.log(np.maximum(est.predict_proba(X[t]), np.finfo(np.float64).tiny))
        want = logp[[0, 1], y[t]] - logp[[0, 1], 1 - y[t]]
        np.testing.assert_allclose(row, want, rtol=1e-6)


def test_command_line_fit_and_explain(tmp_path, capsys):
    from fastcarto import cli

    masks, y = problem(500, 12, 3, 9, noise=0.3)
    np.save(tmp_path / "m.npy", masks)
    np.save(tmp_path / "y.npy", y.astype(np.float32))
    assert (
        cli.main(
            [
                "datamodels",
                "fit",
                str(tmp_path / "m.npy"),
                str(tmp_path / "y.npy"),
                "-o",
                str(tmp_path / "model"),
            ]
        )
        == 0
    )
    assert "datamodels of 3 targets over 12 training examples" in capsys.readouterr().out
    model = fdm.Datamodel.load(tmp_path / "model")
    np.testing.assert_array_equal(model.weights, fdm.fit(masks, y.astype(np.float32)).weights)
    assert (
        cli.main(
            [
                "datamodels",
                "explain",
                str(tmp_path / "model"),
                "--target",
                "1",
                "-k",
                "2",
                "--masks",
                str(tmp_path / "m.npy"),
                "--outputs",
                str(tmp_path / "y.npy"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "LDS on held-out models" in out and "target 1:" in out and "most helpful" in out
    assert (
        cli.main(
            [
                "datamodels",
                "fit",
                str(tmp_path / "m.npy"),
                str(tmp_path / "m.npy"),
                "-o",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "outputs must be float" in capsys.readouterr().err


def test_demo_small(tmp_path):
    from fastcarto.datamodels._demo import run_demo

    res = run_demo(tmp_path, n_models=250, n_heldout=30, n_train=100, n_jobs=1, stream=None)
    assert {p.name for p in tmp_path.iterdir()} == {
        "train",
        "heldout",
        "model",
        "influence.png",
        "report.txt",
    }
    assert res.model.weights.shape == (100, 1797 - 100)
    assert np.isfinite(res.lds) and res.lds > 0.2
