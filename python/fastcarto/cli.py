"""The ``fastcarto`` command line: the data map of a saved training run, written to a file.

``fastcarto map SOURCE [--labels LABELS --kind logits] -o OUT [--plot map.png]`` reads model
outputs saved as a ``.npy`` file of shape ``(epochs, examples, classes)`` (memory-mapped, never
read whole) or as a long table (Arrow IPC / Parquet files, directories such as a
``fastcarto.Recorder`` run, globs), computes every metric with :func:`fastcarto.compute`, and
writes the table as
Parquet, CSV, Feather/Arrow or JSON lines, chosen by the suffix of ``OUT`` (``-`` writes CSV to
standard output). ``fastcarto select`` writes the examples of one region (or a cartography-style
fraction ranked by one metric), ``fastcarto issues`` the likely label errors, and
``fastcarto demo`` runs the whole job on scikit-learn's digits with flipped labels. Every
command reads SOURCE the same way (:func:`_compute_source`).

Errors in the input (missing files, wrong dtypes, bad labels, NaN in the outputs, ...) end the
command with one line ``fastcarto: error: ...`` on standard error and exit status 2; set
``FASTCARTO_DEBUG=1`` to see the Python traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import numpy as np

from ._arguments import spelled
from ._inputs import LABEL_SUFFIXES as LABEL_SUFFIXES
from ._inputs import check_readable_file as _check_readable_file
from ._inputs import read_labels

if TYPE_CHECKING:
    from ._datamap import DataMap
    from ._inputs import EpochSelection

__all__ = ["main"]

PROG = "fastcarto"

#: Exit status of a successful run.
EXIT_OK = 0
#: Exit status of an unexpected failure (a bug in fastcarto, or in something it calls).
EXIT_FAILURE = 1
#: Exit status of a usage error or bad input: the command line or the files must change.
EXIT_USAGE = 2
#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: Output formats by file suffix (lower case); ``-`` writes CSV to standard output.
OUTPUT_FORMATS = {
    ".parquet": "Parquet",
    ".csv": "CSV",
    ".feather": "Feather (Arrow IPC file)",
    ".arrow": "Arrow IPC file",
    ".jsonl": "JSON lines",
}

_EXAMPLES = """\
examples:
  # the whole job on a built-in example (needs scikit-learn): map, picture, label issues
  fastcarto demo --out demo-out

  # the data map of a classifier's saved logits, as Parquet
  fastcarto map logits.npy --labels labels.npy --kind logits -o datamap.parquet

  # ... of a run recorded with fastcarto.Recorder (labels and kind are in the files)
  fastcarto map dynamics/ -o datamap.parquet

  # ... and its picture (PNG, PDF or SVG)
  fastcarto map logits.npy --labels labels.npy --kind logits -o datamap.parquet --plot map.png

  # the hard-to-learn examples (often mislabeled), or the 33% most ambiguous
  fastcarto select logits.npy --labels labels.npy --kind logits --region hard-to-learn -o hard.csv
  fastcarto select logits.npy --labels labels.npy --kind logits --region ambiguous \\
      --fraction 0.33 -o ambiguous.csv

  # likely label errors, most likely first
  fastcarto issues logits.npy --labels labels.npy --kind logits -o label_issues.csv

  # allenai/cartography's td_metrics after 5 epochs (burn-out), as CSV
  fastcarto map probs.npy --labels labels.txt --kind probs --compat cartography \\
      --epochs 5 -o td_metrics.csv

  # every other epoch, skipping NaN outputs, CSV on standard output
  fastcarto map logits.npy --labels labels.npy --kind logits --epochs ::2 \\
      --nan-policy omit -o - | head
"""

_DESCRIPTION = """\
Compute per-example training-dynamics metrics (dataset cartography, forgetting
events, area under the margin, ...) from model outputs saved during training."""

_MAP_DESCRIPTION = """\
Compute the data map of a training run and write it to OUT. SOURCE is a .npy
file of model outputs, shape (epochs, examples, classes), float32 or float64
(memory-mapped and streamed, never read into memory whole), or a long table of
recorded dynamics: an Arrow IPC or Parquet file, a directory of them (such as a
fastcarto.Recorder run), a quoted glob, or allenai/cartography's
training_dynamics/ directory.
--plot also draws the map (variability against confidence, coloured by
correctness, with the three regions)."""

_SELECT_DESCRIPTION = """\
Write the examples of one region of the data map, or a fixed fraction of all
examples ranked by one metric as allenai/cartography selects training subsets.

