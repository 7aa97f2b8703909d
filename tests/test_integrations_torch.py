"""PyTorch loops: IndexedDataset and Recorder.record on torch tensors (CPU for real; the CUDA
path's queue with stand-in events), and the optional frameworks staying out of
``import fastcarto``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pytest
from helpers import assert_maps_equal, raises

torch = pytest.importorskip("torch")
fct = pytest.importorskip("fastcarto.torch")

FRAMEWORKS = ("torch", "transformers", "lightning", "keras", "xgboost", "lightgbm", "catboost")


def test_import_fastcarto_imports_no_framework() -> None:
    code = (
        "import sys, fastcarto, fastcarto.sklearn\n"
        f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def make_data(n: int = 96) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(n, generator=g) > 0).long() + (x[:, 1] > 1).long()
    return x, y


def train(recorder: fastcarto.Recorder | None, epochs: int = 4) -> tuple[Any, np.ndarray, Any]:
    """A 2-layer network trained with a shuffled DataLoader; returns its weights, the logits
    gathered by hand (epochs, examples, classes) and the labels."""
    torch.manual_seed(0)
    x, y = make_data()
    data = fct.IndexedDataset(torch.utils.data.TensorDataset(x, y))
    loader = torch.utils.data.DataLoader(
        data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1)
    )
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gathered = np.zeros((epochs, len(data), 3), dtype=np.float32)
    for epoch in range(epochs):
        for xb, yb, idx in loader:
            logits = model(xb)
            loss = torch.nn.functional.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            gathered[epoch, idx.numpy()] = logits.detach().numpy()
            if recorder is not None:
                recorder.record(logits, yb, epoch=epoch, ids=idx)  # requires grad: detached
        if recorder is not None:
            recorder.end_epoch(epoch)
    return model.state_dict(), gathered, y.numpy()


def test_torch_loop_records_every_example_once(tmp_path: Path) -> None:
    with fastcarto.Recorder(tmp_path / "run", kind="logits") as rec:
        weights, gathered, labels = train(rec)
    plain_weights, plain_gathered, _ = train(None)
    for name, w in weights.items():
        assert torch.equal(w, plain_weights[name]), name  # bit-identical training
    np.testing.assert_array_equal(gathered, plain_gathered)
    dm = fastcarto.compute(tmp_path / "run")
    assert_maps_equal(dm, fastcarto.compute(gathered, labels, kind="logits"), exact=True)
    df = dm.to_pandas()
    assert df["id"].tolist() == list(range(len(labels))) and (df["n_epochs"] == 4).all()


def test_indexed_dataset_forms() -> None:
    x, y = make_data(6)
    assert fct.IndexedDataset(torch.utils.data.TensorDataset(x, y))[4][2] == 4
    assert fct.IndexedDataset([{"a": 1}, {"a": 2}])[1] == {"a": 2, "idx": 1}
    assert fct.IndexedDataset(["s", "t"])[1] == ("t", 1)
    with raises(ValueError, "already have a 'idx' field"):
        fct.IndexedDataset([{"idx": 5}])[0]

    class Stream(torch.utils.data.IterableDataset):  # type: ignore[misc]
        def __iter__(self) -> Any:
            yield from range(3)

    with raises(TypeError, "map-style"):
        fct.IndexedDataset(Stream())


def test_cpu_tensor_is_read_in_place() -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    from fastcarto._recorder import _host_array

    view = _host_array(t, "outputs")
    assert view.ctypes.data == t.data_ptr()
    grad = torch.ones(2, 3, requires_grad=True)
    assert _host_array(grad, "outputs").ctypes.data == grad.data_ptr()


# ---------------------------------------------------------------------------------------------
# the GPU path's queue, with stand-in events (there is no GPU here)


class FakeEvent:
    def __init__(self) -> None:
        self.done = False
        self.waited = False

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        self.waited = True
        self.done = True


class OnGpu:
    """Stands for a CUDA tensor: ``start_copy`` is replaced by one that 'copies' its array."""

    def __init__(self, array: Any) -> None:
        self.array = np.asarray(array)


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> list[FakeEvent]:
    from fastcarto import _device, _recorder

    events: list[FakeEvent] = []

    def start_copy(
        outputs: Any, labels: Any, ids: Any, epoch: int, streams: Any, call: int = 0
    ) -> Any:
        event = FakeEvent()
        events.append(event)
        host = [a.array.copy() if isinstance(a, OnGpu) else a for a in (outputs, labels, ids)]
        return _device.Pending(event, host[0], host[1], host[2], epoch, call)

    monkeypatch.setattr(_recorder, "torch_gpu_tensor", lambda obj: isinstance(obj, OnGpu))
    monkeypatch.setattr(_recorder, "start_copy", start_copy)
    return events


def test_gpu_batches_recorded_in_order_once_copied(tmp_path: Path, fake_gpu: Any) -> None:
    rng = np.random.default_rng(0)
    out = rng.normal(size=(3, 8, 2)).astype(np.float32)
    labels = np.arange(8) % 2
    rec = fastcarto.Recorder(tmp_path, kind="logits", n_examples=8, accumulator=True)
    rec.record(OnGpu(out[0, :4]), OnGpu(labels[:4]), epoch=0, ids=OnGpu(np.arange(4)))
    assert rec.rows_buffered == 0  # the copy has not completed: nothing recorded yet
    fake_gpu[0].done = True
    rec.record(OnGpu(out[0, 4:]), labels[4:], epoch=0, ids=np.arange(4, 8))
    assert rec.rows_buffered == 4 and not fake_gpu[0].waited  # recorded without waiting
    # A CPU batch waits for the GPU batches before it, so epochs stay in order.
    rec.record(out[1], labels, epoch=1, ids=np.arange(8))
    assert fake_gpu[1].waited and rec.rows_written == 8
    rec.record(OnGpu(out[2]), labels, epoch=2, ids=np.arange(8))
    rec.end_epoch(2)  # waits for the copy
    assert fake_gpu[2].waited
    rec.close()
    assert_maps_equal(rec.datamap(), fastcarto.compute(out, labels, kind="logits"), exact=True)
    assert_maps_equal(fastcarto.compute(tmp_path), rec.datamap(), exact=True)


def test_gpu_batch_errors_surface_at_a_later_call(tmp_path: Path, fake_gpu: Any) -> None:
    rec = fastcarto.Recorder(tmp_path, kind="logits")
    bad = np.array([[0.0, np.nan]], dtype=np.float32)
    rec.record(OnGpu(bad), np.array([0]), epoch=0, ids=np.array([0]))
    with raises(fastcarto.NonFiniteError, "epoch 0"):
        rec.flush()
    rec.record(OnGpu(np.zeros((1, 2), np.float32)), np.array([1]), epoch=0, ids=np.array([1]))
    rec.close()  # waits for the copy, records it and closes
    assert rec.closed and rec.rows_written == 1


def test_copy_queue_hands_back_ready_heads_in_order() -> None:
    from fastcarto._device import CopyQueue, Pending

    q = CopyQueue()
    events = [FakeEvent() for _ in range(3)]
    for i, e in enumerate(events):
        q.push(Pending(e, i, None, None, 0))
    events[1].done = True
    assert [p.outputs for p in q.ready(wait=False)] == []  # the head is not done
    events[0].done = True
    assert [p.outputs for p in q.ready(wait=False)] == [0, 1]
    assert [p.outputs for p in q.ready(wait=True)] == [2] and events[2].waited
    assert len(q) == 0


def test_batch_recorder_drops_repeats_first_wins(tmp_path: Path) -> None:
    from fastcarto._training import BatchRecorder

    rec = BatchRecorder(tmp_path / "run")
    logits = torch.arange(12, dtype=torch.bfloat16).reshape(4, 3)  # mixed precision: widened
    rec.record(logits, torch.tensor([0, 1, 2, 0]), torch.tensor([7, 8, 7, 9]), 0, where="t")
    rec.record(logits[:2], np.array([1, 2]), np.array([9, 10]), 0, where="t")  # 9 again
    rec.end_epoch(0)
    rec.record(logits[:1], torch.tensor([0]), torch.tensor([7]), 1, where="t")  # a new epoch
    rec.close()
    df = fastcarto.compute(tmp_path / "run").to_pandas()
    assert df["id"].tolist() == [7, 8, 9, 10]
    assert df["n_epochs"].tolist() == [2, 1, 1, 1]
    with raises(ValueError, "shape (batch, classes)"):
        BatchRecorder(tmp_path / "other").record(
            torch.zeros(2, 5, 3), torch.tensor([0, 1]), torch.tensor([0, 1]), 0, where="t"
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_recorded_without_stalling_the_stream(tmp_path: Path) -> None:
    """Real CUDA tensors: record() returns while the training stream is still busy (it queued
    the copy on a side stream instead of waiting), and what is written equals the logits copied
    by hand after the stream finished; bfloat16 logits are widened on the side stream."""
    device = torch.device("cuda")
    g = torch.Generator(device="cpu").manual_seed(0)
    n, c, batch, epochs = 256, 5, 32, 2
    labels = torch.randint(0, c, (n,), generator=g)
    gathered = np.zeros((epochs, n, c), dtype=np.float32)
    with fastcarto.Recorder(tmp_path / "cuda", kind="logits", n_examples=n) as rec:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=g)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                torch.cuda._sleep(20_000_000)  # keeps the stream busy for milliseconds
                logits = torch.randn(len(idx), c, generator=g).to(device, non_blocking=True)
                if epoch == 1:
                    logits = logits.to(torch.bfloat16)
                rec.record(logits, labels[idx].to(device), epoch=epoch, ids=idx.to(device))
                assert not torch.cuda.current_stream().query(), "record waited for the stream"
                gathered[epoch, idx.numpy()] = logits.float().cpu().numpy()
            rec.end_epoch(epoch)
    want = fastcarto.compute(gathered, labels.numpy(), kind="logits")
    assert_maps_equal(fastcarto.compute(tmp_path / "cuda"), want, exact=True)
