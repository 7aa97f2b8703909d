"""``fastcarto audit``: the files it writes are the Datalab's results, and bad input ends
with one error line and exit status 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastcarto import Datalab
from fastcarto.cli import main


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    n = 300
    labels = np.array(["cat", "dog", "emu"])[np.r_[rng.integers(0, 2, n - 4), [2] * 4]]
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[7] = np.nan
    x[9, 1] = np.nan
    paths = {"labels": tmp_path / "labels.npy", "x": tmp_path / "x.npy"}
    np.save(paths["labels"], labels)
    np.save(paths["x"], x)
    return paths


def test_audit_writes_the_datalab_results(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    types = "null,class_imbalance"
    assert main(["audit", str(files["labels"]), "--features", str(files["x"]),
                 "--issue-types", types, "-o", str(out), "-q"]) == 0  # fmt: skip
    lab = Datalab({"label": np.load(files["labels"])}, label_name="label", verbosity=0)
    lab.find_issues(features=files["x"], issue_types={"null": {}, "class_imbalance": {}})
    issues = pd.read_parquet(out / "issues.parquet")
    assert issues["example"].tolist() == list(range(300))
    pd.testing.assert_frame_equal(issues.drop(columns="example"), lab.issues)
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)  # "null" is a type
    pd.testing.assert_frame_equal(summary, lab.get_issue_summary(), check_dtype=False)
    assert (out / "report.txt").read_text() == lab.get_report() + "\n"


def test_audit_csv_and_json_parameters(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "csv"
    spec = '{"class_imbalance": {"threshold": 0.01}}'
    assert main(["audit", str(files["labels"]), "--issue-types", spec, "--format", "csv",
                 "-o", str(out), "-q", "--num-examples", "2"]) == 0  # fmt: skip
    issues = pd.read_csv(out / "issues.csv")
    assert list(issues.columns) == ["example", "is_class_imbalance_issue", "class_imbalance_score"]
    # 4 / 300 is above 0.01 / 3: no imbalance at this threshold.
    assert not issues["is_class_imbalance_issue"].any()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--issue-types", "bogus"], "unknown issue type 'bogus'"),
        (["--issue-types", "{bad json"], "not valid JSON"),
        (["--issue-types", '{"null": 1}'], "map each type to its parameters"),
        (["--features", "missing.npy"], "missing.npy"),
        (["--features", "x.csv"], "--features must be a .npy file"),
        (["--dynamics-kind", "logits"], "--dynamics-kind applies with --dynamics"),
        (["--dynamics", "d.npy"], "needs --dynamics-kind"),
    ],
)
def test_audit_bad_input(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    code = main(["audit", str(files["labels"]), *extra, "-o", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("fastcarto: error:")
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_audit_features_of_the_wrong_length(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((10, 2)))
    assert main(["audit", str(files["labels"]), "--features", str(short), "-o",
                 str(tmp_path / "o")]) == 2  # fmt: skip
    assert "features have 10 rows but the dataset has 300" in capsys.readouterr().err
