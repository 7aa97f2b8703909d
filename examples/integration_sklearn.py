"""Training dynamics of a scikit-learn partial_fit classifier on digits, 10% of labels flipped.

python examples/integration_sklearn.py [--out out/sklearn-dynamics]
"""

from __future__ import annotations

import argparse

import fastcarto.sklearn
import numpy as np
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default="out/sklearn-dynamics")
args = parser.parse_args()

X, y = load_digits(return_X_y=True)
rng = np.random.default_rng(0)
flipped = rng.random(len(y)) < 0.1
y = np.where(flipped, (y + rng.integers(1, 10, len(y))) % 10, y)

model = MLPClassifier(hidden_layer_sizes=(64,), random_state=0)
dm = fastcarto.sklearn.fit_epochs(model, X / 16, y, epochs=30, path=args.out, mode="overwrite")
print(dm.regions().value_counts())
flagged = dm.label_issues()["is_label_issue"].to_numpy()
print(
    f"{flipped.sum()} labels flipped; {flagged.sum()} flagged, {(flagged & flipped).sum()} rightly"
)
print(f"recorded to {args.out}: fastcarto.compute({args.out!r}) reads it back")
