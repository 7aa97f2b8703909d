"""``fastcarto datamodels fit|explain|demo``: datamodels from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

_DESCRIPTION = """\
Datamodels (Ilyas et al., 2022): which training examples cause a model's
outputs. 'fit' fits one sparse linear model per target from the masks of the
training subsets (models x training examples, bool .npy) to the models' outputs
(models x targets, float .npy); 'explain' shows what a fitted datamodel says
about one target; 'demo' runs the whole job on scikit-learn's digits.
"""

_EXAMPLES = """\
examples:
  fastcarto datamodels fit masks.npy outputs.npy -o model/
  fastcarto datamodels explain model/ --target 3 -k 5
  fastcarto datamodels explain model/ --masks heldout_masks.npy --outputs heldout_outputs.npy
  fastcarto datamodels demo --out dm-demo --models 2000 --heldout 300
"""


def add_command(
    commands: Any,
    bounded_int: Callable[[int, str], Callable[[str], int]],
    add_quiet: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Adds ``datamodels`` and its subcommands to the ``fastcarto`` parser's ``commands``."""
    from ._demo import FILES

    dm = commands.add_parser(
        "datamodels",
        help="fit and query datamodels: which training examples cause each prediction",
        description=_DESCRIPTION,
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = dm.add_subparsers(dest="datamodels_command", metavar="SUBCOMMAND", required=True)

    f = sub.add_parser(
        "fit",
        help="fit datamodels from masks and outputs",
        description="Fit one datamodel per target (see fastcarto.datamodels.fit).",
    )
    f.add_argument(
        "masks",
        metavar="MASKS",
        help="(models, training examples) bool .npy; uint8 numpy.packbits rows with --n-train",
    )
    f.add_argument("outputs", metavar="OUTPUTS", help="(models, targets) float .npy")
    f.add_argument(
        "-o", "--out", required=True, metavar="DIR", help="directory to write the model to"
    )
    f.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="last fraction of the models held out to choose λ (default 0.1)",
    )
    f.add_argument(
        "--lam",
        type=float,
        default=None,
        metavar="λ",
        help="fit every target at this λ instead of choosing it",
    )
    f.add_argument("--n-lambdas", type=bounded_int(1, "--n-lambdas"), default=100, metavar="N")
    f.add_argument("--patience", type=bounded_int(1, "--patience"), default=5, metavar="N")
    f.add_argument(
        "--n-train",
        type=bounded_int(1, "--n-train"),
        default=None,
        metavar="N",
        help="MASKS are bit-packed rows of N training examples",
    )
    f.add_argument("--threads", type=bounded_int(1, "--threads"), default=None, metavar="N")
    add_quiet(f)
    f.set_defaults(handler=_run_fit)

    e = sub.add_parser(
        "explain",
        help="what a fitted datamodel says about targets",
        description="Most helpful and harmful training examples of a target, its "
        "brittleness, and the LDS on held-out models.",
    )
    e.add_argument("model", metavar="DIR", help="a directory written by 'datamodels fit'")
    e.add_argument(
        "--target",
        type=bounded_int(0, "--target"),
        action="append",
        default=None,
        metavar="T",
        help="target index (repeatable; default: the first 3)",
    )
    e.add_argument(
        "-k",
        type=bounded_int(1, "-k"),
        default=10,
        metavar="K",
        help="training examples to list per direction (default 10)",
    )
    e.add_argument("--masks", metavar="MASKS", help="held-out masks .npy, for the LDS")
    e.add_argument("--outputs", metavar="OUTPUTS", help="held-out outputs .npy, for the LDS")
    e.set_defaults(handler=_run_explain)

    d = sub.add_parser(
        "demo",
        help="datamodels of scikit-learn's digits, end to end",
        description="Train logistic regressions on random halves of 1,000 digits, fit "
        "datamodels of the other digits' margins, report the LDS and draw the most helpful "
        "and harmful training digits. Needs scikit-learn.\n\nfiles written into DIR:\n"
        + "\n".join(f"  {name:<16}{what}" for name, what in FILES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--out", default="fastcarto-datamodels-demo", metavar="DIR")
    d.add_argument("--models", type=bounded_int(10, "--models"), default=5000, metavar="N")
    d.add_argument("--heldout", type=bounded_int(3, "--heldout"), default=1000, metavar="N")
    d.add_argument("--train", type=bounded_int(10, "--train"), default=1000, metavar="N")
    d.add_argument("--jobs", type=int, default=None, metavar="N", help="joblib n_jobs")
    d.add_argument("--seed", type=bounded_int(0, "--seed"), default=0, metavar="N")
    add_quiet(d)
    d.set_defaults(handler=_run_demo)


def _run_fit(args: argparse.Namespace) -> int:
    from ._model import fit

    t0 = time.perf_counter()
    model = fit(
        args.masks,
        args.outputs,
        val_fraction=args.val_fraction,
        lam=args.lam,
        n_lambdas=args.n_lambdas,
        patience=args.patience,
        n_train=args.n_train,
        threads=args.threads,
    )
    seconds = time.perf_counter() - t0
    model.save(args.out)
    if not args.quiet:
        nnz = (model.weights != 0).sum(0)
        print(
            f"datamodels of {model.n_targets} targets over {model.n_train} training examples "
            f"in {seconds:.2f} s; median {int(np.median(nnz))} non-zero weights per target; "
            f"{int((~model.converged).sum())} not converged; written to {args.out}"
        )
    return 0


def _run_explain(args: argparse.Namespace) -> int:
    from ._model import Datamodel, lds

    model = Datamodel.load(args.model)
    if (args.masks is None) != (args.outputs is None):
        raise ValueError("the LDS needs both --masks and --outputs")
    if args.masks is not None:
        print(f"LDS on held-out models: {lds(model, args.masks, args.outputs):.4f}")
    targets = args.target if args.target is not None else list(range(min(3, model.n_targets)))
    for t in targets:
        if t >= model.n_targets:
            raise ValueError(f"--target {t} is out of range for {model.n_targets} targets")
        inf = model.most_influential(t, k=args.k)
        print(
            f"target {t}: bias {model.bias[t]:.4g}, λ {model.lam[t]:.3g}, "
            f"mean output {model.mean_output[t]:.4g}"
        )
        print(
            "  most helpful: "
            + ", ".join(
                f"{i} ({w:+.3g})" for i, w in zip(inf.helpful, inf.helpful_weights, strict=True)
            )
        )
        print(
            "  most harmful: "
            + ", ".join(
                f"{i} ({w:+.3g})" for i, w in zip(inf.harmful, inf.harmful_weights, strict=True)
            )
        )
        flip = model.brittleness(t)
        print(
            "  brittleness: "
            + (
                "no set of training examples flips it"
                if flip is None
                else f"removing {flip.size} examples flips it"
            )
        )
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    run_demo(
        args.out,
        n_models=args.models,
        n_heldout=args.heldout,
        n_train=args.train,
        seed=args.seed,
        n_jobs=args.jobs,
        stream=None if args.quiet else sys.stdout,
    )
    return 0