--region R alone: every example the region rule puts in R (ambiguous: the
third with the highest variability; of the rest, easy-to-learn: confidence >=
0.5, else hard-to-learn; change it with --variability-quantile,
--variability-threshold, --confidence-threshold).
--region R --fraction F: the fraction F of all examples ranked as Swayamdipta et
al. select R (ambiguous: highest variability first; hard-to-learn: lowest
confidence first; easy-to-learn: highest confidence first).
--metric M --fraction F [--worst] [--both-ends]: cartography's selection by M.
The selected rows are written with every metric and their region, in
selection order."""

_SELECT_EXAMPLES = """\
examples:
  fastcarto select logits.npy --labels labels.npy --kind logits --region hard-to-learn -o hard.csv
  fastcarto select logits.npy --labels labels.npy --kind logits --region ambiguous \\
      --fraction 0.33 -o ambiguous.parquet
  fastcarto select probs.npy --labels labels.npy --kind probs --metric variability \\
      --fraction 0.25 --both-ends -o subset.csv
"""

_ISSUES_DESCRIPTION = """\
Write the examples whose label looks wrong, from the training dynamics alone:
by default the examples with the lowest area under the margin (AUM), as many as
confident learning estimates are wrong (--method count); with --method aum those
whose AUM is below 0 (the given label was on average not the model's top class);
with --threshold-mask those below the 99th percentile of the AUM of threshold
samples (Pleiss et al., 2020). Columns: id,
is_label_issue, label_score (0 to 1, lower = more likely wrong), given_label,
predicted_label, suggested_label. Only flagged examples are written, most
likely first, unless --all."""

_ISSUES_EXAMPLES = """\
examples:
  fastcarto issues logits.npy --labels labels.npy --kind logits -o label_issues.csv
  fastcarto issues logits.npy --labels targets.npy --kind logits \\
      --threshold-mask threshold_mask.npy -o label_issues.csv
"""

_AUDIT_DESCRIPTION = """\
Audit a dataset as cleanlab's Datalab does (fastcarto.Datalab): label issues,
outliers, near-duplicates, non-IID order, class imbalance, underperforming
groups and missing features, from the examples' features and, optionally,
out-of-sample predicted probabilities or training dynamics. LABELS holds one
label per example (.npy of any label type, or .txt/.csv of integers). Writes
into OUTDIR: issues.parquet (or issues.csv with --format csv; one row per
example, is_<type>_issue and <type>_score for every type checked),
summary.csv (issue_type, score, num_issues) and report.txt (the report)."""

_AUDIT_EXAMPLES = """\
examples:
  fastcarto audit labels.npy --features embeddings.npy --pred-probs pred_probs.npy -o audit/
  fastcarto audit labels.npy --features embeddings.npy --dynamics run/ -o audit/
  fastcarto audit labels.npy --features embeddings.npy --dynamics logits.npy \\
      --dynamics-kind logits --issue-types null,outlier,near_duplicate -o audit/
  fastcarto audit labels.npy --features embeddings.npy \\
      --issue-types '{"outlier": {"threshold": 0.2}}' --format csv -o audit/
"""

_DEMO_DESCRIPTION = """\
Run fastcarto's main job on a built-in example: train a small neural network
(scikit-learn's MLPClassifier, one partial_fit per epoch) on scikit-learn's
handwritten digits with a known fraction of labels flipped, record its outputs
every epoch, compute the data map, and write into DIR (listed below).
Prints the region counts and how many flipped labels were found. Needs
scikit-learn: python -m pip install 'fastcarto[demo]'.

files written into DIR:
"""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line: ``fastcarto: error: ...``."""

    def error(self, message: str) -> NoReturn:
        """Reports a usage error on one line of standard error and exits with status 2."""
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def parse_epochs(spec: str) -> EpochSelection:
    """Parses an ``--epochs`` value into what :func:`fastcarto.compute` takes as ``epochs``.

    ``"5"`` is the first 5 epochs; ``"1:"``, ``"1:8"``, ``"::2"`` or ``"-3:"`` are Python slices of
    the epoch axis; ``"0,2,4"`` lists epoch indices (increasing).

    >>> parse_epochs("5"), parse_epochs("1:8:2"), parse_epochs("0,2,4")
    (5, slice(1, 8, 2), [0, 2, 4])
    """
    text = spec.strip()

    def integer(part: str) -> int:
        try:
            return int(part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid epochs {spec!r}: {part.strip()!r} is not an integer; use a count ('5'), "
                "a slice ('1:', '1:8', '::2') or a list ('0,2,4')"
            ) from None

    if ":" in text:
        parts = text.split(":")
        if len(parts) > 3:
            raise argparse.ArgumentTypeError(
                f"invalid epochs {spec!r}: a slice has at most two ':'"
            )
        start, stop, step = (
            integer(p) if p.strip() else None for p in [*parts, *[""] * (3 - len(parts))]
        )
        if step == 0:
            raise argparse.ArgumentTypeError(f"invalid epochs {spec!r}: the slice step cannot be 0")
        return slice(start, stop, step)
    if "," in text:
        items = text.split(",")
        if items and not items[-1].strip():  # tolerate a trailing comma: "3,"
            items.pop()
        return [integer(p) for p in items]
    if not text:
        raise argparse.ArgumentTypeError("invalid epochs '': give a count, a slice or a list")
    count = integer(text)
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"invalid epochs {spec!r}: a count of epochs must be at least 1"
        )
    return count


def _bounded_int(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse ``type`` for integers of at least ``minimum``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, got {value}")
        return value

    return convert


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastcarto`` command and its subcommands."""
    from . import __version__
    from ._demo import FILES as DEMO_FILES
    from ._regions import REGIONS, SELECT_ASCENDING

    parser = _Parser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    m = _add_map_command(
        commands,
        "map",
        summary="compute the data map of saved model outputs and write it to a file",
        description=_MAP_DESCRIPTION,
        epilog=_EXAMPLES,
        output="the table",
        compat=True,
    )
    m.add_argument(
        "--plot",
        metavar="IMAGE",
        help="also draw the data map to IMAGE (.png, .pdf or .svg); not with --compat",
    )
    m.add_argument(
        "--dask",
        metavar="SCHEDULER",
        help="compute on the Dask cluster whose scheduler is at this address "
        "(tcp://host:8786), with fastcarto.dask.compute; SOURCE may then be an fsspec URL "
        "(s3://, gs://...). Needs the dask extra",
    )
    _add_quiet_argument(m)
    m.set_defaults(handler=_run_map)

    sel = _add_map_command(
        commands,
        "select",
        summary="write the examples of one region, or a fraction ranked by one metric",
        description=_SELECT_DESCRIPTION,
        epilog=_SELECT_EXAMPLES,
        output="the selected examples",
    )
    how = sel.add_mutually_exclusive_group(required=True)
    how.add_argument("--region", choices=REGIONS, help="the region to select")
    how.add_argument(
        "--metric",
        choices=tuple(SELECT_ASCENDING),
        help="rank every example by this metric (needs --fraction)",
    )
    sel.add_argument(
        "--fraction",
        type=_fraction,
        metavar="F",
        help="select int(F * examples) examples, ranked (0 <= F <= 1)",
    )
    sel.add_argument("--worst", action="store_true", help="with --metric: rank from the other end")
    sel.add_argument(
        "--both-ends",
        action="store_true",
        help="with --metric: 70%% of the selection from the top of the ranking, the rest from "
        "the bottom (as allenai/cartography)",
    )
    _add_rule_arguments(sel)
    _add_quiet_argument(sel)
    sel.set_defaults(handler=_run_select)

    iss = _add_map_command(
        commands,
        "issues",
        summary="write the examples whose label looks wrong",
        description=_ISSUES_DESCRIPTION,
        epilog=_ISSUES_EXAMPLES,
        output="the label issues",
    )
    iss.add_argument(
        "--method",
        choices=("count", "aum", "threshold"),
        default=None,
        help="the rule (see DataMap.label_issues): count (the default), aum, or threshold "
        "(the default with --threshold-mask, which it needs)",
    )
    iss.add_argument(
        "--threshold-mask",
        metavar="MASK",
        help="a .npy boolean mask (or .txt/.csv of 0/1) of the AUM threshold samples of this "
        "run, from fastcarto.threshold_samples()",
    )
    iss.add_argument(
        "--percentile",
        type=float,
        default=99.0,
        metavar="P",
        help="with --threshold-mask: flag examples below this percentile of the threshold "
        "samples' AUM (default 99)",
    )
    iss.add_argument(
        "--all", action="store_true", help="write every example (in id order), not only flagged"
    )
    _add_quiet_argument(iss)
    iss.set_defaults(handler=_run_issues)

    _add_audit_command(commands)

    demo = commands.add_parser(
        "demo",
        help="run the whole job on scikit-learn's digits with flipped labels",
        description=_DEMO_DESCRIPTION
        + "\n".join(f"  {name:<18}{what}" for name, what in DEMO_FILES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--out",
        default="fastcarto-demo",
        metavar="DIR",
        help="directory to write into (created; default ./fastcarto-demo)",
    )
    demo.add_argument(
        "--noise",
        type=_fraction,
        default=0.2,
        metavar="F",
        help="fraction of labels flipped to another class (default 0.2)",
    )
    demo.add_argument(
        "--epochs",
        type=_bounded_int(2, "--epochs"),
        default=30,
        metavar="N",
        help="training epochs (default 30)",
    )
    demo.add_argument(
        "--seed", type=_bounded_int(0, "--seed"), default=0, metavar="N", help="random seed"
    )
    _add_quiet_argument(demo)
    demo.set_defaults(handler=_run_demo)
    from .datamodels._cli import add_command as add_datamodels_command

    add_datamodels_command(commands, _bounded_int, _add_quiet_argument)
    return parser


def _add_audit_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    from ._audit import ISSUE_TYPES
    from ._inputs import KINDS

    p = commands.add_parser(
        "audit",
        help="audit a dataset for label issues, outliers, duplicates, ... (cleanlab's Datalab)",
        description=_AUDIT_DESCRIPTION,
        epilog=_AUDIT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("labels", metavar="LABELS", help="one label per example (.npy, .txt, .csv)")
    p.add_argument(
        "--features",
        metavar="X",
        help="a .npy file of shape (examples, features), float32/float64, memory-mapped",
    )
    p.add_argument(
        "--pred-probs",
        metavar="P",
        help="a .npy file of out-of-sample predicted probabilities, shape (examples, classes)",
    )
    p.add_argument(
        "--dynamics",
        metavar="PATH",
        help="training dynamics: a fastcarto.Recorder run or long table (as fastcarto map "
        "reads it), or a .npy file of shape (epochs, examples, classes) with --dynamics-kind",
    )
    p.add_argument(
        "--dynamics-kind", choices=KINDS, help="what a .npy --dynamics holds: logits or probs"
    )
    p.add_argument(
        "--issue-types",
        metavar="TYPES",
        help="the issue types to check: comma-separated names ("
        + ", ".join(ISSUE_TYPES)
        + ") or a JSON object of their parameters, as cleanlab's issue_types (default: every "
        "type the inputs allow)",
    )
    p.add_argument(
        "--format",
        choices=("parquet", "csv"),
        default="parquet",
        help="format of the issues table (default parquet)",
    )
    p.add_argument(
        "--num-examples",
        type=_bounded_int(0, "--num-examples"),
        default=5,
        metavar="N",
        help="examples shown per issue type in report.txt (default 5)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="directory to write issues, summary.csv and report.txt into (created)",
    )
    _add_quiet_argument(p)
    p.set_defaults(handler=_run_audit)


def _add_map_command(
    commands: argparse._SubParsersAction[_Parser],
    name: str,
    *,
    summary: str,
    description: str,
    epilog: str,
    output: str,
    compat: bool = False,
) -> argparse.ArgumentParser:
    """A command that computes a map from SOURCE and writes ``output`` to OUT: its parser, with
    the arguments every such command takes."""
    p = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_source_arguments(p, compat=compat)
    _add_output_argument(p, output)
    return p


def _add_source_arguments(p: argparse.ArgumentParser, *, compat: bool = False) -> None:
    """SOURCE and how to read it: the same for every command that computes a map."""
    from ._inputs import COMPATS, KINDS, NAN_POLICIES

    p.add_argument(
        "outputs",
        metavar="SOURCE",
        help="model outputs: a .npy file of shape (epochs, examples, classes), float32 or "
        "float64 (needs --labels and --kind); or a long table with columns epoch, id, label and "
        "logits|probs: an Arrow IPC (.arrow, .feather, .arrows) or Parquet file, a directory "
        "(such as a fastcarto.Recorder run) or a quoted glob; or allenai/cartography's "
        "training_dynamics/ directory",
    )
    p.add_argument(
        "--labels",
        metavar="LABELS",
        help="one integer label per example: a .npy file of shape (examples,), or a .txt/.csv "
        "file with one integer per line; or 0/1 multi-label targets, a .npy file (or comma "
        "separated .csv) of shape (examples, classes). Required for a .npy SOURCE",
    )
    p.add_argument(
        "--kind",
        choices=KINDS,
        help="what SOURCE holds: logits (softmax, or sigmoid for one column) or probabilities; "
        "required for a .npy SOURCE (a long table names its column logits or probs)",
    )
    if compat:
        p.add_argument(
            "--compat",
            choices=COMPATS,
            help="reproduce a published implementation's conventions and column names",
        )
    p.add_argument(
        "--epochs",
        type=parse_epochs,
        metavar="SPEC",
        help="which epochs to use: a count '5' (the first 5), a slice '1:', '1:8', '::2', or a "
        "list '0,2,4'; write negative starts as --epochs=-3:",
    )
    p.add_argument(
        "--nan-policy",
        choices=NAN_POLICIES,
        default="raise",
        help="'raise' (default) stops at the first NaN/inf; 'omit' skips those observations",
    )
    p.add_argument(
        "--ddof",
        type=_bounded_int(0, "--ddof"),
        default=0,
        metavar="N",
        help="delta degrees of freedom of variability (default 0, the population std)",
    )
    p.add_argument(
        "--threads",
        type=_bounded_int(1, "--threads"),
        metavar="N",
        help="worker threads (default: FASTCARTO_NUM_THREADS or all cores)",
    )


def _add_output_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help=f"where to write {what}; the format follows the suffix: "
        + ", ".join(OUTPUT_FORMATS)
        + "; '-' writes CSV to standard output",
    )


def _add_quiet_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing on standard error on success"
    )


def _add_rule_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--variability-quantile",
        type=_fraction,
        default=2 / 3,
        metavar="Q",
        help="region rule: examples at or above this quantile of variability are ambiguous "
        "(default 2/3: the top third)",
    )
    p.add_argument(
        "--variability-threshold",
        type=float,
        metavar="V",
        help="region rule: a fixed variability threshold instead of the quantile",
    )
    p.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        metavar="C",
        help="region rule: of the others, confidence >= C is easy-to-learn, below "
        "hard-to-learn (default 0.5)",
    )


def _fraction(text: str) -> float:
    """An argparse ``type`` for numbers in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


# --------------------------------------------------------------------------------------------
# map


def output_format(out: str) -> str:
    """The lower-case suffix naming the format of ``out`` (``".csv"`` for ``-``).

    Raises ``ValueError`` for a suffix with no writer.
    """
    if out == "-":
        return ".csv"
    suffix = Path(out).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        known = ", ".join(OUTPUT_FORMATS)
        got = f"suffix {suffix!r}" if suffix else "no suffix"
        raise ValueError(f"{out}: unknown output format ({got}); use one of {known}, or '-'")
    return suffix


def _check_output_dir(out: str) -> None:
    """Fails before any work is done when ``out`` cannot be created."""
    if out == "-":
        return
    p = Path(out)
    if p.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), out)
    parent = p.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, f"cannot write here, directory {str(parent)!r} does not exist", out
        )


