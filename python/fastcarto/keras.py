"""Training dynamics from a Keras 3 training (any backend): :class:`DynamicsCallback`.

model.fit(x, y, epochs=10, callbacks=[fastcarto.keras.DynamicsCallback("runs/dyn", x, y)])
dm = fastcarto.compute("runs/dyn")
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any, Literal

import keras
import numpy as np

from ._inputs import check_positive
from ._recorder import Mode, Recorder

__all__ = ["DynamicsCallback"]


class DynamicsCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Records the model's outputs on the training set at the end of every epoch.

    Predicts ``x`` (in order, unshuffled, in inference mode) and records the outputs with
    labels ``y`` and ids ``0..len(x)-1`` to ``path`` through :class:`fastcarto.Recorder`.

    This is an epoch-end pass (as Data-IQ does), not the outputs of the training steps: Keras
    does not hand those to callbacks. The prediction does not disturb training: Python's,
    numpy's and (torch backend) torch's random states are restored after it, and inference
    mode draws no dropout masks.

    Parameters
    ----------
    path:
        Directory of the recording.
    x, y:
        The training inputs (an array, or a dict/list of arrays for several inputs; or a
        ``keras.utils.PyDataset`` of the input batches in order, predicted with
        ``model.predict``) and their integer labels (one-hot labels: pass ``y.argmax(1)``).
    kind:
        ``"logits"`` or ``"probs"``; by default ``"probs"`` when the last layer's activation
        is softmax or sigmoid, else ``"logits"``.
    batch_size:
        Rows per forward pass of the prediction (``predict_on_batch``; default 1024: larger
        passes cost less per row, as long as they fit in the device's memory).
    mode:
        The recorder's ``mode``; ``"append"`` continues an earlier recording (a resumed
        ``fit(initial_epoch=...)``: the epochs are Keras's).

    Raises
    ------
    ValueError
        Labels that are not one per example, ``batch_size < 1``; during training, a model
        that predicts another number of rows than ``y`` has.
    FileExistsError
        ``path`` already holds a recording (``mode="create"``).

    Examples
    --------
    >>> import tempfile, keras, numpy as np, fastcarto, fastcarto.keras
    >>> keras.utils.set_random_seed(0)
    >>> x = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int64")
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4, activation="relu"),
    ...                           keras.layers.Dense(2)])
    >>> model.compile(optimizer="sgd",
    ...               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     callback = fastcarto.keras.DynamicsCallback(tmp + "/dynamics", x, y)
    ...     _ = model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[callback])
    ...     dm = fastcarto.compute(tmp + "/dynamics")
    >>> callback.recorder.kind, len(dm), dm.to_pandas()["n_epochs"].unique().tolist()
    ('logits', 8, [2])
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        x: Any,
        y: Any,
        *,
        kind: Literal["logits", "probs"] | None = None,
        batch_size: int = 1024,
        mode: Mode = "create",
    ) -> None:
        super().__init__()
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise ValueError(
                f"y must hold one integer label per example, shape (examples,), got "
                f"{labels.shape} (one-hot labels: pass y.argmax(1))"
            )
        self.path = path
        self.x = x
        self.labels = labels
        self.kind = kind
        self.batch_size = check_positive("batch_size", batch_size)
        self.mode: Mode = mode
        self.recorder: Recorder | None = None

    def on_train_begin(self, logs: Any = None) -> None:
        """Opens the recording (its ``kind`` from the model's last activation if not given)."""
        kind = self.kind or _kind_of(self.model)
        n = self.labels.shape[0]
        self.recorder = Recorder(self.path, kind=kind, n_examples=n, mode=self.mode)
        self._ids = np.arange(n, dtype=np.int64)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        """Predicts ``x`` and records the outputs as epoch ``epoch``."""
        assert self.recorder is not None
        state = _random_states()
        try:
            out = self._predict()
        finally:
            _restore(state)
        if out.ndim == 1:
            out = out[:, None]
        if out.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"the model predicted {out.shape[0]} rows for {self.labels.shape[0]} labels: "
                "x and y must be the same examples"
            )
        self.recorder.record(out, self.labels, epoch=int(epoch), ids=self._ids)
        self.recorder.end_epoch(int(epoch))

    def _predict(self) -> np.ndarray[Any, Any]:
        """The model's outputs on ``x``, in order: ``predict_on_batch`` on slices of
        ``batch_size`` rows (the values ``predict`` gives, without its per-call machinery of
        data adapters, iterators and callbacks, which costs more than a small model's pass)."""
        leaves = keras.tree.flatten(self.x)
        if not leaves or not all(hasattr(a, "shape") for a in leaves):
            # Not arrays (a keras.utils.PyDataset, a tf.data.Dataset of batches in order):
            # `predict` iterates it.
            return np.asarray(self.model.predict(self.x, batch_size=self.batch_size, verbose=0))
        n = len(leaves[0])  # x's rows (checked against y's afterwards)
        chunks = []
        for start in range(0, max(n, 1), self.batch_size):
            part = keras.tree.map_structure(
                lambda a, start=start: a[start : start + self.batch_size], self.x
            )
            chunks.append(np.asarray(keras.ops.convert_to_numpy(self.model.predict_on_batch(part))))
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def on_train_end(self, logs: Any = None) -> None:
        """Closes the recording."""
        if self.recorder is not None:
            self.recorder.close()


def _kind_of(model: Any) -> Literal["logits", "probs"]:
    layers = getattr(model, "layers", None) or []
    activation = getattr(layers[-1], "activation", None) if layers else None
    name = getattr(activation, "__name__", "")
    return "probs" if name in ("softmax", "sigmoid") else "logits"


def _random_states() -> tuple[Any, Any, Any]:
    torch = sys.modules.get("torch")
    torch_state = torch.get_rng_state() if torch is not None else None
    # The legacy global state is what training code seeded with np.random.seed uses.
    return random.getstate(), np.random.get_state(), torch_state  # noqa: NPY002


def _restore(state: tuple[Any, Any, Any]) -> None:
    py, np_state, torch_state = state
    random.setstate(py)
    np.random.set_state(np_state)  # noqa: NPY002
    if torch_state is not None:
        sys.modules["torch"].set_rng_state(torch_state)
