"""Plots: what each figure draws is checked against the map it comes from (region boundaries
and counts from the region rule, the subsample, bar heights), and every figure saves as PNG,
PDF and SVG. Trajectories are checked against a numpy softmax, from arrays, ``.npy`` files and
long tables (Parquet, Arrow IPC, a Recorder directory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import fastcarto
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from fastcarto import RegionRule
from fastcarto._plots import OKABE_ITO, REGION_COLORS
from matplotlib.collections import LineCollection, PathCollection, QuadMesh
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from reference import softmax

E, N, C = 6, 400, 3


@pytest.fixture(scope="module")
def run() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, C, size=N)
    logits = rng.normal(size=(E, N, C)).astype(np.float32)
    logits[:, np.arange(N), labels] += rng.normal(1.0, 2.0, size=N).astype(np.float32)
    return logits, labels


@pytest.fixture(scope="module")
def dm(run: tuple[np.ndarray, np.ndarray]) -> fastcarto.DataMap:
    return fastcarto.compute(run[0], run[1], kind="logits")


def synthetic_map(n: int, seed: int = 0) -> fastcarto.DataMap:
    """A large map built directly from columns (no engine run), for the big-n code paths."""
    rng = np.random.default_rng(seed)
    conf = rng.random(n)
    table = pa.table(
        {
            "id": np.arange(n),
            "label": rng.integers(0, 4, n),
            "confidence": conf,
            "variability": rng.random(n) * np.sqrt(conf * (1 - conf)),
            "correctness": rng.integers(0, 11, n) / 10,
            "n_epochs": np.full(n, 10),
        }
    )
    return fastcarto.DataMap(table, kind="logits")


def legend_texts(ax: Any) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def region_at(x: float, y: float, v: float, c: float) -> str:
    """The region the rule with thresholds ``(v, c)`` gives the point (variability x,
    confidence y)."""
    if x >= v:
        return "ambiguous"
    return "easy-to-learn" if y >= c else "hard-to-learn"


def main_axes(fig: Figure) -> Any:
    return next(ax for ax in fig.axes if ax.get_xlabel().startswith("variability"))


def all_text(fig: Figure) -> str:
    parts = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        parts += [t.get_text() for t in ax.texts]
        legend = ax.get_legend()
        if legend is not None:
            parts += [t.get_text() for t in legend.get_texts()]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# the data map


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, fastcarto; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_data_map(dm: fastcarto.DataMap) -> None:
    fig = dm.plot()
    assert isinstance(fig, Figure)
    ax = main_axes(fig)
    assert ax.get_ylabel().startswith("confidence")
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    offsets = np.asarray(points.get_offsets())
    assert len(offsets) == N  # every example, in a shuffled drawing order
    got = sorted(map(tuple, offsets.tolist()))
    assert got == sorted(zip(dm["variability"].tolist(), dm["confidence"].tolist(), strict=True))
    assert points.get_rasterized()
    # region boundaries and labels come from the rule, with its counts
    v, c = RegionRule().thresholds(dm["variability"])
    assert any(np.allclose(line.get_xdata(), [v, v]) for line in ax.lines)
    (hline,) = [coll for coll in ax.collections if isinstance(coll, LineCollection)]
    np.testing.assert_allclose(hline.get_segments()[0], [[0.0, c], [v, c]])
    counts = dm.regions().value_counts()
    labels = {t.get_text().split("\n")[0]: t.get_text() for t in ax.texts}
    for region in fastcarto.REGIONS:
        assert f"{counts[region]:,} (" in labels[region]
    # each region's box: drawn inside its region, edged in the region's colour
    boxes = {t.get_text().split("\n")[0]: t for t in ax.texts}
    assert set(boxes) == set(fastcarto.REGIONS)
    for region, box in boxes.items():
        assert region_at(*box.get_position(), v, c) == region, box.get_position()
        patch = box.get_bbox_patch()
        assert patch is not None
        assert to_hex(patch.get_edgecolor()) == REGION_COLORS[region].lower(), region
    # every point coloured by its example's correctness
    drawn = sorted(
        zip(
            offsets[:, 0].tolist(), offsets[:, 1].tolist(), points.get_array().tolist(), strict=True
        )
    )
    want = sorted(
        zip(
            dm["variability"].tolist(),
            dm["confidence"].tolist(),
            dm["correctness"].tolist(),
            strict=True,
        )
    )
    np.testing.assert_allclose(drawn, want)
    assert ax.get_xlim()[0] == 0.0 and ax.get_xlim()[1] >= dm["variability"].max()
    assert ax.get_ylim() == (-0.02, 1.02)
    # the marginal histograms count every example, each along its own axis
    top = next(a for a in fig.axes if a.get_ylabel() == "examples")
    right = next(a for a in fig.axes if a.get_xlabel() == "examples")
    assert sum(p.get_height() for p in top.patches) == N
    assert sum(p.get_width() for p in right.patches) == N
    colorbar = next(a for a in fig.axes if a.get_ylabel().startswith("correctness"))
    assert colorbar is not ax
    text = all_text(fig)
    assert f"points: all {N:,} examples" in text and "correctness" in text
    assert fig._suptitle is not None
    assert fig._suptitle.get_text() == "Data map (400 examples, logits, 6 epochs)"


def test_custom_rule_moves_the_boundaries(dm: fastcarto.DataMap) -> None:
    rule = RegionRule(variability=0.05, confidence=0.8)
    ax = main_axes(dm.plot(rule=rule))
    (hline,) = [coll for coll in ax.collections if isinstance(coll, LineCollection)]
    np.testing.assert_allclose(hline.get_segments()[0], [[0.0, 0.8], [0.05, 0.8]])
    assert any(np.allclose(line.get_xdata(), [0.05, 0.05]) for line in ax.lines)
    counts = dm.regions(rule).value_counts()
    ax.figure.canvas.draw()
    for t in ax.texts:
        region, share = t.get_text().split("\n")
        assert share.startswith(f"{counts[region]:,} (")
        # Each label overlaps its own region (one narrower than the label cannot hold it whole).
        box = t.get_window_extent().transformed(ax.transData.inverted())
        corners = [(x, y) for x in (box.x0, box.x1) for y in (box.y0, box.y1)]
        assert region in {region_at(x, y, 0.05, 0.8) for x, y in corners}


def test_deterministic_subsample_above_max_points() -> None:
    big = synthetic_map(30_000)
    fig = big.plot(max_points=5_000)
    (points,) = [c for c in main_axes(fig).collections if isinstance(c, PathCollection)]
    offsets = np.asarray(points.get_offsets())
    assert len(offsets) == 5_000
    assert "a random 5,000 of 30,000 examples (seed 0); histograms count all" in all_text(fig)
    again = np.asarray(
        next(
            c
            for c in main_axes(big.plot(max_points=5_000)).collections
            if isinstance(c, PathCollection)
        ).get_offsets()
    )
    np.testing.assert_array_equal(offsets, again)
    # the marginal histograms count every example
    top = next(ax for ax in fig.axes if ax.get_ylabel() == "examples" and ax is not main_axes(fig))
    assert sum(p.get_height() for p in top.patches) == 30_000


def test_density_mode() -> None:
    big = synthetic_map(20_000)
    fig = big.plot(mode="density")
    ax = main_axes(fig)
    assert any(isinstance(c, QuadMesh) for c in ax.collections)
    assert not any(isinstance(c, PathCollection) for c in ax.collections)
    assert "density: all 20,000 examples" in all_text(fig)


def test_by_class(dm: fastcarto.DataMap) -> None:
    fig = dm.plot(by_class=True)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title().startswith("label ")]
    assert len(panels) == C
    shown = sum(
        len(c.get_offsets())
        for ax in panels
        for c in ax.collections
        if isinstance(c, PathCollection)
    )
    assert shown == N
    for cls, ax in enumerate(panels):
        assert ax.get_title().startswith(f"label {cls}: {int((dm['label'] == cls).sum()):,}")
    assert "by label" in all_text(fig)


def test_by_class_density_and_too_many_classes(dm: fastcarto.DataMap) -> None:
    fig = dm.plot(by_class=True, mode="density")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title().startswith("label ")]
    assert len(panels) == C
    for ax in panels:
        assert [type(c) for c in ax.collections if isinstance(c, (QuadMesh, PathCollection))] == [
            QuadMesh
        ]
    # each panel's mesh counts its own class: the bins with data there hold the class's mean
    # correctness, NaN-free only where some example of the class lies
    for cls, ax in enumerate(panels):
        (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
        values = mesh.get_array()
        assert values.count() >= 1 and values.max() <= 1.0 and values.min() >= 0.0, cls
    assert "density: mean correctness in bins, all 400 examples" in all_text(fig)
    rng = np.random.default_rng(0)
    many = fastcarto.compute(rng.normal(size=(2, 100, 40)), np.arange(100) % 40, kind="logits")
    with pytest.raises(ValueError, match="40 are too many"):
        many.plot(by_class=True)


@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
def test_save(dm: fastcarto.DataMap, tmp_path: Path, suffix: str) -> None:
    magic = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}[suffix]
    for name, draw in {
        "map": dm.plot,
        "aum": dm.plot_aum,
        "forgetting": dm.plot_forgetting,
    }.items():
        path = tmp_path / f"{name}{suffix}"
        fig = draw(save=path, title=f"saved {name}")
        assert f"saved {name}" in all_text(fig)
        assert path.read_bytes().startswith(magic)


def test_plot_options_are_checked(dm: fastcarto.DataMap) -> None:
    with pytest.raises(ValueError, match="mode"):
        dm.plot(mode="hexagons")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_points"):
        dm.plot(max_points=0)


def test_compat_tables() -> None:
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(4, 50, 3)), rng.integers(0, 3, 50)
    carto = fastcarto.compute(logits, labels, kind="logits", compat="cartography")
    # cartography's correctness is a count of correct epochs; the points are coloured by it
    # scaled to [0, 1], as cartography's plot does
    fig = carto.plot()
    ax = next(a for a in fig.axes if a.get_xlabel().startswith("variability"))
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    counts = carto["correctness"]
    np.testing.assert_allclose(
        sorted(points.get_array().tolist()), sorted((counts / counts.max()).tolist())
    )
    assert fig._suptitle is not None
    assert fig._suptitle.get_text().startswith("Data map (50 examples, logits")
    with pytest.raises(ValueError, match="compat='aum'"):
        fastcarto.compute(logits, labels, kind="logits", compat="aum").plot()


def test_unobserved_examples_are_left_out_and_said() -> None:
    acc = fastcarto.Accumulator(n_examples=5, n_classes=2, kind="logits")
    acc.update(np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.5]]), [0, 0, 1], ids=[0, 1, 2], epoch=0)
    acc.update(np.array([[1.0, 0.0], [0.5, 1.0], [0.0, 1.5]]), [0, 0, 1], ids=[0, 1, 2], epoch=1)
    fig = acc.finalize().plot()
    assert "2 examples without a finite confidence/variability are left out" in all_text(fig)


# --------------------------------------------------------------------------------------------
# AUM and forgetting


def test_plot_aum(dm: fastcarto.DataMap) -> None:
    fig = dm.plot_aum()
    (ax,) = fig.axes
    assert sum(p.get_height() for p in ax.patches) == N
    assert any(np.allclose(line.get_xdata(), [0, 0]) for line in ax.lines)
    assert f"{int((dm['aum'] < 0).sum()):,} below flagged" in all_text(fig)
    assert "mean logit margin" in ax.get_xlabel()
    assert len(ax.patches) == 60  # bins=60 by default
    lo = min(p.get_x() for p in ax.patches)
    hi = max(p.get_x() + p.get_width() for p in ax.patches)
    np.testing.assert_allclose([lo, hi], [dm["aum"].min(), dm["aum"].max()])
    assert legend_texts(ax) == [
        f"examples ({N:,})",
        f"AUM = 0 (method='aum'): {int((dm['aum'] < 0).sum()):,} below flagged",
    ]
    assert ax.get_title() == f"AUM ({N:,} examples, logits)"


def test_plot_aum_with_threshold_samples(run: tuple[np.ndarray, np.ndarray]) -> None:
    logits, labels = run
    targets, mask = fastcarto.threshold_samples(labels, C, seed=0)
    extra = np.random.default_rng(1).normal(-1.0, 1.0, size=(E, N, 1)).astype(np.float32)
    dm = fastcarto.compute(np.concatenate([logits, extra], axis=2), targets, kind="logits")
    fig = dm.plot_aum(threshold_mask=mask)
    (ax,) = fig.axes
    thr = dm.aum_threshold(mask)
    assert any(np.allclose(line.get_xdata(), [thr, thr]) for line in ax.lines)
    flagged = int(dm.label_issues(threshold_mask=mask)["is_label_issue"].sum())
    text = all_text(fig)
    assert f"{flagged:,} examples below it flagged" in text
    assert f"threshold samples ({int(mask.sum()):,})" in text


def test_plot_forgetting(dm: fastcarto.DataMap) -> None:
    fig = dm.plot_forgetting(log=True)
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    forgetting, never = dm["forgetting"], dm["never_learned"].astype(bool)
    expected = np.bincount(forgetting[~never].astype(int)).tolist()
    assert heights[:-1] == expected and heights[-1] == never.sum()
    assert ax.get_yscale() == "log"
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [*map(str, range(len(expected))), "never\nlearned"]
    assert legend_texts(ax) == ["learned at some epoch", "never learned"]
    assert [to_hex(p.get_facecolor()) for p in ax.patches[-1:]] == [OKABE_ITO[3].lower()]
    assert ax.get_title() == f"Forgetting ({N:,} examples)"
    assert ax.get_xlabel().startswith("forgetting events")


# --------------------------------------------------------------------------------------------
# trajectories


def gold_probabilities(logits: np.ndarray, labels: np.ndarray, ids: list[int]) -> np.ndarray:
    p = softmax(logits[:, ids, :])
    return p[:, np.arange(len(ids)), labels[ids]]


IDS = [7, 0, 123]


def test_trajectories_from_an_array_and_npy(
    run: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    logits, labels = run
    expected = gold_probabilities(logits, labels, IDS)
    frame = fastcarto.trajectories(IDS, logits, labels, kind="logits")
    assert frame.columns.tolist() == IDS and frame.index.tolist() == list(range(E))
    np.testing.assert_allclose(frame.to_numpy(), expected, rtol=1e-5)
    np.save(tmp_path / "logits.npy", logits)
    from_file = fastcarto.trajectories(IDS, tmp_path / "logits.npy", labels, kind="logits")
    np.testing.assert_array_equal(from_file.to_numpy(), frame.to_numpy())
    # the mean over epochs is the map's confidence, exactly as the engine computes it
    dm = fastcarto.compute(logits, labels, kind="logits")
    np.testing.assert_allclose(frame.mean().to_numpy(), dm["confidence"][IDS], rtol=1e-12)


def long_table(logits: np.ndarray, labels: np.ndarray, *, shuffle: bool = True) -> pa.Table:
    e, n, c = logits.shape
    rng = np.random.default_rng(0)
    rows = [rng.permutation(n) if shuffle else np.arange(n) for _ in range(e)]
    order = np.concatenate(rows)
    epoch = np.repeat(np.arange(e), n)
    values = np.concatenate([logits[k, r] for k, r in enumerate(rows)]).reshape(-1)
    return pa.table(
        {
            "epoch": pa.array(epoch, pa.int32()),
            "id": pa.array(order, pa.int64()),
            "label": pa.array(labels[order], pa.int32()),
            "logits": pa.FixedSizeListArray.from_arrays(pa.array(values), c),
        }
    )


def test_trajectories_from_long_tables(run: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    logits, labels = run
    expected = fastcarto.trajectories(IDS, logits, labels, kind="logits").to_numpy()
    table = long_table(logits, labels)
    pq.write_table(table, tmp_path / "run.parquet", row_group_size=500)
    feather.write_feather(table, tmp_path / "run.arrow")
    with pa.OSFile(str(tmp_path / "run.arrows"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=700)
    (tmp_path / "dir").mkdir()
    pq.write_table(table.slice(0, 1000), tmp_path / "dir" / "a.parquet")
    feather.write_feather(table.slice(1000), tmp_path / "dir" / "b.arrow")
    (tmp_path / "dir" / ".partial.arrow").write_bytes(b"ignored: a hidden, unfinished file")
    for source in ["run.parquet", "run.arrow", "run.arrows", "dir"]:
        frame = fastcarto.trajectories(IDS, tmp_path / source, kind="logits")
        assert frame.columns.tolist() == IDS
        np.testing.assert_array_equal(frame.to_numpy(), expected, err_msg=source)
    frame = fastcarto.trajectories(IDS, table, kind="logits")  # any Arrow stream
    np.testing.assert_array_equal(frame.to_numpy(), expected)
    dataset = ds.dataset(tmp_path / "run.parquet")  # and pyarrow datasets and scanners
    for source in [dataset, dataset.scanner(columns=["epoch", "id", "label", "logits"])]:
        frame = fastcarto.trajectories(IDS, source, kind="logits")
        np.testing.assert_array_equal(frame.to_numpy(), expected)


def test_trajectories_refuse_ids_that_name_no_example(
    run: tuple[np.ndarray, np.ndarray],
) -> None:
    logits, labels = run
    n = logits.shape[1]
    for ids in ([-1], [0, n]):
        with pytest.raises(IndexError, match=rf"row positions 0 to {n - 1}, got {ids[-1]}"):
            fastcarto.trajectories(ids, logits, labels, kind="logits")
    with pytest.raises(ValueError, match="ids must be distinct; 7 is given more than once"):
        fastcarto.trajectories([7, 0, 7], logits, labels, kind="logits")
    with pytest.raises(TypeError, match=r"\['a'\] do not match the table's ids, of type int64"):
        fastcarto.trajectories(["a"], long_table(logits, labels), kind="logits")


def test_trajectories_string_ids_and_list_columns() -> None:
    table = pa.table(
        {
            "epoch": [0, 0, 1, 1],
            "id": ["a", "b", "b", "a"],
            "label": [1, 0, 0, 1],
            "probs": [[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.5, 0.5]],
        }
    )
    frame = fastcarto.trajectories(["a", "b"], table, kind="probs")
    np.testing.assert_allclose(frame.to_numpy(), [[0.8, 0.6], [0.5, 0.9]])


def test_trajectories_from_a_recorder_directory(
    run: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    logits, labels = run
    with fastcarto.Recorder(tmp_path / "rec", kind="logits") as rec:
        for epoch in range(E):
            for batch in np.array_split(np.arange(N), 3):
                rec.record(logits[epoch, batch], labels[batch], epoch=epoch, ids=batch)
    frame = fastcarto.trajectories(IDS, tmp_path / "rec", kind="logits")
    expected = fastcarto.trajectories(IDS, logits, labels, kind="logits")
    np.testing.assert_array_equal(frame.to_numpy(), expected.to_numpy())


def test_trajectory_errors(run: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    logits, labels = run
    table = long_table(logits, labels)
    with pytest.raises(ValueError, match="not found"):
        fastcarto.trajectories([0, 10_000], table, kind="logits")
    with pytest.raises(ValueError, match="label"):
        fastcarto.trajectories([0], table, labels, kind="logits")
    with pytest.raises(ValueError, match="lacks column"):
        fastcarto.trajectories([0], table, kind="probs")
    with pytest.raises(ValueError, match="pass labels"):
        fastcarto.trajectories([0], logits, kind="logits")
    with pytest.raises(IndexError):
        fastcarto.trajectories([N], logits, labels, kind="logits")
    with pytest.raises(ValueError, match="non-empty"):
        fastcarto.trajectories([], logits, labels, kind="logits")
    with pytest.raises(ValueError, match="kind"):
        fastcarto.trajectories([0], logits, labels, kind="logit")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        fastcarto.trajectories([0], tmp_path / "missing.parquet", kind="logits")


def test_plot_trajectories(run: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    logits, labels = run
    dm = fastcarto.compute(logits, labels, kind="logits")
    fig = dm.plot_trajectories(IDS, logits, save=tmp_path / "t.svg")
    (ax,) = fig.axes
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == E]
    assert len(curves) == len(IDS)
    expected = gold_probabilities(logits, labels, IDS)
    for i, line in enumerate(curves):  # one curve per id, in order, with p(gold) per epoch
        assert line.get_xdata().tolist() == list(range(E))
        np.testing.assert_allclose(line.get_ydata(), expected[:, i], rtol=1e-5)
        assert line.get_label() == f"id {IDS[i]} (given label {labels[IDS[i]]})"
    assert to_hex(curves[0].get_color()) != to_hex(curves[1].get_color())
    assert legend_texts(ax) == [f"id {i} (given label {labels[i]})" for i in IDS]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel().startswith("p(gold)")
    assert ax.get_ylim() == (-0.02, 1.02)
    assert ax.get_title() == "Training dynamics of chosen examples"
    assert (tmp_path / "t.svg").read_bytes().startswith(b"<?xml")
    many = fastcarto.plot_trajectories(list(range(30)), logits, labels, kind="logits")
    (ax,) = many.axes
    thin = [line for line in ax.get_lines() if line.get_linewidth() == 0.7]
    assert len(thin) == 30  # every example, grey, and their mean on top
    assert legend_texts(ax) == ["mean of 30 examples"]
    (mean,) = [line for line in ax.get_lines() if line.get_label() == "mean of 30 examples"]
    np.testing.assert_allclose(
        mean.get_ydata(),
        gold_probabilities(logits, labels, list(range(30))).mean(axis=1),
        rtol=1e-5,
    )
    np.save(tmp_path / "z.npy", logits)
    (ax,) = dm.plot_trajectories([1], os.fspath(tmp_path / "z.npy"), title="one").axes
    (line,) = [line for line in ax.get_lines() if len(line.get_xdata()) == E]
    np.testing.assert_allclose(
        line.get_ydata(), gold_probabilities(logits, labels, [1])[:, 0], rtol=1e-5
    )
    assert ax.get_title() == "one"