def write_table(dm: DataMap, out: str, stdout: IO[str] | None = None) -> None:
    """Writes ``dm`` to ``out`` in the format its suffix names (CSV on ``stdout`` for ``-``).

    Files are written next to ``out`` under a temporary name and renamed into place, so a failed
    or interrupted run never leaves a truncated table behind.
    """
    suffix = output_format(out)
    if out == "-":
        try:
            _write_csv_stream(dm, stdout if stdout is not None else sys.stdout)
        except BrokenPipeError:
            raise
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else _message(exc)
            raise OSError(exc.errno, f"cannot write the table: {reason}", "<stdout>") from exc
        return
    target = Path(out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        _WRITERS[suffix](dm, tmp)
        os.replace(tmp, target)
    except OSError as exc:  # name what the user asked for, not the temporary file
        reason = os.strerror(exc.errno) if exc.errno else _message(exc)
        raise OSError(exc.errno, f"cannot write the table: {reason}", out) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _write_parquet(dm: DataMap, path: Path) -> None:
    import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

    pq.write_table(dm.to_arrow(), path)


def _write_csv(dm: DataMap, path: Path) -> None:
    import pyarrow.csv as pcsv  # type: ignore[import-untyped,unused-ignore]

    pcsv.write_csv(dm.to_arrow(), path)


def _write_feather(dm: DataMap, path: Path) -> None:
    import pyarrow.feather as feather  # type: ignore[import-untyped,unused-ignore]

    # Uncompressed: readable by every Arrow implementation, and memory-mappable.
    feather.write_feather(dm.to_arrow(), path, compression="uncompressed")


def _write_jsonl(dm: DataMap, path: Path) -> None:
    # 15 significant digits is the most pandas writes; non-finite floats become null.
    dm.to_pandas().to_json(path, orient="records", lines=True, double_precision=15)


def _write_csv_stream(dm: DataMap, stream: IO[str]) -> None:
    import pyarrow.csv as pcsv  # type: ignore[import-untyped,unused-ignore]

    stream.flush()
    binary = getattr(stream, "buffer", None)
    if binary is not None:
        pcsv.write_csv(dm.to_arrow(), binary)
        binary.flush()
    else:  # a text-only stream (io.StringIO, ...)
        import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]

        sink = pa.BufferOutputStream()
        pcsv.write_csv(dm.to_arrow(), sink)
        stream.write(sink.getvalue().to_pybytes().decode("utf-8"))
        stream.flush()


