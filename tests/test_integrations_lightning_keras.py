"""fastcarto.lightning and fastcarto.keras on 2-layer networks: every example recorded once per
epoch, ids kept, the map equals fastcarto.compute on outputs gathered by hand, bit-identical
training with and without recording, and bad input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa
import pytest
from helpers import assert_maps_equal, raises

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")

N, EPOCHS = 60, 3

pytestmark = [
    # Lightning's own use of torch's pytree, and its advice on dataloader workers.
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    # Keras 3's torch backend converting its predictions (numpy 2's copy= protocol).
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
]


def data() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g)
    y = ((x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()).clone()
    return x, y


# ---------------------------------------------------------------------------------------------
# Lightning


def lightning_run(tmp_path: Path, callbacks: list[Any], returns: str = "dict") -> tuple[Any, Any]:
    L = pytest.importorskip("lightning")
    from fastcarto.torch import IndexedDataset

    gathered: dict[tuple[int, int], np.ndarray] = {}

    class Net(L.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
            )

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y, idx = batch
            logits = self.net(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            for i, row in zip(idx.tolist(), logits.detach().numpy(), strict=True):
                gathered[(self.current_epoch, i)] = row
            if returns == "loss":
                return loss
            if returns == "nolabels":
                return {"loss": loss, "logits": logits, "ids": idx}
            return {"loss": loss, "logits": logits, "labels": y, "ids": idx}

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    L.seed_everything(0, verbose=False)
    x, y = data()
    loader = torch.utils.data.DataLoader(
        IndexedDataset(torch.utils.data.TensorDataset(x, y)), batch_size=8, shuffle=True
    )
    model = Net()
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accumulate_grad_batches=2,
        callbacks=callbacks,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, loader)
    return model, gathered


def test_lightning_callback(tmp_path: Path) -> None:
    fl = pytest.importorskip("fastcarto.lightning")
    model, gathered = lightning_run(tmp_path, [fl.DynamicsCallback(tmp_path / "dyn")])
    plain, _ = lightning_run(tmp_path, [])
    for (name, w), (_, v) in zip(
        model.state_dict().items(), plain.state_dict().items(), strict=True
    ):
        assert torch.equal(w, v), name
    dm = fastcarto.compute(tmp_path / "dyn")
    df = dm.to_pandas()
    assert df["id"].tolist() == list(range(N)) and (df["n_epochs"] == EPOCHS).all()
    dense = np.stack([np.stack([gathered[(e, i)] for i in range(N)]) for e in range(EPOCHS)])
    expected = fastcarto.compute(dense, data()[1].numpy(), kind="logits")
    assert_maps_equal(dm, expected, exact=True)
    with raises(FileExistsError, "mode='overwrite'"):
        lightning_run(tmp_path, [fl.DynamicsCallback(tmp_path / "dyn")])


@pytest.mark.parametrize(
    ("returns", "message"),
    [("loss", "no ['logits', 'labels', 'ids']"), ("nolabels", "no ['labels']")],
)
def test_lightning_bad_training_step(tmp_path: Path, returns: str, message: str) -> None:
    fl = pytest.importorskip("fastcarto.lightning")
    with raises(ValueError, message):
        lightning_run(tmp_path, [fl.DynamicsCallback(tmp_path / "dyn")], returns=returns)


# ---------------------------------------------------------------------------------------------
# Keras


def keras_run(tmp_path: Path, callbacks: list[Any], softmax: bool = False) -> Any:
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras runs on another backend in this process")
    keras.utils.set_random_seed(0)
    x, y = (t.numpy() for t in data())
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dropout(0.2),  # draws random masks: recording must not shift them
            keras.layers.Dense(3, activation="softmax" if softmax else None),
        ]
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax),
    )
    model.fit(x, y, epochs=EPOCHS, batch_size=8, shuffle=True, verbose=0, callbacks=callbacks)
    return model


@pytest.mark.parametrize("softmax", [False, True])
def test_keras_callback(tmp_path: Path, softmax: bool) -> None:
    fk = pytest.importorskip("fastcarto.keras")
    keras = pytest.importorskip("keras")
    x, y = (t.numpy() for t in data())
    snapshots: list[Any] = []
    # By hand: each epoch's weights (reading them touches no random state), predicted after.
    by_hand = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(model_ref[0].get_weights())
    )
    model_ref: list[Any] = []

    class Remember(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_begin(self, logs: Any = None) -> None:
            model_ref.append(self.model)

    model = keras_run(
        tmp_path,
        [Remember(), fk.DynamicsCallback(tmp_path / "dyn", x, y), by_hand],
        softmax=softmax,
    )
    trained = model.get_weights()
    gathered = []
    for weights in snapshots:
        model.set_weights(weights)
        gathered.append(np.asarray(model.predict(x, batch_size=256, verbose=0)))
    model.set_weights(trained)
    plain = keras_run(tmp_path, [], softmax=softmax)
    for w, v in zip(model.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(w, v)
    dm = fastcarto.compute(tmp_path / "dyn")
    assert dm.to_pandas()["id"].tolist() == list(range(N))
    assert (dm.to_pandas()["n_epochs"] == EPOCHS).all()
    kind = "probs" if softmax else "logits"
    assert_maps_equal(dm, fastcarto.compute(np.stack(gathered), y, kind=kind), exact=True)


def test_keras_prediction_in_slices_equals_predict(tmp_path: Path) -> None:
    """The epoch-end pass goes through ``predict_on_batch`` in slices of ``batch_size`` rows (7:
    several slices and a partial last one; a dict of named inputs is sliced alike): what is
    recorded equals ``model.predict`` on the same weights, bit for bit."""
    fk = pytest.importorskip("fastcarto.keras")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras runs on another backend in this process")
    x, y = (t.numpy() for t in data())
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inp)
    model = keras.Model({"features": inp}, keras.layers.Dense(3)(keras.layers.Dropout(0.2)(hidden)))
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    inputs = {"features": x}
    predicted: list[Any] = []
    by_hand = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: predicted.append(
            np.asarray(model.predict(inputs, batch_size=32, verbose=0))
        )
    )
    sliced = fk.DynamicsCallback(tmp_path / "sliced", inputs, y, batch_size=7)
    model.fit(inputs, y, epochs=EPOCHS, batch_size=8, verbose=0, callbacks=[sliced, by_hand])
    table = pa.ipc.open_stream(sorted((tmp_path / "sliced").glob("*.arrows"))[-1]).read_all()
    last = np.stack(table.column("logits").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(last, predicted[-1])
    want = fastcarto.compute(np.stack(predicted), y, kind="logits")
    assert_maps_equal(fastcarto.compute(tmp_path / "sliced"), want, exact=True)


def test_keras_prediction_of_a_dataset_of_batches(tmp_path: Path) -> None:
    """``x`` that is not arrays (a ``keras.utils.PyDataset`` of the input batches, in order) is
    predicted by ``model.predict``, as before: the recording equals it."""
    fk = pytest.importorskip("fastcarto.keras")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras runs on another backend in this process")
    x, y = (t.numpy() for t in data())

    class Inputs(keras.utils.PyDataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return -(-N // 16)

        def __getitem__(self, i: int) -> Any:
            return x[16 * i : 16 * (i + 1)]

    predicted: list[Any] = []
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    by_hand = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: predicted.append(
            np.asarray(model.predict(x, batch_size=32, verbose=0))
        )
    )
    callback = fk.DynamicsCallback(tmp_path / "ds", Inputs(), y)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callback, by_hand])
    want = fastcarto.compute(np.stack(predicted), y, kind="logits")
    assert_maps_equal(fastcarto.compute(tmp_path / "ds"), want, exact=True)


def test_keras_bad_input(tmp_path: Path) -> None:
    fk = pytest.importorskip("fastcarto.keras")
    x, y = (t.numpy() for t in data())
    with raises(ValueError, "y.argmax(1)"):
        fk.DynamicsCallback(tmp_path / "a", x, np.eye(3)[y])
    with raises(ValueError, "x and y must be the same examples"):
        keras_run(tmp_path, [fk.DynamicsCallback(tmp_path / "b", x, y[:-5])])
