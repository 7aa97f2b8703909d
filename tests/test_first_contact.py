"""What a new user meets first: labels given as a path, messages that blame the right argument
and read as plain English, a hint for an unquoted glob, a warning for probabilities declared as
logits, a data map whose labels leave the points visible, and a demo that shows what it says."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa
import pytest
from fastcarto import cli
from matplotlib.backends.backend_agg import FigureCanvasAgg

E, N, C = 5, 60, 3
#: Dense logits (E, N, C) and their labels.
Run = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


@pytest.fixture
def run() -> Run:
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(E, N, C)).astype(np.float32)
    labels = rng.integers(0, C, size=N)
    return logits, labels


def softmax(z: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(z.dtype)


def no_rust_ranges(message: str) -> None:
    """Ranges are written in words ("0 to 3"), never as Rust's ``0..=3`` or ``0..3``."""
    assert not re.search(r"\d\s*\.\.=?\s*[\d+{]", message), message


# --------------------------------------------------------------------------------------------
# labels given as a path, as the CLI's --labels


@pytest.mark.parametrize("suffix", [".npy", ".txt", ".csv"])
def test_compute_takes_a_labels_path(run: Run, tmp_path: Path, suffix: str) -> None:
    logits, labels = run
    np.save(tmp_path / "logits.npy", logits)
    path = tmp_path / f"labels{suffix}"
    if suffix == ".npy":
        np.save(path, labels)
    else:
        np.savetxt(path, labels, fmt="%d")
    expected = fastcarto.compute(logits, labels, kind="logits").to_arrow()
    for source in (logits, tmp_path / "logits.npy"):
        for given in (path, str(path)):
            got = fastcarto.compute(source, given, kind="logits").to_arrow()
            assert got.equals(expected)


def test_compute_takes_a_path_of_multilabel_targets(run: Run, tmp_path: Path) -> None:
    logits, _ = run
    targets = (np.random.default_rng(0).random((N, C)) < 0.4).astype(np.int64)
    np.savetxt(tmp_path / "targets.csv", targets, fmt="%d", delimiter=",")
    got = fastcarto.compute(logits, tmp_path / "targets.csv", kind="logits")
    assert got.to_arrow().equals(fastcarto.compute(logits, targets, kind="logits").to_arrow())


def test_per_epoch_npy_directory_takes_a_labels_path(run: Run, tmp_path: Path) -> None:
    logits, labels = run
    for e in range(E):
        np.save(tmp_path / f"epoch_{e}.npy", logits[e])
    np.savetxt(tmp_path.parent / f"{tmp_path.name}-labels.txt", labels, fmt="%d")
    got = fastcarto.compute(
        tmp_path, tmp_path.parent / f"{tmp_path.name}-labels.txt", kind="logits"
    )
    expected = fastcarto.compute(tmp_path, labels, kind="logits")
    assert got.to_arrow().equals(expected.to_arrow())


def test_bad_labels_paths_are_named(run: Run, tmp_path: Path) -> None:
    logits, labels = run
    with pytest.raises(FileNotFoundError, match=r"missing\.npy"):
        fastcarto.compute(logits, tmp_path / "missing.npy", kind="logits")
    (tmp_path / "labels.json").write_text("[0, 1]")
    with pytest.raises(ValueError, match=r"labels.json: unsupported labels file"):
        fastcarto.compute(logits, tmp_path / "labels.json", kind="logits")
    np.savetxt(tmp_path / "short.txt", labels[:10], fmt="%d")
    with pytest.raises(ValueError, match="got 10 labels for 60 examples"):
        fastcarto.compute(logits, tmp_path / "short.txt", kind="logits")
    # a long table carries its labels: a labels path is refused as an array would be
    table = pa.table({"epoch": [0], "id": [0], "label": [0], "logits": [[0.0, 1.0]]})
    with pytest.raises(ValueError, match="long table carries its labels"):
        fastcarto.compute(table, tmp_path / "short.txt")