_WRITERS: dict[str, Callable[[DataMap, Path], None]] = {
    ".parquet": _write_parquet,
    ".csv": _write_csv,
    ".feather": _write_feather,
    ".arrow": _write_feather,
    ".jsonl": _write_jsonl,
}


def _compute_source(args: argparse.Namespace) -> DataMap:
    """The data map of SOURCE as the source options describe it: the one place where every
    command reads its input. A ``.npy`` file of dense outputs needs ``--labels`` and ``--kind``;
    anything else goes to :func:`fastcarto.compute` as a long table (a file, a directory or a
    glob), whose labels and kind the table itself may carry."""
    from ._compute import compute

    source: str = args.outputs
    path = Path(source)
    # compute() reads a labels path with the same reader as Python's labels="labels.npy".
    labels: str | None = args.labels
    options: dict[str, Any] = {
        "kind": args.kind,
        "compat": getattr(args, "compat", None),
        "epochs": args.epochs,
        "nan_policy": args.nan_policy,
        "ddof": args.ddof,
        "threads": args.threads,
    }
    scheduler = getattr(args, "dask", None)
    if scheduler is not None:
        return _compute_on_dask(scheduler, source, labels, options)
    if path.suffix.lower() == ".npy" and not path.is_dir():
        _check_readable_file(path)
        if labels is None or args.kind is None:
            raise ValueError(
                f"{source}: a .npy SOURCE of dense outputs (epochs, examples, classes) needs "
                "--labels and --kind"
            )
        with _one_line_warnings():
            return compute(path, labels, **options)
    if not _GLOB.search(source) and not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), source)
    if args.kind is None:
        _check_kind_given(source)
    progress = not args.quiet and sys.stderr.isatty()
    with _one_line_warnings():
        return compute(source, labels, progress=progress, **options)


