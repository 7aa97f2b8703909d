"""A Keras 3 training (torch backend by default here) recording its training dynamics with
DynamicsCallback: each epoch ends with a prediction of the training set in order.

    python examples/integration_keras.py [--out out/keras] [--epochs 10]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import fastcarto
import fastcarto.keras
import keras
from sklearn.datasets import load_digits

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default="out/keras")
parser.add_argument("--epochs", type=int, default=10)
args = parser.parse_args()

X, y = load_digits(return_X_y=True)
X = X / 16
model = keras.Sequential(
    [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)]
)
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(
    X,
    y,
    epochs=args.epochs,
    batch_size=64,
    verbose=0,
    callbacks=[fastcarto.keras.DynamicsCallback(args.out, X, y, mode="overwrite")],
)
print(fastcarto.compute(args.out).regions().value_counts())
