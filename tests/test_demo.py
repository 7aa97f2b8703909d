"""``fastcarto demo``: the whole job on scikit-learn's digits, in-process and as a command."""

from __future__ import annotations

from pathlib import Path

import fastcarto
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastcarto import cli
from fastcarto._demo import run_demo
from helpers import run_cli_process


def test_run_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_demo(out, noise=0.3, epochs=12, seed=1, stream=None)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "datamap.png",
        "dynamics",
        "label_issues.csv",
        "metrics.parquet",
        "report.txt",
        "trajectories.png",
    ]
    assert result.flipped.sum() == round(0.3 * 1797)
    # floors well below what this run measures (precision 0.96, recall 0.95)
    assert result.precision >= 0.75 and result.recall >= 0.9
    # the recorded dynamics are complete Arrow IPC segments, one or more per epoch
    segments = sorted((out / "dynamics").glob("epoch-*.arrows"))
    assert len(segments) >= 12
    metrics = pq.read_table(out / "metrics.parquet")
    assert metrics.equals(result.datamap.to_arrow())
    issues = pd.read_csv(out / "label_issues.csv")
    assert issues.columns.tolist() == [
        *result.issues.columns,
        "true_label",
        "flipped",
    ]
    assert (issues["flipped"] == (issues["given_label"] != issues["true_label"])).all()
    assert (out / "report.txt").read_text().startswith("DataMap(1,797 examples, logits, 12 epochs")
    assert (out / "datamap.png").read_bytes().startswith(b"\x89PNG")
    # the map read back through the recorder agrees with the trajectories of the recording
    ids = [0, 5, 9]
    frame = fastcarto.trajectories(ids, out / "dynamics", kind="logits")
    np.testing.assert_allclose(
        frame.mean().to_numpy(), result.datamap["confidence"][ids], rtol=1e-6
    )


def test_demo_command(tmp_path: Path) -> None:
    proc = run_cli_process(["demo", "--out", "out", "--epochs", "8"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "regions: easy-to-learn" in proc.stdout
    assert "flipped labels found:" in proc.stdout and "precision" in proc.stdout
    assert (tmp_path / "out" / "datamap.png").exists()


def test_demo_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--out", str(tmp_path / "q"), "--epochs", "3", "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "q" / "label_issues.csv").exists()


def test_demo_out_must_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    assert cli.main(["demo", "--out", str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err
