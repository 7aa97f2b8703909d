"""A training loop that records with `fastcarto.Recorder` until it is killed: the child process of
the SIGKILL crash-safety test in `tests/test_recorder.py`.

Run as ``python tests/recorder_child.py DIRECTORY``: records epoch after epoch of deterministic
outputs (:func:`epoch_data`, which the test imports to know what was recorded), in shuffled
minibatches, with a small buffer so that segments are published all the time, and prints
``epoch E`` (flushed) once epoch ``E`` is complete on disk.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

N_EXAMPLES = 300
N_CLASSES = 5
BATCH = 32
BUFFER_ROWS = 70  # several segments per epoch, and segments that cut through minibatches
MAX_EPOCHS = 100_000  # far more than the test waits for: the child is always killed


def labels() -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.random.default_rng(12345).integers(0, N_CLASSES, size=N_EXAMPLES)


def epoch_data(
    epoch: int,
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.float32]]]:
    """The order examples are visited in at ``epoch``, and their logits (row ``i`` is example
    ``i``), reproducible from ``epoch`` alone."""
    rng = np.random.default_rng([2024, epoch])
    order = rng.permutation(N_EXAMPLES)
    # Outputs that drift toward the label, so the metrics are not trivial.
    logits = rng.normal(size=(N_EXAMPLES, N_CLASSES)).astype(np.float32)
    logits[np.arange(N_EXAMPLES), labels()] += np.float32(0.3 * epoch)
    return order, logits


def main(directory: str) -> None:
    import fastcarto

    y = labels()
    with fastcarto.Recorder(
        directory, kind="logits", n_examples=N_EXAMPLES, buffer_rows=BUFFER_ROWS
    ) as rec:
        for epoch in range(MAX_EPOCHS):
            order, logits = epoch_data(epoch)
            for start in range(0, N_EXAMPLES, BATCH):
                idx = order[start : start + BATCH]
                rec.record(logits[idx], y[idx], epoch=epoch, ids=idx)
            rec.end_epoch(epoch)
            print(f"epoch {epoch}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