def _compute_on_dask(
    scheduler: str, source: str, labels: str | None, options: dict[str, Any]
) -> DataMap:
    """``map --dask SCHEDULER``: :func:`fastcarto.dask.compute` on that cluster."""
    try:
        from distributed import Client

        from .dask import compute as dask_compute
    except ImportError as err:
        raise ValueError("--dask needs the dask extra: pip install 'fastcarto[dask]'") from err
    with Client(scheduler) as client, _one_line_warnings():
        return dask_compute(source, labels, client=client, **options)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Shows the warnings of the computation (such as ``KindWarning``) as one line
    ``fastcarto: warning: ...`` on standard error, not as Python's source-line report."""

    def show(message: Warning | str, *_: object, **__: object) -> None:
        text = " ".join(str(message).split())
        print(f"{PROG}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


_GLOB = re.compile(r"[*?\[]")


def _check_kind_given(source: str) -> None:
    """Refuses per-epoch ``.npy`` arrays without ``--kind`` (a long table names its outputs
    column), in the command's words rather than the API's."""
    from . import _core

    if all(fmt == "npy" for _, fmt, _, _ in _core.discover(source)):
        raise ValueError(f"{source}: .npy arrays of outputs need --kind (logits or probs)")


def _check_output(out: str) -> None:
    """Fails on a bad OUT before the (possibly long) computation."""
    output_format(out)
    _check_output_dir(out)


#: Figure formats ``--plot`` writes, by suffix.
PLOT_FORMATS = (".png", ".pdf", ".svg")


def _check_plot(path: str) -> None:
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        got = f"suffix {suffix!r}" if suffix else "no suffix"
        raise ValueError(
            f"{path}: unknown image format ({got}); use one of {', '.join(PLOT_FORMATS)}"
        )
    _check_output_dir(path)


def _report(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(f"{PROG}: {message}", file=sys.stderr)


def _where(out: str) -> str:
    return "standard output" if out == "-" else out


def _run_map(args: argparse.Namespace) -> int:
    """``fastcarto map``: compute the data map and write it (and its picture)."""
    out: str = args.output
    _check_output(out)
    if args.plot is not None:
        if args.compat is not None:
            raise ValueError(
                "--plot draws fastcarto's own columns; it cannot be combined with --compat"
            )
        _check_plot(args.plot)

    dm = _compute_source(args)
    write_table(dm, out)
    _report(args, f"{dm!r} -> {_where(out)}")
    if args.plot is not None:
        _save_figure(dm.plot(), args.plot)
        _report(args, f"data map -> {args.plot}")
    return EXIT_OK


def _save_figure(fig: Any, path: str) -> None:
    """Writes ``fig`` under a temporary name and renames it into place."""
    target = Path(path)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    try:
        fig.savefig(tmp, dpi=150)
        os.replace(tmp, target)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else _message(exc)
        raise OSError(exc.errno, f"cannot write the figure: {reason}", path) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _with_columns(dm: DataMap, table: Any) -> DataMap:
    """A :class:`DataMap` around ``table`` (any Arrow table), for the table writers."""
    from ._datamap import DataMap

    return DataMap(table, kind=dm.kind, compat=dm.compat)


def _rule(args: argparse.Namespace) -> Any:
    from ._regions import RegionRule

    return RegionRule(
        variability_quantile=args.variability_quantile,
        variability=args.variability_threshold,
        confidence=args.confidence_threshold,
    )


def _run_select(args: argparse.Namespace) -> int:
    """``fastcarto select``: the examples of a region, or a ranked fraction."""
    import pyarrow as pa

    from ._regions import REGION_SELECTION, select_rows

    out: str = args.output
    if args.metric is not None and args.fraction is None:
        raise ValueError("--metric needs --fraction (the share of examples to select)")
    if args.region is not None and (args.worst or args.both_ends):
        raise ValueError("--worst and --both-ends go with --metric, not --region")
    rule = _rule(args)
    _check_output(out)

    dm = _compute_source(args)
    regions = dm.regions(rule)
    if args.region is not None and args.fraction is None:
        rows = np.flatnonzero((regions == args.region).to_numpy())
        how = f"region {args.region} ({rule.describe(dm['variability'])})"
    else:
        if args.region is not None:
            metric, worst = REGION_SELECTION[args.region]
            both_ends = False
            how = f"{args.region}: {args.fraction:g} of the examples by {metric}"
        else:
            metric, worst, both_ends = args.metric, args.worst, args.both_ends
            how = f"{args.fraction:g} of the examples by {metric}"
            how += " (worst)" if worst else ""
            how += " (both ends)" if both_ends else ""
        rows = select_rows(dm, metric, args.fraction, worst=worst, both_ends=both_ends)
    table = dm.to_arrow().take(pa.array(rows, type=pa.int64()))
    region_column = pa.array(regions.astype(object).to_numpy()[rows], type=pa.string())
    selected = _with_columns(dm, table.append_column("region", region_column))
    write_table(selected, out)
    _report(args, f"selected {len(rows):,} of {len(dm):,} examples, {how} -> {_where(out)}")
    return EXIT_OK


def _run_issues(args: argparse.Namespace) -> int:
    """``fastcarto issues``: the examples whose label looks wrong."""
    import pyarrow as pa

    out: str = args.output
    if args.threshold_mask is None and args.percentile != 99.0:
        raise ValueError("--percentile applies with --threshold-mask")
    if not 0.0 <= args.percentile <= 100.0:
        raise ValueError(f"--percentile must lie in [0, 100], got {args.percentile:g}")
    _check_output(out)
    mask = None
    if args.threshold_mask is not None:
        mask = read_labels(args.threshold_mask)
        if mask.ndim != 1 or not np.isin(mask, (0, 1)).all():
            raise ValueError(
                f"{args.threshold_mask}: the threshold mask must hold one 0/1 (or boolean) "
                "value per example"
            )
        mask = mask.astype(bool)

    dm = _compute_source(args)
    issues = dm.label_issues(method=args.method, threshold_mask=mask, percentile=args.percentile)
    n_flagged = int(issues["is_label_issue"].sum())
    if not args.all:
        issues = issues[issues["is_label_issue"]].sort_values("label_score", kind="stable")
    table = pa.Table.from_pandas(issues, preserve_index=False)
    write_table(_with_columns(dm, table), out)
    _report(
        args,
        f"{n_flagged:,} of {len(dm):,} examples flagged as label issues"
        f" ({100 * n_flagged / max(len(dm), 1):.1f}%) -> {_where(out)}",
    )
    return EXIT_OK


def _issue_types(spec: str | None) -> dict[str, dict[str, Any]] | None:
    """``--issue-types``: names separated by commas, or a JSON object of parameters."""
    import json

    if spec is None:
        return None
    if spec.lstrip().startswith("{"):
        try:
            parsed = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--issue-types is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
            raise ValueError(
                '--issue-types as JSON must map each type to its parameters: {"outlier": {}}'
            )
        return parsed
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ValueError("--issue-types names no issue type")
    return {name: {} for name in names}


def _run_audit(args: argparse.Namespace) -> int:
    """``fastcarto audit``: the Datalab's issues, summary and report, written into OUTDIR."""
    from ._compute import compute
    from ._datalab import Datalab

    if args.dynamics_kind is not None and args.dynamics is None:
        raise ValueError("--dynamics-kind applies with --dynamics")
    issue_types = _issue_types(args.issue_types)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out))
    labels = read_labels(args.labels)
    if labels.ndim != 1:
        raise ValueError(f"{args.labels}: the audit takes one label per example, shape (examples,)")
    for option, path in (("--features", args.features), ("--pred-probs", args.pred_probs)):
        if path is not None:
            if Path(path).suffix.lower() != ".npy":
                raise ValueError(f"{option} must be a .npy file, got {path}")
            _check_readable_file(Path(path))
    lab = Datalab({"label": labels}, label_name="label", verbosity=0 if args.quiet else 1)
    dynamics: Any = args.dynamics
    if dynamics is not None and Path(dynamics).suffix.lower() == ".npy":
        if args.dynamics_kind is None:
            raise ValueError("a .npy --dynamics needs --dynamics-kind logits or probs")
        dynamics = compute(dynamics, lab.labels, kind=args.dynamics_kind, progress=not args.quiet)
    pred_probs = None if args.pred_probs is None else np.load(args.pred_probs, mmap_mode="r")
    lab.find_issues(
        features=args.features, pred_probs=pred_probs, dynamics=dynamics, issue_types=issue_types
    )

    out.mkdir(parents=True, exist_ok=True)
    issues = lab.issues
    if args.format == "csv":
        issues.to_csv(out / "issues.csv", index_label="example")
        table_name = "issues.csv"
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = issues.reset_index(names="example")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out / "issues.parquet")
        table_name = "issues.parquet"
    summary = lab.get_issue_summary()
    summary.to_csv(out / "summary.csv", index=False)
    (out / "report.txt").write_text(lab.get_report(num_examples=args.num_examples) + "\n")
    counts = zip(summary["issue_type"], summary["num_issues"], strict=True)
    found = ", ".join(f"{t} {c:,}" for t, c in counts)
    _report(
        args,
        f"{len(issues):,} examples audited ({found}) -> "
        f"{out}/{{{table_name},summary.csv,report.txt}}",
    )
    return EXIT_OK