def test_cli_labels_are_read_by_the_same_function(
    run: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logits, labels = run
    np.save(tmp_path / "logits.npy", logits)
    np.savetxt(tmp_path / "labels.txt", labels, fmt="%d")
    import fastcarto._dense as compute_module

    seen: list[str] = []
    read = compute_module.read_labels

    def spy(path: Any) -> Any:
        seen.append(str(path))
        return read(path)

    monkeypatch.setattr(compute_module, "read_labels", spy)
    out = tmp_path / "map.csv"
    argv = ["map", str(tmp_path / "logits.npy"), "--labels", str(tmp_path / "labels.txt")]
    assert cli.main([*argv, "--kind", "logits", "-o", str(out), "-q"]) == 0
    assert seen == [str(tmp_path / "labels.txt")]
    assert out.read_text().count("\n") == N + 1


# --------------------------------------------------------------------------------------------
# messages blame the argument that is wrong, in plain words


def test_plot_trajectories_with_another_run_blames_the_source(run: Run, tmp_path: Path) -> None:
    logits, labels = run
    dm = fastcarto.compute(logits, labels, kind="logits")
    other = logits[:, :40]
    # the labels come from the map, so the source is what does not fit
    with pytest.raises(ValueError, match=r"source holds 40 examples .* this map has 60") as err:
        dm.plot_trajectories([1, 2], other)
    assert "labels" not in str(err.value)
    np.save(tmp_path / "other.npy", other)
    with pytest.raises(ValueError, match=r"source holds 40 examples"):
        dm.plot_trajectories([1], tmp_path / "other.npy")
    # with both given, the message names both and says they must come from one run
    with pytest.raises(ValueError, match=r"labels has shape \(60,\) but the source has 40"):
        fastcarto.plot_trajectories([1, 2], other, labels, kind="logits")


def test_trajectory_errors_name_the_id_and_epoch(
    run: Run,
) -> None:
    logits, labels = run
    bad = labels.copy()
    bad[7] = 9
    with pytest.raises(fastcarto.LabelError, match=r"label 9 of id 7 is out of range") as err:
        fastcarto.trajectories([3, 7], logits, bad, kind="logits")
    assert "valid labels: 0 to 2" in str(err.value)
    probs = softmax(logits)
    probs[2, 7] = [0.5, 0.4, 0.4]
    with pytest.raises(fastcarto.InvalidProbabilitiesError, match=r"id 7 at epoch 2 .*kind='log"):
        fastcarto.trajectories([3, 7], probs, labels, kind="probs")
    table = pa.table(
        {
            "epoch": [0, 0, 1, 1],
            "id": ["a", "b", "a", "b"],
            "label": [0, 5, 0, 5],
            "logits": [[0.0, 1.0]] * 4,
        }
    )
    with pytest.raises(fastcarto.LabelError, match=r"label 5 of id 'b'"):
        fastcarto.trajectories(["a", "b"], table, kind="logits")


def test_no_rust_range_notation_in_messages(run: Run, tmp_path: Path) -> None:
    logits, labels = run
    messages = []
    with pytest.raises(fastcarto.LabelError) as err:
        fastcarto.compute(logits, labels + 3, kind="logits")
    assert "(valid labels: 0 to 2)" in str(err.value)
    messages.append(str(err.value))
    acc = fastcarto.Accumulator(N, C, kind="logits")
    with pytest.raises(fastcarto.LabelError) as err:
        acc.update(logits[0], labels - 1)
    messages.append(str(err.value))
    a, b = (fastcarto.Accumulator(N, C, kind="logits") for _ in range(2))
    for e in (0, 2):
        a.update(logits[e], labels, epoch=e)
    for e in (1, 3):
        b.update(logits[e], labels, epoch=e)
    with pytest.raises(fastcarto.EpochOrderError) as err:
        a.merge(b)
    assert "epochs 0 to 2 and 1 to 3 interleave" in str(err.value)
    messages.append(str(err.value))
    with pytest.raises(IndexError) as index_err:
        fastcarto.trajectories([N], logits, labels, kind="logits")
    messages.append(str(index_err.value))
    with fastcarto.Recorder(tmp_path / "rec", kind="logits", n_classes=C) as rec:
        with pytest.raises(fastcarto.LabelError) as err:
            rec.record(logits[0], labels + 3, epoch=0, ids=np.arange(N))
        messages.append(str(err.value))
    with pytest.raises(ValueError) as value_err:
        fastcarto.Recorder(tmp_path / "live", kind="logits", n_classes=C, accumulator=True)
    messages.append(str(value_err.value))
    for message in messages:
        no_rust_ranges(message)


def test_missing_files_are_reported_without_rust_error_codes(tmp_path: Path) -> None:
    for missing in (tmp_path / "nope.npy", tmp_path / "nope.parquet"):
        with pytest.raises(FileNotFoundError) as err:
            fastcarto.compute(missing, kind="logits")
        assert str(err.value) == f"{missing}: No such file or directory"


# --------------------------------------------------------------------------------------------
# an unquoted glob on the command line


def test_unquoted_glob_gets_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["map", "runs/epoch-0.parquet", "runs/epoch-1.parquet", "runs/epoch-2.parquet"]
    assert cli.main([*argv, "-o", "x.csv"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastcarto: error: SOURCE is one path, got 3")
    assert "quote the pattern ('runs/*.parquet') so fastcarto expands it" in err
    # files of different folders or formats: a generic example of the quoting
    assert cli.main(["issues", "a.arrow", "b/c.parquet", "-o", "x.csv"]) == cli.EXIT_USAGE
    assert "quote the pattern ('runs/*.parquet')" in capsys.readouterr().err
    # unknown options are still reported as such
    assert cli.main(["map", "a.parquet", "--bogus", "-o", "x.csv"]) == cli.EXIT_USAGE
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_quoted_glob_reads_every_file(
    run: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow.parquet as pq

    logits, labels = run
    (tmp_path / "runs").mkdir()
    for e in range(E):
        table = pa.table(
            {
                "epoch": np.full(N, e),
                "id": np.arange(N),
                "label": labels,
                "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits[e].ravel()), C),
            }
        )
        pq.write_table(table, tmp_path / "runs" / f"epoch-{e}.parquet")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["map", "runs/*.parquet", "-o", "map.csv", "-q"]) == 0
    assert (tmp_path / "map.csv").read_text().count("\n") == N + 1


# --------------------------------------------------------------------------------------------
# probabilities declared as logits


def test_kind_warning_is_exported() -> None:
    assert issubclass(fastcarto.KindWarning, UserWarning)
    assert "KindWarning" in fastcarto.__all__


def test_probabilities_declared_as_logits_warn(run: Run, tmp_path: Path) -> None:
    logits, labels = run
    probs = softmax(logits)
    with pytest.warns(
        fastcarto.KindWarning, match=r"every row checked \(120 rows of epochs 0 and 4\)"
    ):
        fastcarto.compute(probs, labels, kind="logits")
    np.save(tmp_path / "probs.npy", probs.astype(np.float64))
    with pytest.warns(fastcarto.KindWarning, match="pass kind='probs'") as record:
        fastcarto.compute(tmp_path / "probs.npy", labels, kind="logits", epochs=[1])
    assert "epoch 1)" in str(record[0].message)
    assert record[0].filename == __file__  # points at the caller's line
    acc = fastcarto.Accumulator(N, C, kind="logits")
    with pytest.warns(fastcarto.KindWarning, match="the first update"):
        acc.update(probs[0], labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acc.update(probs[1], labels)  # checked on the first update only


def test_logits_and_other_cases_do_not_warn(
    run: Run,
) -> None:
    logits, labels = run
    probs = softmax(logits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastcarto.compute(logits, labels, kind="logits")
        fastcarto.compute(probs, labels, kind="probs")
        # logits that happen to lie in [0, 1] but do not sum to 1
        fastcarto.compute(probs * 0.5, labels, kind="logits")
        # one-hot rows: as likely logits written by hand
        fastcarto.compute(np.eye(C, dtype=np.float32)[None, labels], labels, kind="logits")
        # one column: a binary model's logit may lie in [0, 1]
        fastcarto.compute(probs[:, :, :1], labels % 2, kind="logits")
        # multi-label outputs are not distributions over classes
        targets = (np.random.default_rng(1).random((N, C)) < 0.5).astype(np.int64)
        fastcarto.compute(probs, targets, kind="logits")
        fastcarto.Accumulator(N, C, kind="logits").update(logits[0], labels)


def test_cli_shows_the_kind_warning_on_one_line(
    run: Run,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    logits, labels = run
    np.save(tmp_path / "probs.npy", softmax(logits))
    np.save(tmp_path / "labels.npy", labels)
    argv = ["map", str(tmp_path / "probs.npy"), "--labels", str(tmp_path / "labels.npy")]
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as a command run outside pytest
        assert cli.main([*argv, "--kind", "logits", "-o", str(tmp_path / "m.csv"), "-q"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("fastcarto: warning: kind='logits', but every row checked")
    assert err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# region labels leave the densest points visible


def clustered_map(n: int = 6000) -> fastcarto.DataMap:
    """A map whose points crowd where region labels used to sit: the middle of each region."""
    rng = np.random.default_rng(5)
    third = n // 3
    var = np.concatenate(
        [rng.normal(0.06, 0.01, third), rng.normal(0.06, 0.01, third), rng.normal(0.3, 0.02, third)]
    )
    conf = np.concatenate(
        [rng.normal(0.75, 0.04, third), rng.normal(0.25, 0.04, third), rng.normal(0.5, 0.06, third)]
    )
    table = pa.table(
        {
            "id": np.arange(var.size),
            "confidence": np.clip(conf, 0, 1),
            "variability": np.clip(var, 0, None),
            "correctness": np.clip(conf, 0, 1),
        }
    )
    return fastcarto.DataMap(table, kind="logits")


def points_under(ax: Any, text: Any, var: np.ndarray[Any, Any], conf: np.ndarray[Any, Any]) -> int:
    renderer = ax.get_figure().canvas.get_renderer()
    box = text.get_bbox_patch().get_window_extent(renderer).transformed(ax.transData.inverted())
    inside = (var >= box.x0) & (var <= box.x1) & (conf >= box.y0) & (conf <= box.y1)
    return int(inside.sum())


def test_region_labels_sit_away_from_the_points() -> None:
    dm = clustered_map()
    fig = dm.plot()
    FigureCanvasAgg(fig).draw()  # places the labels' boxes
    ax = next(a for a in fig.axes if a.get_xlabel().startswith("variability"))
    var, conf = dm["variability"], dm["confidence"]
    labels = [t for t in ax.texts if t.get_text().split("\n")[0] in fastcarto.REGIONS]
    assert len(labels) == 3
    for text in labels:
        # at most a few stragglers under a label, where its old place covered a cluster
        assert points_under(ax, text, var, conf) <= len(dm) // 200, text.get_text()
        patch = text.get_bbox_patch()
        assert patch.get_alpha() is not None and patch.get_alpha() < 1
    # the labels do not overlap each other
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)
    # boundaries are thin dashed lines
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert dashed and all(line.get_linewidth() <= 1.0 for line in dashed)


# --------------------------------------------------------------------------------------------
# the demo's picture and its list of files


def test_demo_help_lists_every_file(capsys: pytest.CaptureFixture[str]) -> None:
    from fastcarto._demo import FILES

    assert cli.main(["demo", "--help"]) == 0
    text = capsys.readouterr().out
    for name in FILES:
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", text, re.MULTILINE), name


def test_demo_writes_its_files_and_marks_the_flipped_labels(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from fastcarto._demo import FILES, mark_label_issues, run_demo

    result = run_demo(tmp_path / "demo", noise=0.2, epochs=6, seed=2, stream=None)
    written = sorted(p.name + ("/" if p.is_dir() else "") for p in (tmp_path / "demo").iterdir())
    assert written == sorted(FILES)
    assert sorted(f.name + ("/" if f.is_dir() else "") for f in result.files) == sorted(FILES)

    flagged = result.issues["is_label_issue"].to_numpy(dtype=bool)
    flipped = result.flipped
    ax = mark_label_issues(result.datamap.plot(), result.datamap, flagged, flipped)
    legend = ax.get_legend()
    assert legend is not None
    entries = [t.get_text() for t in legend.get_texts()]
    assert entries == [
        f"flagged, really flipped ({int((flagged & flipped).sum()):,})",
        f"flagged, label was right ({int((flagged & ~flipped).sum()):,})",
        f"flipped, not flagged ({int((~flagged & flipped).sum()):,})",
    ]
    # each group is drawn at its examples' place on the map
    var, conf = result.datamap["variability"], result.datamap["confidence"]
    groups = ax.collections[-3:]
    for collection, mask in zip(
        groups, (flagged & flipped, flagged & ~flipped, ~flagged & flipped), strict=True
    ):
        np.testing.assert_array_equal(collection.get_offsets(), np.c_[var[mask], conf[mask]])
