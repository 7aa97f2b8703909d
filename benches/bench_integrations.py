"""Overhead of recording training dynamics through each framework integration: the same
training timed with and without recording, in one process, alternating (plain, recorded,
plain, ...), each run from the same seed.

    python benches/bench_integrations.py                 # every integration, tiny models
    python benches/bench_integrations.py torch hf --repeat 5
    python benches/bench_integrations.py hf --examples 10000 --hidden 128   # a small transformer

Reports the median time of a run of each variant and the overhead (recorded / plain - 1);
with --fsync off by default (segments are still published atomically; see docs/recorder.md).
Boosters are mapped after training: their line compares the mapping with the training time,
and the accumulated per-round contributions with predicting every prefix from scratch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")
warnings.filterwarnings("ignore")

import fastcarto  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="bench-integrations-"))


def fresh(name: str) -> Path:
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def alternate(plain: Callable[[], Any], recorded: Callable[[], Any], repeat: int) -> str:
    times: dict[str, list[float]] = {"plain": [], "recorded": []}
    plain()  # warm up both (imports, allocator, first-call costs)
    recorded()
    for _ in range(repeat):
        for name, fn in (("plain", plain), ("recorded", recorded)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    p, r = statistics.median(times["plain"]), statistics.median(times["recorded"])
    return f"{p:.3f} s | {r:.3f} s | {100 * (r / p - 1):+.1f}%"


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


# ---------------------------------------------------------------------------------------------


def bench_sklearn(args: argparse.Namespace) -> str:
    import fastcarto.sklearn
    from sklearn.neural_network import MLPClassifier

    X, y = digits()
    classes = np.unique(y)

    def plain() -> None:
        m = MLPClassifier(hidden_layer_sizes=(64,), random_state=0)
        for _ in range(args.epochs):
            m.partial_fit(X, y, classes=classes)

    def recorded() -> None:
        m = MLPClassifier(hidden_layer_sizes=(64,), random_state=0)
        fastcarto.sklearn.fit_epochs(m, X, y, epochs=args.epochs, path=fresh("sk"))

    return alternate(plain, recorded, args.repeat)


def bench_booster(lib: str, args: argparse.Namespace) -> str:
    import importlib

    X, y = digits()
    rounds = 50
    if lib == "xgboost":
        import xgboost

        def train() -> Any:
            return xgboost.XGBClassifier(n_estimators=rounds, max_depth=3).fit(X, y)

        def prefixes(m: Any) -> None:
            b, d = m.get_booster(), xgboost.DMatrix(X)
            for k in range(1, rounds + 1):
                b.predict(d, output_margin=True, iteration_range=(0, k))

    elif lib == "lightgbm":
        import lightgbm

        def train() -> Any:
            return lightgbm.LGBMClassifier(n_estimators=rounds, verbose=-1).fit(X, y)

        def prefixes(m: Any) -> None:
            for k in range(1, rounds + 1):
                m.booster_.predict(X, num_iteration=k, raw_score=True)

    else:
        import catboost

        def train() -> Any:
            return catboost.CatBoostClassifier(
                iterations=rounds, depth=4, verbose=0, allow_writing_files=False
            ).fit(X, y)

        def prefixes(m: Any) -> None:
            for k in range(1, rounds + 1):
                m.predict(X, prediction_type="RawFormulaVal", ntree_end=k)

    mapper = importlib.import_module(f"fastcarto.{lib}")
    t0 = time.perf_counter()
    model = train()
    t_train = time.perf_counter() - t0
    t_map, t_prefix = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        mapper.datamap(model, X, y)  # in memory: the file writing is the torch line's cost
        t_map.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        prefixes(model)
        t_prefix.append(time.perf_counter() - t0)
    m, p = statistics.median(t_map), statistics.median(t_prefix)
    return (
        f"training {t_train:.3f} s | mapping 50 rounds {m:.3f} s | {100 * m / t_train:.0f}% of "
        f"training; predicting the 50 prefixes instead: {p:.3f} s ({p / m:.1f}x)"
    )


def torch_loader(batch: int) -> tuple[Any, Any]:
    import fastcarto.torch
    import torch

    X, y = digits()
    data = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(
        fastcarto.torch.IndexedDataset(data),
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    return data, loader


def bench_torch(args: argparse.Namespace) -> str:
    import torch

    data, loader = torch_loader(64)

    def run(record: bool) -> None:
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        rec = (
            fastcarto.Recorder(fresh("torch"), kind="logits", n_examples=len(data), fsync=False)
            if record
            else None
        )
        for epoch in range(args.epochs):
            for xb, yb, idx in loader:
                logits = model(xb)
                loss = torch.nn.functional.cross_entropy(logits, yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if rec is not None:
                    rec.record(logits, yb, epoch=epoch, ids=idx)
            if rec is not None:
                rec.end_epoch(epoch)
        if rec is not None:
            rec.close()

    return alternate(lambda: run(False), lambda: run(True), args.repeat)


def bench_lightning(args: argparse.Namespace) -> str:
    import fastcarto.lightning
    import lightning
    import torch

    _, loader = torch_loader(64)

    class Net(lightning.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
            )

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y, idx = batch
            logits = self.net(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            return {"loss": loss, "logits": logits, "labels": y, "ids": idx}

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    def run(record: bool) -> None:
        lightning.seed_everything(0, verbose=False)
        callbacks = [fastcarto.lightning.DynamicsCallback(fresh("lightning"))] if record else []
        lightning.Trainer(
            max_epochs=args.epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
        ).fit(Net(), loader)

    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    return alternate(lambda: run(False), lambda: run(True), args.repeat)


def bench_keras(args: argparse.Namespace) -> str:
    import fastcarto.keras
    import keras

    X, y = digits()

    def run(record: bool) -> None:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)]
        )
        model.compile(
            optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        callbacks = [fastcarto.keras.DynamicsCallback(fresh("keras"), X, y)] if record else []
        model.fit(X, y, epochs=args.epochs, batch_size=64, verbose=0, callbacks=callbacks)

    return alternate(lambda: run(False), lambda: run(True), args.repeat)


def bench_hf(args: argparse.Namespace) -> str:
    import fastcarto.hf
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    n, seq = args.examples, 32
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 100, (n, seq), generator=g)
    labels = (tokens[:, :4].sum(1) % 3).tolist()
    train = [
        {
            "input_ids": tokens[i],
            "attention_mask": torch.ones(seq, dtype=torch.long),
            "labels": labels[i],
            "id": i,
        }
        for i in range(n)
    ]
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=args.hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * args.hidden,
        max_position_embeddings=seq,
        num_labels=3,
    )

    def run(record: bool) -> None:
        torch.manual_seed(0)
        targs = transformers.TrainingArguments(
            output_dir=str(WORK / "hf-out"),
            num_train_epochs=1,
            per_device_train_batch_size=32,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
        )
        model = transformers.BertForSequenceClassification(config)
        if record:
            fastcarto.hf.DynamicsTrainer(
                model=model, args=targs, train_dataset=train, dynamics_dir=fresh("hf")
            ).train()
        else:
            transformers.Trainer(model=model, args=targs, train_dataset=train).train()

    return alternate(lambda: run(False), lambda: run(True), args.repeat)


BENCHES = {
    "sklearn": bench_sklearn,
    "xgboost": lambda a: bench_booster("xgboost", a),
    "lightgbm": lambda a: bench_booster("lightgbm", a),
    "catboost": lambda a: bench_booster("catboost", a),
    "torch": bench_torch,
    "lightning": bench_lightning,
    "keras": bench_keras,
    "hf": bench_hf,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("which", nargs="*", choices=[*BENCHES, []], default=list(BENCHES))
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each variant")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (not hf: one)")
    p.add_argument("--examples", type=int, default=1000, help="hf: synthetic sequences")
    p.add_argument("--hidden", type=int, default=32, help="hf: the BERT's hidden size")
    args = p.parse_args()
    print("| integration | plain | recorded | overhead |")
    print("|---|---|---|---|")
    try:
        for name in args.which or list(BENCHES):
            print(f"| {name} | {BENCHES[name](args)} |", flush=True)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