def _run_demo(args: argparse.Namespace) -> int:
    """``fastcarto demo``: the whole job on scikit-learn's digits."""
    from ._demo import run_demo

    run_demo(
        args.out,
        noise=args.noise,
        epochs=args.epochs,
        seed=args.seed,
        stream=None if args.quiet else sys.stdout,
    )
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# entry point


def _message(exc: BaseException) -> str:
    """A one-line description of ``exc`` for a CLI user: an error that names an argument of
    the Python API (see ``_arguments``) names the command's option instead."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = spelled(exc, _option) or str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the message holds


#: The API's arguments that the commands take as options of the same name.
_OPTIONS = ("kind", "compat", "nan_policy", "epochs", "ddof", "threads")


def _option(argument: str, value: Any) -> tuple[str, str] | None:
    """``argument=value`` as this command line writes it (``--nan-policy omit``), and the value
    alone; None for an argument the commands do not take."""
    if argument not in _OPTIONS:
        return None
    if isinstance(value, slice):
        parts = (value.start, value.stop, value.step)
        start, stop, step = ("" if v is None else str(v) for v in parts)
        text = repr(f"{start}:{stop}" + (f":{step}" if step else ""))
    elif isinstance(value, (list, tuple)):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    return f"--{argument.replace('_', '-')} {text}", text


def _unrecognized(args: argparse.Namespace, extra: list[str]) -> str:
    """The usage error for arguments no option takes: several SOURCE paths are what the shell
    makes of an unquoted glob, so say to quote it."""
    source = getattr(args, "outputs", None)
    if source is None or any(a.startswith("-") for a in extra):
        return f"unrecognized arguments: {' '.join(extra)}"
    paths = [Path(p) for p in (source, *extra)]
    parents = {p.parent for p in paths}
    suffixes = {p.suffix for p in paths}
    if len(parents) == 1 and len(suffixes) == 1:
        pattern = str(paths[0].parent / f"*{paths[0].suffix}")
    else:
        pattern = "runs/*.parquet"
    return (
        f"SOURCE is one path, got {len(paths)} ({source}, {extra[0]}"
        + (", ..." if len(extra) > 1 else "")
        + f"): a glob left unquoted is expanded by the shell; quote the pattern ('{pattern}') "
        "so fastcarto expands it, or pass the directory"
    )


def _debug() -> bool:
    return os.environ.get("FASTCARTO_DEBUG", "").strip() not in ("", "0")


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``fastcarto`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status instead of exiting: 0 on success, 2 for a usage error or bad input
    (one line ``fastcarto: error: ...`` on standard error), 130 after Ctrl-C and 1 for an
    unexpected failure. With ``FASTCARTO_DEBUG=1`` in the environment, exceptions propagate
    with their traceback.
    """
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            parser.error(_unrecognized(args, extra))
    except SystemExit as exc:  # --help, --version and usage errors
        code = exc.code
        if code is None or isinstance(code, int):
            return code or EXIT_OK
        print(code, file=sys.stderr)
        return EXIT_FAILURE

    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        if _debug():
            raise
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader of standard output went away (`fastcarto map ... -o - | head`): stop
        # quietly, and keep Python from complaining again when it flushes stdout at exit.
        if _debug():
            raise
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except Exception:  # no real stdout (captured, closed, None): nothing to silence
            pass
        return EXIT_FAILURE
    except (ValueError, TypeError, OSError, ImportError) as exc:  # FastcartoError: ValueError
        if _debug():
            raise
        return _fail(_message(exc), EXIT_USAGE)
    except Exception as exc:
        if _debug():
            raise
        return _fail(
            f"unexpected {type(exc).__name__}: {_message(exc)} "
            "(run with FASTCARTO_DEBUG=1 for the traceback)",
            EXIT_FAILURE,
        )
    except BaseException as exc:
        # A Rust panic surfaces as pyo3's PanicException, a BaseException; SystemExit passes.
        if isinstance(exc, (SystemExit, GeneratorExit)) or _debug():
            raise
        return _fail(
            f"internal error ({type(exc).__name__}): {_message(exc)} "
            "(run with FASTCARTO_DEBUG=1 for the traceback)",
            EXIT_FAILURE,
        )
