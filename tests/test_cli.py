"""The ``fastcarto`` command line: every output format, option and kind of bad input.

``fastcarto.compute`` run in-process on the same arrays is the oracle for every table written.
Most cases call ``fastcarto.cli.main(argv)`` in-process (fast); a few run ``python -m fastcarto``
in a subprocess to check the real entry point, exit status and standard streams.
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from fastcarto import cli
from helpers import run_cli_process

E, N, C = 6, 20, 3


# --------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding outputs and labels in every supported form."""
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=2.0, size=(E, N, C)).astype(np.float32)
    labels = rng.integers(0, C, size=N)
    targets = (rng.random(size=(N, C)) < 0.4).astype(np.int8)
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    np.savetxt(tmp_path / "labels.txt", labels, fmt="%d")
    np.savetxt(tmp_path / "labels.csv", labels, fmt="%d")
    np.save(tmp_path / "targets.npy", targets)
    np.savetxt(tmp_path / "targets.csv", targets, fmt="%d", delimiter=",")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FASTCARTO_DEBUG", raising=False)
    return tmp_path


def logits_and_labels(run_dir: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return np.load(run_dir / "logits.npy"), np.load(run_dir / "labels.npy")


def expected_table(run_dir: Path, labels: str = "labels.npy", **kwargs: Any) -> pa.Table:
    kwargs.setdefault("kind", "logits")
    return fastcarto.compute(
        np.load(run_dir / "logits.npy"), np.load(run_dir / labels), **kwargs
    ).to_arrow()


def as_floats(table: pa.Table) -> dict[str, np.ndarray[Any, Any]]:
    """Every column as float64 (booleans 0/1, nulls NaN), for format-independent comparison."""
    return {
        name: table.column(name).cast(pa.float64()).to_numpy().astype(np.float64)
        for name in table.column_names
    }


def assert_same_values(got: pa.Table, expected: pa.Table, *, rtol: float = 0.0) -> None:
    assert got.column_names == expected.column_names
    assert got.num_rows == expected.num_rows
    g, e = as_floats(got), as_floats(expected)
    for name in expected.column_names:
        if rtol:
            np.testing.assert_allclose(g[name], e[name], rtol=rtol, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(g[name], e[name], err_msg=name)


def read_jsonl(path: Path) -> pa.Table:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    names = list(rows[0])
    assert all(list(row) == names for row in rows)
    return pa.table(
        {n: pa.array([math.nan if r[n] is None else float(r[n]) for r in rows]) for n in names}
    )


def read_table(path: Path) -> pa.Table:
    suffix = path.suffix
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix in (".feather", ".arrow"):
        return feather.read_table(path)
    if suffix == ".csv":
        return pcsv.read_csv(path)
    assert suffix == ".jsonl"
    return read_jsonl(path)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastcarto: error: "), err
    assert err.endswith("\n")
    assert "Traceback" not in err


MAP = ("map", "logits.npy", "--labels", "labels.npy", "--kind", "logits")


# --------------------------------------------------------------------------------------------
# output formats


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".feather", ".arrow", ".jsonl"])
def test_each_format_round_trips(
    run_dir: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    out = run_dir / f"datamap{suffix}"
    code, stdout, stderr = run_cli(capsys, *MAP, "-o", str(out))
    assert code == 0
    assert stdout == ""
    assert stderr.startswith("fastcarto: DataMap(20 examples, logits, 6 epochs")
    assert stderr.rstrip().endswith(str(out)) and len(stderr.splitlines()) == 1

    expected = expected_table(run_dir)
    got = read_table(out)
    if suffix in (".parquet", ".feather", ".arrow"):
        assert got.equals(expected)
        assert got.schema.metadata == expected.schema.metadata
    else:
        assert_same_values(got, expected, rtol=1e-13 if suffix == ".jsonl" else 0.0)
    # written under a temporary name and renamed into place: nothing else is left behind
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []


def test_suffix_is_case_insensitive(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run_cli(capsys, *MAP, "-o", "DATAMAP.PARQUET", "--quiet")
    assert code == 0
    assert pq.read_table(run_dir / "DATAMAP.PARQUET").equals(expected_table(run_dir))


def test_dash_writes_csv_to_stdout(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run_cli(capsys, *MAP, "-o", "-")
    assert code == 0
    got = pcsv.read_csv(pa.BufferReader(stdout.encode()))
    assert_same_values(got, expected_table(run_dir))
    assert stderr.startswith("fastcarto: DataMap(") and stderr.rstrip().endswith("standard output")


def test_write_table_to_a_text_stream(run_dir: Path) -> None:
    dm = fastcarto.compute(*logits_and_labels(run_dir), kind="logits")
    stream = io.StringIO()
    cli.write_table(dm, "-", stdout=stream)
    assert_same_values(pcsv.read_csv(pa.BufferReader(stream.getvalue().encode())), dm.to_arrow())


def test_closed_pipe_is_quiet(
    run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(dm: fastcarto.DataMap, stream: Any) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_write_csv_stream", broken)
    assert run_cli(capsys, *MAP, "-o", "-") == (1, "", "")


def test_quiet_prints_nothing(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, *MAP, "-o", "dm.csv", "--quiet") == (0, "", "")
    code, stdout, stderr = run_cli(capsys, *MAP, "-o", "-", "-q")
    assert code == 0 and stdout.startswith('"id","label",') and stderr == ""


def test_overwrites_an_existing_output(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "dm.parquet").write_bytes(b"stale")
    assert run_cli(capsys, *MAP, "-o", "dm.parquet", "-q")[0] == 0
    assert pq.read_table(run_dir / "dm.parquet").equals(expected_table(run_dir))


def test_failed_write_leaves_no_partial_file(
    run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_write(dm: fastcarto.DataMap, path: Path) -> None:
        path.write_text('"id","label"\n0,')
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(cli._WRITERS, ".csv", half_write)
    (run_dir / "old.csv").write_text("keep me\n")
    code, stdout, stderr = run_cli(capsys, *MAP, "-o", "old.csv")
    assert code == 2 and stdout == ""
    assert_one_error_line(stderr)
    assert "old.csv: cannot write the table: No space left on device" in stderr
    assert (run_dir / "old.csv").read_text() == "keep me\n"
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------------------------
# options


@pytest.mark.parametrize("compat", ["cartography", "aum", "dataiq", "toneva"])
def test_compat(run_dir: Path, capsys: pytest.CaptureFixture[str], compat: str) -> None:
    code, _, stderr = run_cli(capsys, *MAP, "--compat", compat, "-o", "dm.parquet")
    assert code == 0 and f"compat={compat!r}" in stderr
    assert pq.read_table(run_dir / "dm.parquet").equals(expected_table(run_dir, compat=compat))


@pytest.mark.parametrize(
    ("spec", "epochs"),
    [
        ("5", 5),
        ("1:", slice(1, None)),
        ("1:4", slice(1, 4)),
        ("::2", slice(None, None, 2)),
        ("-3:", slice(-3, None)),
        ("0,2,4", [0, 2, 4]),
        ("3,", [3]),
        (" 1 , 5 ", [1, 5]),
    ],
)
def test_epochs(run_dir: Path, capsys: pytest.CaptureFixture[str], spec: str, epochs: Any) -> None:
    assert cli.parse_epochs(spec) == epochs
    code, _, _ = run_cli(capsys, *MAP, f"--epochs={spec}", "-o", "dm.feather", "-q")
    assert code == 0
    got = feather.read_table(run_dir / "dm.feather")
    assert got.equals(expected_table(run_dir, epochs=epochs))


def test_epochs_as_separate_argument(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, *MAP, "--epochs", "::2", "-o", "dm.parquet", "-q")[0] == 0
    expected = expected_table(run_dir, epochs=[0, 2, 4])
    assert pq.read_table(run_dir / "dm.parquet").equals(expected)


def test_ddof_threads_kind(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logits, labels = logits_and_labels(run_dir)
    e = np.exp(logits.astype(np.float64))
    np.save(run_dir / "probs.npy", e / e.sum(axis=-1, keepdims=True))
    argv = ("map", "probs.npy", "--labels", "labels.npy", "--kind", "probs")
    code, _, _ = run_cli(capsys, *argv, "--ddof", "1", "--threads", "2", "-o", "dm.parquet", "-q")
    assert code == 0
    expected = fastcarto.compute(
        np.load(run_dir / "probs.npy"), labels, kind="probs", ddof=1
    ).to_arrow()
    assert pq.read_table(run_dir / "dm.parquet").equals(expected)


def test_nan_policy_omit(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logits, labels = logits_and_labels(run_dir)
    logits[2, 5, 1] = np.nan
    np.save(run_dir / "nan.npy", logits)
    argv = ("map", "nan.npy", "--labels", "labels.npy", "--kind", "logits")
    code, _, _ = run_cli(capsys, *argv, "--nan-policy", "omit", "-o", "dm.parquet", "-q")
    assert code == 0
    expected = fastcarto.compute(logits, labels, kind="logits", nan_policy="omit").to_arrow()
    got = pq.read_table(run_dir / "dm.parquet")
    assert got.equals(expected)
    assert got.column("n_epochs").to_pylist()[5] == E - 1


@pytest.mark.parametrize("labels", ["labels.npy", "labels.txt", "labels.csv"])
def test_labels_files(run_dir: Path, capsys: pytest.CaptureFixture[str], labels: str) -> None:
    argv = ("map", "logits.npy", "--labels", labels, "--kind", "logits", "-o", "dm.parquet")
    assert run_cli(capsys, *argv, "-q")[0] == 0
    assert pq.read_table(run_dir / "dm.parquet").equals(expected_table(run_dir))


@pytest.mark.parametrize("targets", ["targets.npy", "targets.csv"])
def test_multilabel_targets(
    run_dir: Path, capsys: pytest.CaptureFixture[str], targets: str
) -> None:
    argv = ("map", "logits.npy", "--labels", targets, "--kind", "logits", "-o", "dm.csv")
    code, _, stderr = run_cli(capsys, *argv)
    assert code == 0 and f"{N * C} rows" in stderr
    got = pcsv.read_csv(run_dir / "dm.csv")
    assert got.column_names[:2] == ["id", "class"] and got.num_rows == N * C
    assert_same_values(got, expected_table(run_dir, labels="targets.npy"))


# --------------------------------------------------------------------------------------------
# help and version


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "--version") == (0, f"fastcarto {fastcarto.__version__}\n", "")


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["map", "--help"]])
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, stdout, stderr = run_cli(capsys, *argv)
    assert code == 0 and stderr == ""
    assert "examples:" in stdout
    assert "fastcarto map logits.npy --labels labels.npy --kind logits -o datamap.parquet" in stdout
    if "map" in argv:
        for option in ("--labels", "--kind", "--compat", "--epochs", "--nan-policy", "--ddof"):
            assert option in stdout


# --------------------------------------------------------------------------------------------
# the real entry point


def test_python_dash_m(run_dir: Path) -> None:
    proc = run_cli_process([*MAP, "--compat", "cartography", "-o", "-"], cwd=run_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("fastcarto: DataMap(20 examples, logits, compat='cartography'")
    got = pcsv.read_csv(pa.BufferReader(proc.stdout.encode()))
    assert_same_values(got, expected_table(run_dir, compat="cartography"))


def test_python_dash_m_bad_input(run_dir: Path) -> None:
    proc = run_cli_process([*MAP, "--epochs", "1:x", "-o", "dm.csv"], cwd=run_dir)
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_error_line(proc.stderr)


# --------------------------------------------------------------------------------------------
# bad input: one line on stderr, exit status 2, nothing written


def _save(name: str, array: np.ndarray[Any, Any]) -> str:
    np.save(name, array)
    return name


def mapping(
    outputs: str = "logits.npy", labels: str = "labels.npy", kind: str = "logits"
) -> tuple[str, ...]:
    return ("map", outputs, "--labels", labels, "--kind", kind)


# case: (argv, a fragment of the error message)
BAD_INPUT: dict[str, tuple[tuple[str, ...], str]] = {
    "missing outputs": (mapping(outputs="nope.npy"), "nope.npy: No such file"),
    "missing labels": (mapping(labels="nope.txt"), "nope.txt: No such file"),
    "outputs a directory": (mapping(outputs="dir.npy"), "dir.npy: no data files"),
    "outputs not npy": (mapping(outputs="labels.txt"), "labels.txt: unknown file type"),
    "npy without labels": (("map", "logits.npy", "--kind", "logits"), "needs --labels and --kind"),
    "npy without kind": (("map", "logits.npy", "--labels", "labels.npy"), "needs --labels"),
    "missing table": (("map", "nope.parquet"), "nope.parquet: No such file"),
    "glob without match": (("map", "nope*.arrows"), "no data files match"),
    "int outputs": (mapping(outputs="int.npy"), "float32 or float64"),
    "2-d outputs": (mapping(outputs="flat.npy"), "3-d array"),
    "not an npy file": (mapping(outputs="junk.npy"), "junk.npy"),
    "NaN outputs": (mapping(outputs="nan.npy"), "--nan-policy omit"),
    "probs that are logits": (mapping(kind="probs"), "--kind logits"),
    "labels length": (mapping(labels="short.npy"), "19 labels for 20 examples"),
    "float labels": (mapping(labels="float.npy"), "integers"),
    "label out of range": (mapping(labels="big.npy"), "out of range"),
    "labels text not ints": (mapping(labels="bad.txt"), "bad.txt"),
    "labels text empty": (mapping(labels="empty.txt"), "empty"),
    "labels junk npy": (mapping(labels="junk.npy"), "not a .npy file"),
    "labels suffix": (mapping(labels="labels.json"), "labels.json"),
    "epochs letters": ((*MAP, "--epochs", "abc"), "--epochs"),
    "epochs too many colons": ((*MAP, "--epochs", "1:2:3:4"), "--epochs"),
    "epochs zero step": ((*MAP, "--epochs", "::0"), "step"),
    "epochs zero count": ((*MAP, "--epochs", "0"), "at least 1"),
    "epochs too many": ((*MAP, "--epochs", "7"), "--epochs 7 selects the first 7 epochs"),
    "epochs empty slice": ((*MAP, "--epochs", "9:"), "'9:' is empty"),
    "epochs decreasing": ((*MAP, "--epochs", "3,1"), "increasing"),
    "epochs out of range": ((*MAP, "--epochs", "0,6"), "out of range"),
    "ddof negative": ((*MAP, "--ddof=-1"), "--ddof"),
    "threads zero": ((*MAP, "--threads", "0"), "--threads"),
    "bad kind": (mapping(kind="logit"), "--kind"),
    "no command": ((), "COMMAND"),
    "unknown option": ((*MAP, "--frobnicate"), "--frobnicate"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input(run_dir: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    logits, labels = logits_and_labels(run_dir)
    _save("int.npy", logits.astype(np.int32))
    _save("flat.npy", logits[0])
    logits[3, 7, 2] = np.nan
    _save("nan.npy", logits)
    _save("short.npy", labels[:-1])
    _save("float.npy", labels.astype(np.float64))
    _save("big.npy", labels + C)
    (run_dir / "junk.npy").write_bytes(b"not numpy")
    (run_dir / "dir.npy").mkdir()
    (run_dir / "bad.txt").write_text("1\n2.5\n")
    (run_dir / "empty.txt").write_text("")
    (run_dir / "labels.json").write_text("[]")

    argv, fragment = BAD_INPUT[case]
    if argv and argv[0] == "map":
        argv = (*argv, "-o", "dm.parquet")
    before = sorted(p.name for p in run_dir.iterdir())
    code, stdout, stderr = run_cli(capsys, *argv)
    assert code == 2
    assert stdout == ""
    assert_one_error_line(stderr)
    assert fragment in stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written


@pytest.mark.parametrize(
    ("out", "fragment"),
    [
        ("dm.xlsx", "unknown output format (suffix '.xlsx')"),
        ("dm", "unknown output format (no suffix)"),
        ("no/such/dir/dm.csv", "directory 'no/such/dir' does not exist"),
        ("subdir.parquet", "subdir.parquet: Is a directory"),
    ],
)
def test_bad_output(
    run_dir: Path, capsys: pytest.CaptureFixture[str], out: str, fragment: str
) -> None:
    (run_dir / "subdir.parquet").mkdir()
    code, stdout, stderr = run_cli(capsys, *MAP, "-o", out)
    assert code == 2 and stdout == ""
    assert_one_error_line(stderr)
    assert fragment in stderr


# --------------------------------------------------------------------------------------------
# failures that are not the user's


def test_debug_shows_the_exception(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTCARTO_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        cli.main(["map", "nope.npy", "--labels", "labels.npy", "--kind", "logits", "-o", "x.csv"])


@pytest.mark.parametrize(
    ("exc", "status", "fragment"),
    [
        (RuntimeError("boom"), 1, "unexpected RuntimeError: boom"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_unexpected_errors(
    run_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    exc: BaseException,
    status: int,
    fragment: str,
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise exc

    monkeypatch.setattr("fastcarto._compute.compute", fail)
    code, stdout, stderr = run_cli(capsys, *MAP, "-o", "dm.csv")
    assert code == status and stdout == ""
    assert_one_error_line(stderr)
    assert fragment in stderr


# --------------------------------------------------------------------------------------------
# map --plot, select, issues, demo


def test_map_plot(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run_cli(capsys, *MAP, "-o", "dm.parquet", "--plot", "map.png")
    assert code == 0 and stdout == ""
    assert (run_dir / "map.png").read_bytes().startswith(b"\x89PNG")
    assert stderr.splitlines()[-1] == "fastcarto: data map -> map.png"
    assert pq.read_table(run_dir / "dm.parquet").equals(expected_table(run_dir))
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--plot", "map.jpeg"), "map.jpeg: unknown image format (suffix '.jpeg')"),
        (("--plot", "no/dir/map.png"), "directory 'no/dir' does not exist"),
        (("--plot", "map.png", "--compat", "aum"), "cannot be combined with --compat"),
    ],
)
def test_map_plot_errors(
    run_dir: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], fragment: str
) -> None:
    before = sorted(p.name for p in run_dir.iterdir())
    code, stdout, stderr = run_cli(capsys, *MAP, "-o", "dm.parquet", *extra)
    assert code == 2 and stdout == ""
    assert_one_error_line(stderr)
    assert fragment in stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before


def _source(command: str) -> tuple[str, ...]:
    return (command, "logits.npy", "--labels", "labels.npy", "--kind", "logits")


@pytest.mark.parametrize("region", ["easy-to-learn", "ambiguous", "hard-to-learn"])
def test_select_region(run_dir: Path, capsys: pytest.CaptureFixture[str], region: str) -> None:
    code, _, stderr = run_cli(capsys, *_source("select"), "--region", region, "-o", "ids.csv")
    assert code == 0
    dm = fastcarto.compute(*logits_and_labels(run_dir), kind="logits")
    expected = np.flatnonzero((dm.regions() == region).to_numpy())
    got = pcsv.read_csv(run_dir / "ids.csv")
    assert got.column_names[0] == "id" and got.column_names[-1] == "region"
    assert got.column("id").to_pylist() == expected.tolist()
    assert set(got.column("region").to_pylist()) <= {region}
    assert f"selected {len(expected):,} of {N} examples, region {region}" in stderr


@pytest.mark.parametrize(
    ("region", "metric", "worst"),
    [
        ("ambiguous", "variability", False),
        ("hard-to-learn", "confidence", False),
        ("easy-to-learn", "confidence", True),
    ],
)
def test_select_region_fraction(
    run_dir: Path, capsys: pytest.CaptureFixture[str], region: str, metric: str, worst: bool
) -> None:
    argv = (*_source("select"), "--region", region, "--fraction", "0.33", "-o", "ids.parquet")
    assert run_cli(capsys, *argv)[0] == 0
    dm = fastcarto.compute(*logits_and_labels(run_dir), kind="logits")
    expected = dm.select(metric, 0.33, worst=worst)["id"].tolist()
    assert pq.read_table(run_dir / "ids.parquet").column("id").to_pylist() == expected


def test_select_metric(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dm = fastcarto.compute(*logits_and_labels(run_dir), kind="logits")
    argv = (*_source("select"), "--metric", "variability", "--fraction", "0.5", "--both-ends")
    code, stdout, stderr = run_cli(capsys, *argv, "-o", "-")
    assert code == 0 and "(both ends)" in stderr
    got = pcsv.read_csv(pa.BufferReader(stdout.encode())).column("id").to_pylist()
    assert got == dm.select("variability", 0.5, both_ends=True)["id"].tolist()
    code, stdout, _ = run_cli(capsys, *argv, "--worst", "-o", "-", "-q")
    assert code == 0
    got = pcsv.read_csv(pa.BufferReader(stdout.encode())).column("id").to_pylist()
    assert got == dm.select("variability", 0.5, worst=True, both_ends=True)["id"].tolist()


def test_select_region_rule_options(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = (*_source("select"), "--region", "easy-to-learn", "--confidence-threshold", "0.7")
    argv = (*argv, "--variability-threshold", "0.2", "-o", "ids.csv", "-q")
    assert run_cli(capsys, *argv)[0] == 0
    dm = fastcarto.compute(*logits_and_labels(run_dir), kind="logits")
    rule = fastcarto.RegionRule(variability=0.2, confidence=0.7)
    expected = np.flatnonzero((dm.regions(rule) == "easy-to-learn").to_numpy()).tolist()
    assert pcsv.read_csv(run_dir / "ids.csv").column("id").to_pylist() == expected


def test_issues(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run_cli(capsys, *_source("issues"), "-o", "issues.csv")
    assert code == 0
    dm = fastcarto.compute(*logits_and_labels(run_dir), kind="logits")
    issues = dm.label_issues()
    flagged = issues[issues["is_label_issue"]].sort_values("label_score", kind="stable")
    got = pcsv.read_csv(run_dir / "issues.csv")
    assert got.column_names == list(issues.columns)
    assert got.column("id").to_pylist() == flagged["id"].tolist()
    assert f"{len(flagged):,} of {N} examples flagged as label issues" in stderr
    assert run_cli(capsys, *_source("issues"), "--all", "-o", "all.parquet")[0] == 0
    everything = pq.read_table(run_dir / "all.parquet").to_pandas()
    assert everything["id"].tolist() == list(range(N))
    np.testing.assert_array_equal(everything["label_score"], issues["label_score"])
    assert run_cli(capsys, *_source("issues"), "--method", "aum", "--all", "-o", "aum.csv")[0] == 0
    got = pcsv.read_csv(run_dir / "aum.csv").column("is_label_issue").to_pylist()
    assert got == dm.label_issues(method="aum")["is_label_issue"].tolist()


def test_issues_with_threshold_samples(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logits, labels = logits_and_labels(run_dir)
    targets, mask = fastcarto.threshold_samples(labels, C, seed=0)
    extra = np.full((E, N, 1), -1.0, dtype=np.float32)
    np.save("extended.npy", np.concatenate([logits, extra], axis=2))
    np.save("targets.npy", targets)
    np.save("mask.npy", mask)
    argv = ("issues", "extended.npy", "--labels", "targets.npy", "--kind", "logits")
    code, _, _ = run_cli(capsys, *argv, "--threshold-mask", "mask.npy", "--all", "-o", "i.csv")
    assert code == 0
    dm = fastcarto.compute(np.load("extended.npy"), targets, kind="logits")
    expected = dm.label_issues(threshold_mask=mask)["is_label_issue"].tolist()
    assert pcsv.read_csv(run_dir / "i.csv").column("is_label_issue").to_pylist() == expected


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ((*_source("select"), "-o", "x.csv"), "one of the arguments --region --metric"),
        ((*_source("select"), "--metric", "confidence", "-o", "x.csv"), "--metric needs"),
        ((*_source("select"), "--region", "easy", "-o", "x.csv"), "invalid choice: 'easy'"),
        ((*_source("select"), "--region", "ambiguous", "--worst", "-o", "x.csv"), "--worst"),
        ((*_source("select"), "--metric", "aum", "--fraction", "2", "-o", "x.csv"), "[0, 1]"),
        ((*_source("select"), "--region", "ambiguous", "-o", "x.xlsx"), "unknown output format"),
        ((*_source("issues"), "--threshold-mask", "labels.npy", "-o", "x.csv"), "0/1"),
        ((*_source("issues"), "--percentile", "50", "-o", "x.csv"), "--threshold-mask"),
        ((*_source("issues"), "--threshold-mask", "nope.npy", "-o", "x.csv"), "No such file"),
        ((*_source("issues"), "--method", "threshold", "-o", "x.csv"), "needs threshold_mask"),
        (("demo", "--noise", "1.5"), "[0, 1]"),
        (("demo", "--epochs", "1"), "at least 2"),
    ],
)
def test_new_commands_bad_input(
    run_dir: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], fragment: str
) -> None:
    before = sorted(p.name for p in run_dir.iterdir())
    code, stdout, stderr = run_cli(capsys, *argv)
    assert code == 2 and stdout == ""
    assert_one_error_line(stderr)
    assert fragment in stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before


@pytest.mark.parametrize("command", ["select", "issues", "demo"])
def test_new_commands_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, stdout, stderr = run_cli(capsys, command, "--help")
    assert code == 0 and stderr == ""
    if command != "demo":
        assert "examples:" in stdout and f"fastcarto {command} logits.npy" in stdout
    else:
        assert "scikit-learn" in stdout and "--out" in stdout


def test_demo_without_scikit_learn(
    run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    code, _, stderr = run_cli(capsys, "demo", "--out", "d")
    assert code == 2
    assert_one_error_line(stderr)
    assert "fastcarto demo needs scikit-learn: python -m pip install 'fastcarto[demo]'" in stderr


def test_commands_read_a_recorded_run(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SOURCE may be anything fastcarto.compute reads: here a Recorder directory, whose files
    carry the labels and the kind."""
    logits, labels = logits_and_labels(run_dir)
    with fastcarto.Recorder(run_dir / "rec", kind="logits") as rec:
        for epoch in range(E):
            rec.record(logits[epoch], labels, epoch=epoch, ids=np.arange(N))
    code, _, stderr = run_cli(capsys, "map", "rec", "-o", "dm.parquet", "--plot", "map.svg")
    assert code == 0, stderr
    got = pq.read_table(run_dir / "dm.parquet")
    assert_same_values(got, expected_table(run_dir), rtol=1e-12)
    assert (run_dir / "map.svg").exists()
    assert run_cli(capsys, "map", "rec/*.arrows", "-o", "glob.parquet", "-q")[0] == 0
    assert_same_values(pq.read_table(run_dir / "glob.parquet"), got)
    assert run_cli(capsys, "issues", "rec", "--all", "-o", "issues.csv", "-q")[0] == 0
    issues = fastcarto.compute(logits, labels, kind="logits").label_issues()
    got_issues = pcsv.read_csv(run_dir / "issues.csv").column("is_label_issue").to_pylist()
    assert got_issues == issues["is_label_issue"].tolist()
    argv = ("select", "rec", "--region", "ambiguous", "-o", "amb.csv", "-q")
    assert run_cli(capsys, *argv)[0] == 0
