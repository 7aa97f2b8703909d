"""Training dynamics of XGBoost, LightGBM and CatBoost on digits (10% of labels flipped): each
boosting round is an epoch, mapped from the trained model.

    python examples/integration_boosting.py [--out out/boosting] [--rounds 50]
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default="out/boosting")
parser.add_argument("--rounds", type=int, default=50)
args = parser.parse_args()

X, y = load_digits(return_X_y=True)
rng = np.random.default_rng(0)
flipped = rng.random(len(y)) < 0.1
y = np.where(flipped, (y + rng.integers(1, 10, len(y))) % 10, y)


def train(lib: str):
    if lib == "xgboost":
        import xgboost

        return xgboost.XGBClassifier(n_estimators=args.rounds, max_depth=3).fit(X, y)
    if lib == "lightgbm":
        import lightgbm

        return lightgbm.LGBMClassifier(
            n_estimators=args.rounds, num_leaves=4, learning_rate=0.05, verbose=-1
        ).fit(X, y)
    import catboost

    return catboost.CatBoostClassifier(
        iterations=args.rounds, depth=4, verbose=0, allow_writing_files=False
    ).fit(X, y)


for lib in ("xgboost", "lightgbm", "catboost"):
    model = train(lib)
    mapper = importlib.import_module(f"fastcarto.{lib}")
    out = Path(args.out) / lib
    dm = mapper.datamap(model, X, y, every=5, path=out, mode="overwrite")
    flagged = dm.label_issues()["is_label_issue"].to_numpy()
    print(
        f"{lib}: {dm.to_pandas()['n_epochs'].max()} epochs of 5 rounds; "
        f"{flagged.sum()} labels flagged, {(flagged & flipped).sum()} of the {flipped.sum()} "
        f"flipped; recorded to {out}"
    )
