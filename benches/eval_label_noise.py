"""How well does fastcarto find wrong labels? Digits with injected label noise, against cleanlab.

For each noise level, a fraction of scikit-learn's digits labels is flipped uniformly to another
class, and four detectors are scored by precision, recall and F1 of their flags against the
known flips:

- **fastcarto (count, default)**: the default rule of ``DataMap.label_issues()`` (confident
  learning's estimate of how many labels are wrong, that many lowest-AUM examples flagged), from
  one training run of an ``MLPClassifier`` (one ``partial_fit`` per epoch, logits recorded after
  each epoch);
- **fastcarto (AUM < 0)**: ``label_issues(method="aum")`` on the same run's map;
- **fastcarto + threshold samples**: Pleiss et al.'s 99th-percentile AUM threshold, from two runs
  with disjoint threshold samples (each example judged in the run where it is not one);
- **cleanlab**: ``cleanlab.filter.find_label_issues`` (defaults) on out-of-sample probabilities
  from ``cross_val_predict`` (5 stratified folds, ``method="predict_proba"``) of the same model
  class with the same hyperparameters and number of epochs (``fit`` with ``max_iter=epochs``,
  early stopping off).

Each cell is the mean over ``--seeds`` (noise draw, network initialization and folds all follow
the seed). Needs the ``bench`` extra: ``python -m pip install '.[bench]'``.

    python benches/eval_label_noise.py               # docs/datamaps.md's table (30 epochs, 3 seeds)
    python benches/eval_label_noise.py --epochs 150 --seeds 0  # long training: memorization
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import fastcarto
import numpy as np
from fastcarto._demo import (
    BATCH_SIZE,
    HIDDEN_UNITS,
    LEARNING_RATE,
    noisy_digits,
    precision_recall,
    train_and_map,
)

N_CLASSES = 10


def scores(flagged: np.ndarray[Any, Any], truth: np.ndarray[Any, Any]) -> tuple[float, ...]:
    precision, recall = precision_recall(flagged, truth)
    if not np.isfinite(precision):
        precision = 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# One training run per (noise, seed) serves both single-run rules; its time counts for each.
_RUNS: dict[tuple[bytes, int, int], tuple[fastcarto.DataMap, float]] = {}


def fastcarto_rule(
    x: Any, noisy: Any, epochs: int, seed: int, method: str
) -> tuple[np.ndarray[Any, Any], float]:
    key = (noisy.tobytes(), epochs, seed)
    if key not in _RUNS:
        start = time.perf_counter()
        dm = train_and_map(x, noisy, epochs=epochs, seed=seed)
        _RUNS[key] = dm, time.perf_counter() - start
    dm, trained = _RUNS[key]
    start = time.perf_counter()
    flags = dm.label_issues(method=method)["is_label_issue"].to_numpy(dtype=bool)
    return flags, trained + time.perf_counter() - start


def fastcarto_threshold(x: Any, noisy: Any, epochs: int, seed: int) -> np.ndarray[Any, Any]:
    flags = []
    masks = []
    for run in range(2):
        exclude = masks[0] if masks else None
        targets, mask = fastcarto.threshold_samples(
            noisy, N_CLASSES, seed=seed * 1000 + run, exclude=exclude
        )
        dm = train_and_map(x, targets, epochs=epochs, seed=seed, n_classes=N_CLASSES + 1)
        flags.append(dm.label_issues(threshold_mask=mask)["is_label_issue"].to_numpy(dtype=bool))
        masks.append(mask)
    return np.where(masks[0], flags[1], flags[0])


def timed(detector: Any, *args: Any) -> tuple[np.ndarray[Any, Any], float]:
    """A detector's flags and the seconds it took (training included)."""
    start = time.perf_counter()
    flags = detector(*args)
    return flags, time.perf_counter() - start


def cleanlab_cv(x: Any, noisy: Any, epochs: int, seed: int, folds: int) -> np.ndarray[Any, Any]:
    from cleanlab.filter import find_label_issues
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=(HIDDEN_UNITS,),
        batch_size=BATCH_SIZE,
        learning_rate_init=LEARNING_RATE,
        random_state=seed,
        max_iter=epochs,
        n_iter_no_change=epochs + 1,  # exactly `epochs` passes, as the partial_fit runs
    )
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probs = cross_val_predict(model, x, noisy, cv=cv, method="predict_proba")
    return np.asarray(find_label_issues(noisy, probs), dtype=bool)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--noise", default="0.1,0.2,0.3,0.4", help="comma-separated noise levels")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds to average over")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    noises = [float(v) for v in args.noise.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]

    methods = {
        "fastcarto (count, default)": lambda x, y, s: fastcarto_rule(x, y, args.epochs, s, "count"),
        "fastcarto (AUM < 0)": lambda x, y, s: fastcarto_rule(x, y, args.epochs, s, "aum"),
        "fastcarto + threshold samples": lambda x, y, s: timed(
            fastcarto_threshold, x, y, args.epochs, s
        ),
        f"cleanlab ({args.folds}-fold CV)": lambda x, y, s: timed(
            cleanlab_cv, x, y, args.epochs, s, args.folds
        ),
    }
    runs = {
        "fastcarto (count, default)": 1,
        "fastcarto (AUM < 0)": 1,
        "fastcarto + threshold samples": 2,
        f"cleanlab ({args.folds}-fold CV)": args.folds,
    }
    print(
        f"digits (1,797 examples, 10 classes), MLPClassifier({HIDDEN_UNITS} hidden units, "
        f"batch {BATCH_SIZE}, lr {LEARNING_RATE:g}), {args.epochs} epochs; "
        f"mean over seeds {seeds}"
    )
    print()
    print("| noise | detector | training runs | precision | recall | F1 | seconds |")
    print("|---|---|---|---|---|---|---|")
    for noise in noises:
        for name, method in methods.items():
            results = []
            elapsed = 0.0
            for seed in seeds:
                x, noisy, true = noisy_digits(noise, seed)
                flagged, seconds = method(x, noisy, seed)
                elapsed += seconds
                results.append(scores(flagged, noisy != true))
            p, r, f = np.mean(results, axis=0)
            print(
                f"| {100 * noise:.0f}% | {name} | {runs[name]} | {p:.3f} | {r:.3f} | {f:.3f} | "
                f"{elapsed / len(seeds):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
