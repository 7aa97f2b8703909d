"""fastcarto.hf and fastcarto.lightning in real two-process CPU runs (gloo): each rank writes its
own shard, the examples the distributed sampler repeats to even out the ranks are recorded
once per epoch (the first record wins: the earlier step, then the lower rank), ids survive, and
the map equals fastcarto.compute on the logits each rank saved by hand
(``tests/distributed_child.py``, ``tests/lightning_child.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import fastcarto
import numpy as np
import pyarrow as pa
import pytest
from helpers import assert_maps_equal

pytest.importorskip("torch")
from distributed_child import EPOCHS, N  # it imports torch

CHILD = Path(__file__).with_name("distributed_child.py")
TIMEOUT = 600  # seconds per run: generous, for a loaded machine (about 25 s when quiet)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gloo rendezvous on POSIX")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join([str(CHILD.parent), env.get("PYTHONPATH", "")]),
    )
    return env


def check_run(out: Path, first_id: int) -> None:
    """Shards, counts, ids and the map against the hand-saved logits."""
    names = sorted(p.name for p in (out / "dyn").iterdir())
    assert {n.split("-shard-")[1][:3] for n in names} == {"000", "001"}, names
    assert all(n.startswith("epoch-") and "-shard-" in n for n in names), names
    hands = [np.load(out / f"hand-{rank}.npz") for rank in (0, 1)]
    # The sampler padded a rank: more forward rows than examples, per epoch.
    assert sum(len(h["ids"]) for h in hands) == 2 * ((N + 1) // 2) * EPOCHS > N * EPOCHS
    # By hand: for each epoch, steps in order, rank 0 before rank 1, the first row of an id.
    first: dict[tuple[int, int], np.ndarray] = {}
    for epoch in range(EPOCHS):
        rows = [
            (int(h["step"][j]), rank, j)
            for rank, h in enumerate(hands)
            for j in np.flatnonzero(h["epoch"] == epoch)
        ]
        for _, rank, j in sorted(rows):
            first.setdefault((epoch, int(hands[rank]["ids"][j])), hands[rank]["logits"][j])
    assert len(first) == N * EPOCHS, "an example was never seen in an epoch"
    table = fastcarto.compute(out / "dyn")
    df = table.to_pandas()
    assert df["id"].tolist() == list(range(first_id, first_id + N))  # ids survived
    assert (df["n_epochs"] == EPOCHS).all()  # every example once per epoch, repeats dropped
    label = dict(zip(df["id"], df["label"], strict=True))
    keys = sorted(first)
    hand = pa.table(
        {
            "epoch": pa.array([e for e, _ in keys], pa.int64()),
            "id": pa.array([i for _, i in keys], pa.int64()),
            "label": pa.array([label[i] for _, i in keys], pa.int64()),
            "logits": pa.FixedSizeListArray.from_arrays(
                pa.array(np.concatenate([first[k] for k in keys])), 3
            ),
        }
    )
    assert_maps_equal(table, fastcarto.compute(hand, kind="logits"), exact=True)


def test_hf_trainer_two_processes(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = child_env()
        env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(CHILD), str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rank, (p, text) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"rank {rank} failed:\n{text[-4000:]}"
    check_run(tmp_path, 1000)


def test_lightning_ddp_spawn_two_processes(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    run = subprocess.run(
        [sys.executable, str(CHILD.with_name("lightning_child.py")), str(tmp_path)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    check_run(tmp_path, 0)
