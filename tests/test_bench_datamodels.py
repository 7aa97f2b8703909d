"""benches/bench_datamodels.py at toy sizes: its options, the counterfactual check and the scale
steps run and report what they claim (the full sizes are the bench's job, not the suite's)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import fastcarto.datamodels as fdm
import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

_PATH = Path(__file__).resolve().parents[1] / "benches" / "bench_datamodels.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_datamodels", _PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_datamodels"] = mod
    spec.loader.exec_module(mod)
    yield mod
    del sys.modules["bench_datamodels"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cf-k", "5,0"], "positive integer"),
        (["--cf-k", "five"], "positive integer"),
        (["--cf-k", ","], "nothing"),
        (["--counterfactual", "--cf-k", "1000"], "below the 1,000"),
        (["--counterfactual", "--figure", "cf.txt"], ".png"),
        (["--counterfactual", "--figure", "no/such/dir/cf.png"], "no such directory"),
        (["--figure", "cf.png"], "add --counterfactual"),
        (["--no-compare"], "nothing to do"),
        (["--heldout", "2"], "at least 3"),
        (["--models", "10"], "at least 20"),
        (["--scale-size", "100", "0", "10"], "positive integer"),
        (["--scale-size", "100", "10", "10"], "at least 20"),
        (["--stream-models", "10000,5"], "at least 20"),
        (["--jobs", "-1"], "positive integer"),
    ],
)
def test_bad_options_are_clear_errors(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_targets_are_spread_over_the_classes(bench):
    yt = np.repeat(np.arange(10), [30, 2, 30, 30, 30, 30, 30, 30, 30, 30])
    picked = bench.pick_targets(yt, 20, 0)
    assert len(set(picked)) == 20
    counts = np.bincount(yt[picked], minlength=10)
    assert counts.tolist() == [2] * 10
    assert len(bench.pick_targets(yt, 25, 0)) == 25  # more than the classes hold evenly


def _toy_digits(n_train: int = 80):
    from fastcarto.datamodels._demo import digits_split

    X, y, Xt, yt, _, _ = digits_split(n_train, 0)
    return X, y, Xt[:30], yt[:30]


def test_counterfactual_check_and_its_figure(bench, tmp_path, capsys):
    X, y, Xt, yt = _toy_digits()
    # Any datamodel will do: the check retrains the real models and compares.
    rng = np.random.default_rng(0)
    model = fdm.Datamodel.from_weights(rng.normal(size=(len(y), len(yt))), np.zeros(len(yt)))
    targets = bench.pick_targets(yt, 2, 0)
    res = bench.counterfactual((X, y, Xt, yt), model, targets, [2, 6], 2, 1)
    rows = res["rows"]
    assert len(rows) == 2 * 2 * 2
    for r in rows:
        assert np.isfinite([r[k] for k in r if k.startswith(("predicted", "actual"))]).all()
    top = [r for r in rows if r["kind"] == "top"]
    for r in top:  # the top k are the k largest weights: the predicted change is their sum
        w = np.sort(model.weights[:, r["target"]])[::-1][: r["k"]]
        assert r["predicted_full"] == pytest.approx(-w.astype(np.float64).sum(), abs=1e-6)
    out = capsys.readouterr().out
    assert "Pearson r" in out and "model.counterfactual agrees" in out
    fig = tmp_path / "cf.png"
    bench.counterfactual_figure(res, fig)
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scale_steps_measure_statistics_and_fit(bench, tmp_path, capsys):
    d = tmp_path / "scale"
    bench.make_scale_data(d, 64, 600, 5)
    masks = np.load(d / "masks.npy")
    packed = np.load(d / "masks_packed.npy")
    assert masks.shape == (600, 64) and packed.shape == (600, 8)
    assert (np.unpackbits(packed, axis=1, count=64).astype(bool) == masks).all()
    results = {}
    for part in ("stats", "stats-packed", "stats-k1", "fit"):
        bench.scale_child(part, d)
        results[part] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["stats"]["xtx_sum"] == results["stats-packed"]["xtx_sum"]
    assert results["stats"]["xtx_sum"] == int((masks[:540].T.astype(np.int64) @ masks[:540]).sum())
    fit = results["fit"]
    assert fit["weights_corr"] > 0.5 and fit["converged"] == 5
    for r in results.values():
        assert r["peak_rss_gib"] >= r["peak_anon_gib"] > 0
        assert r["seconds"] >= 0 and r["cpu_seconds"] >= 0
