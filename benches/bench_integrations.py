"""Overhead of recording training dynamics through each framework integration: the same
training with and without recording, timed step by step, in one process.

    python benches/bench_integrations.py                          # every integration, tiny models
    python benches/bench_integrations.py torch lightning --repeat 5
    python benches/bench_integrations.py torch --examples 10000 --features 256 --width 1024
    python benches/bench_integrations.py hf --examples 10000 --hidden 128      # a small transformer

Method (robust to a shared, noisy machine):
- PyTorch loop: two identical models train on the same batches; each step runs the plain model's
  step and the recorded model's step (forward, loss, backward, optimizer step, and
  ``Recorder.record``) back to back, in alternating order, each timed on its own. Every step
  gives a pair, so slow phases of the machine hit both variants alike. The epoch-end
  ``end_epoch`` (publishing a segment) is timed separately and spread over the epoch's steps.
- Frameworks (Lightning, Hugging Face, Keras, scikit-learn): whole runs alternate (plain,
  recorded, plain, ...), ``--repeat`` of each after a warm-up run of both; each step is timed
  by a callback (Lightning, Hugging Face) and each run as a whole.
- Reported: the median step time of each variant with its interquartile range over all steps
  of all repeats, the overhead of the medians, and the median run time (min-max over repeats)
  with its overhead, which includes the epoch-end work. Keras and scikit-learn record with an
  epoch-end prediction pass over the training set, by design: their overhead is that pass.
- ``--threads`` sets torch's intra-op threads (1 by default: on a shared machine more threads
  mostly measure contention).

Segments are written with fsync off, by the integrations too (``--fsync`` turns it on; they are
published atomically either way, see docs/recorder.md). Boosters are mapped after training:
their line compares the mapping with the training time, and the accumulated per-round
contributions with predicting every prefix from scratch.
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


class Steps:
    """Per-step durations of one run (``start``/``stop`` around each step) and its total."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.total = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.times.append(time.perf_counter() - self._t0)


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = np.percentile(np.asarray(xs), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def ms(x: float) -> str:
    return f"{1e3 * x:.3g} ms" if x < 1 else f"{x:.3g} s"


def row(plain: list[Steps], recorded: list[Steps], note: str = "") -> str:
    """``| step plain | step recorded | overhead | run plain | run recorded | overhead |``."""
    cells = []
    if plain[0].times:
        p = quartiles([t for s in plain for t in s.times])
        r = quartiles([t for s in recorded for t in s.times])
        cells += [
            f"{ms(p[1])} ({ms(p[0])}-{ms(p[2])})",
            f"{ms(r[1])} ({ms(r[0])}-{ms(r[2])})",
            f"{100 * (r[1] / p[1] - 1):+.1f}%",
        ]
    else:
        cells += ["-", "-", "-"]
    pt, rt = [s.total for s in plain], [s.total for s in recorded]
    mp, mr = statistics.median(pt), statistics.median(rt)
    cells += [
        f"{ms(mp)} ({ms(min(pt))}-{ms(max(pt))})",
        f"{ms(mr)} ({ms(min(rt))}-{ms(max(rt))})",
        f"{100 * (mr / mp - 1):+.1f}%",
    ]
    if note:
        cells.append(note)
    return " | ".join(cells)


def alternate(run: Callable[[bool], Steps], repeat: int) -> tuple[list[Steps], list[Steps]]:
    """Whole runs, plain and recorded alternating, after a warm-up run of each."""
    run(False)  # warm up both (imports, allocator, first-call costs)
    run(True)
    plain: list[Steps] = []
    recorded: list[Steps] = []
    for i in range(repeat):
        order = (False, True) if i % 2 == 0 else (True, False)
        for record in order:
            t0 = time.perf_counter()
            steps = run(record)
            steps.total = time.perf_counter() - t0
            (recorded if record else plain).append(steps)
    return plain, recorded


def synthetic(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (1,797 examples, 64 features, 10 classes) unless ``--examples``
    asks for a synthetic set of ``--features`` and ``--classes``."""
    if args.examples is None:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return (X / 16).astype(np.float32), y
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.examples, args.features)).astype(np.float32)
    w = rng.normal(size=(args.features, args.classes))
    y = np.argmax(X @ w + rng.gumbel(size=(args.examples, args.classes)), axis=1)
    return X, y


def describe(args: argparse.Namespace, X: np.ndarray, y: np.ndarray) -> str:
    classes = len(np.unique(y))
    return (
        f"{len(X):,} examples x {X.shape[1]} features, {classes} classes; MLP "
        f"{X.shape[1]}-{args.width}-{args.width}-{classes}; batches of {args.batch}; "
        f"{args.epochs} epochs"
    )


def mlp(d: int, width: int, classes: int) -> Any:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(d, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, classes),
    )


# ---------------------------------------------------------------------------------------------


def bench_sklearn(args: argparse.Namespace) -> str:
    import fastcarto.sklearn
    from sklearn.neural_network import MLPClassifier

    X, y = synthetic(args)
    classes = np.unique(y)

    def run(record: bool) -> Steps:
        m = MLPClassifier(
            hidden_layer_sizes=(args.width, args.width), batch_size=args.batch, random_state=0
        )
        if record:
            fastcarto.sklearn.fit_epochs(m, X, y, epochs=args.epochs, path=fresh("sk"))
        else:
            for _ in range(args.epochs):
                m.partial_fit(X, y, classes=classes)
        return Steps()

    plain, recorded = alternate(run, args.repeat)
    return row(plain, recorded, describe(args, X, y) + "; a predict_proba pass per epoch")


def bench_booster(lib: str, args: argparse.Namespace) -> str:
    import importlib

    X, y = synthetic(argparse.Namespace(examples=None))
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
    return f"{t_train:.3f} s | {m:.3f} s ({100 * m / t_train:.0f}%) | {p:.3f} s ({p / m:.1f}x)"


def torch_loader(X: np.ndarray, y: np.ndarray, batch: int) -> tuple[Any, Any]:
    import fastcarto.torch
    import torch

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

    X, y = synthetic(args)
    classes = int(y.max()) + 1
    data, loader = torch_loader(X, y, args.batch)
    plain, recorded = [], []
    record_calls: list[float] = []
    for rep in range(args.repeat + 1):  # the first is a warm-up
        torch.manual_seed(0)
        models = [mlp(X.shape[1], args.width, classes) for _ in range(2)]
        models[1].load_state_dict(models[0].state_dict())
        opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
        rec = fastcarto.Recorder(
            fresh("torch"), kind="logits", n_examples=len(data), fsync=args.fsync
        )
        steps = [Steps(), Steps()]
        calls = Steps()
        for epoch in range(args.epochs):
            for k, (xb, yb, idx) in enumerate(loader):
                for which in (0, 1) if k % 2 == 0 else (1, 0):
                    model, opt = models[which], opts[which]
                    steps[which].start()
                    logits = model(xb)
                    loss = torch.nn.functional.cross_entropy(logits, yb)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if which == 1:
                        calls.start()
                        rec.record(logits, yb, epoch=epoch, ids=idx)
                        calls.stop()
                    steps[which].stop()
            t0 = time.perf_counter()
            rec.end_epoch(epoch)
            steps[1].total += time.perf_counter() - t0
        rec.close()
        steps[0].total += sum(steps[0].times)
        steps[1].total += sum(steps[1].times)
        if rep:
            plain.append(steps[0])
            recorded.append(steps[1])
            record_calls += calls.times
    # Paired: each step's recorded minus plain time, robust to the machine's slow phases.
    diffs = [
        r - p
        for a, b in zip(plain, recorded, strict=True)
        for p, r in zip(a.times, b.times, strict=True)
    ]
    paired = 100 * statistics.median(diffs) / statistics.median([t for s in plain for t in s.times])
    note = (
        f"{describe(args, X, y)}; paired per-step overhead {paired:+.1f}%"
        f"; record() {1e6 * statistics.median(record_calls):.0f} us; runs: the steps' sum + "
        "end_epoch"
    )
    return row(plain, recorded, note)


def bench_lightning(args: argparse.Namespace) -> str:
    import logging

    import fastcarto.lightning
    import lightning
    import torch

    X, y = synthetic(args)
    classes = int(y.max()) + 1
    _, loader = torch_loader(X, y, args.batch)

    class Net(lightning.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp(X.shape[1], args.width, classes)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y, idx = batch
            logits = self.net(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            return {"loss": loss, "logits": logits, "labels": y, "ids": idx}

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Timer(lightning.Callback):  # type: ignore[misc]
        def __init__(self, steps: Steps) -> None:
            self.steps = steps

        def on_train_batch_start(self, *a: Any) -> None:
            self.steps.start()

        def on_train_batch_end(self, *a: Any) -> None:
            self.steps.stop()

    def run(record: bool) -> Steps:
        steps = Steps()
        lightning.seed_everything(0, verbose=False)
        # The timer runs last: a step's time includes the DynamicsCallback's batch end.
        callbacks: list[Any] = [Timer(steps)]
        if record:
            callbacks.insert(0, fastcarto.lightning.DynamicsCallback(fresh("lightning")))
        lightning.Trainer(
            max_epochs=args.epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
        ).fit(Net(), loader)
        return steps

    logging.getLogger("lightning").setLevel(logging.ERROR)
    plain, recorded = alternate(run, args.repeat)
    return row(plain, recorded, describe(args, X, y))


def bench_keras(args: argparse.Namespace) -> str:
    import fastcarto.keras
    import keras

    X, y = synthetic(args)
    classes = int(y.max()) + 1

    def run(record: bool) -> Steps:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((X.shape[1],)),
                keras.layers.Dense(args.width, activation="relu"),
                keras.layers.Dense(args.width, activation="relu"),
                keras.layers.Dense(classes),
            ]
        )
        model.compile(
            optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        callbacks = [fastcarto.keras.DynamicsCallback(fresh("keras"), X, y)] if record else []
        model.fit(X, y, epochs=args.epochs, batch_size=args.batch, verbose=0, callbacks=callbacks)
        return Steps()

    plain, recorded = alternate(run, args.repeat)
    return row(plain, recorded, describe(args, X, y) + "; a prediction pass per epoch")


def bench_hf(args: argparse.Namespace) -> str:
    import fastcarto.hf
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    n, seq = args.examples or 1000, args.seq
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
        num_hidden_layers=args.layers,
        num_attention_heads=2,
        intermediate_size=4 * args.hidden,
        max_position_embeddings=seq,
        num_labels=3,
    )

    class Timer(transformers.TrainerCallback):  # type: ignore[misc]
        def __init__(self, steps: Steps) -> None:
            self.steps = steps

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.steps.start()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.steps.stop()

    def run(record: bool) -> Steps:
        steps = Steps()
        torch.manual_seed(0)
        targs = transformers.TrainingArguments(
            output_dir=str(WORK / "hf-out"),
            num_train_epochs=1,
            max_steps=args.max_steps or -1,
            per_device_train_batch_size=args.batch,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
        )
        model = transformers.BertForSequenceClassification(config)
        if record:
            trainer = fastcarto.hf.DynamicsTrainer(
                model=model,
                args=targs,
                train_dataset=train,
                dynamics_dir=fresh("hf"),
                callbacks=[Timer(steps)],
            )
        else:
            trainer = transformers.Trainer(
                model=model, args=targs, train_dataset=train, callbacks=[Timer(steps)]
            )
        trainer.remove_callback(transformers.PrinterCallback)  # its end-of-training metrics
        trainer.train()
        return steps

    plain, recorded = alternate(run, args.repeat)
    steps = args.max_steps or -(-n // args.batch)
    return row(
        plain,
        recorded,
        f"BERT, {args.layers} layers, hidden {args.hidden}; {n:,} sequences of {seq} tokens; "
        f"batches of {args.batch}; {steps} steps",
    )


BENCHES = {
    "torch": bench_torch,
    "lightning": bench_lightning,
    "hf": bench_hf,
    "keras": bench_keras,
    "sklearn": bench_sklearn,
    "xgboost": lambda a: bench_booster("xgboost", a),
    "lightgbm": lambda a: bench_booster("lightgbm", a),
    "catboost": lambda a: bench_booster("catboost", a),
}


BOOSTERS = ("xgboost", "lightgbm", "catboost")


def integrations_fsync(on: bool) -> None:
    """The integrations' recorders sync each epoch's segment to disk (the Recorder's default,
    about 8 ms per epoch on the development machine's disk); the bench gives them ``--fsync``
    as it gives the PyTorch loop's recorder, so that every row measures the same work."""
    import fastcarto._recorder

    init = fastcarto._recorder.Recorder.__init__

    def with_fsync(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fsync", on)
        init(self, *args, **kwargs)

    fastcarto._recorder.Recorder.__init__ = with_fsync  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("which", nargs="*", choices=[*BENCHES, []], default=list(BENCHES))
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each variant")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (not hf: one)")
    p.add_argument(
        "--examples", type=int, default=None, help="synthetic examples (default: digits; hf 1000)"
    )
    p.add_argument("--features", type=int, default=64, help="synthetic features")
    p.add_argument("--classes", type=int, default=10, help="synthetic classes")
    p.add_argument("--width", type=int, default=64, help="the MLPs' hidden width")
    p.add_argument("--batch", type=int, default=64, help="batch size (hf: per device)")
    p.add_argument("--hidden", type=int, default=32, help="hf: the BERT's hidden size")
    p.add_argument("--layers", type=int, default=2, help="hf: the BERT's layers")
    p.add_argument("--seq", type=int, default=32, help="hf: tokens per sequence")
    p.add_argument("--max-steps", type=int, default=0, help="hf: stop after this many steps")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--fsync", action="store_true", help="sync each segment (default off)")
    args = p.parse_args()
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    integrations_fsync(args.fsync)
    which = args.which or list(BENCHES)
    frameworks = [w for w in which if w not in BOOSTERS]
    boosters = [w for w in which if w in BOOSTERS]
    try:
        if frameworks:
            print(
                "| integration | step, plain: median (IQR) | step, recorded | overhead "
                "| run, plain: median (min-max) | run, recorded | overhead | setup |"
            )
            print("|---|---|---|---|---|---|---|---|")
        for name in frameworks:
            print(f"| {name} | {BENCHES[name](args)} |", flush=True)
        if boosters:
            print(
                "\n| library (50 rounds on digits, every=1, in memory) | training "
                "| mapping 50 epochs (share of training) | predicting the 50 prefixes instead |"
            )
            print("|---|---|---|---|")
        for name in boosters:
            print(f"| {name} | {BENCHES[name](args)} |", flush=True)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
