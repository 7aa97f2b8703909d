"""Copies of a PyTorch minibatch's GPU tensors to host memory that do not stall training.

``Recorder.record`` hands CUDA (or ROCm) torch tensors here. Each copy is queued on a side
stream per device, after the work the training stream has queued so far, into pinned host
memory (``non_blocking=True``), and an event marks its end; the recorder records the batch once
that event has completed, so the training stream never waits for the copy and Python waits only
at ``end_epoch``/``flush``/``close`` (or when a CPU batch must keep its place after GPU ones).
``record_stream`` tells PyTorch's caching allocator that the side stream still reads the GPU
tensors, so their memory is not reused by the training step before the copy ran.

torch is imported only inside these functions, which run only for tensors of a torch that the
caller has already imported. This path cannot run without a GPU; the queue's order and waiting
(:class:`CopyQueue`) are independent of torch and tested on a CPU with stand-in events.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

# DLPack device types of GPU memory that torch.cuda streams reach (CUDA, ROCm).
GPU_DEVICE_TYPES = (2, 10)


class Event(Protocol):
    def query(self) -> bool: ...
    def synchronize(self) -> None: ...


@dataclass
class Pending:
    """One batch whose copy to the host was queued; ``args`` are host tensors or arrays once
    ``event`` has completed."""

    event: Event
    outputs: Any
    labels: Any
    ids: Any
    epoch: int
    call: int = 0  # the batch's number among its epoch's record calls


class CopyQueue:
    """Batches in the order they were recorded, each handed back once its copy is complete."""

    def __init__(self) -> None:
        # Read directly by `Recorder.record`'s fast path (an empty deque: no copy in flight).
        self.queue: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self.queue)

    def push(self, item: Pending) -> None:
        self.queue.append(item)

    def ready(self, *, wait: bool) -> Iterator[Pending]:
        """The batches at the front whose copies are complete (all of them, waiting for each,
        with ``wait``). A batch is removed before it is handed back, so an error in recording
        it does not hand it back twice."""
        while self.queue:
            head = self.queue[0]
            if wait:
                head.event.synchronize()
            elif not head.event.query():
                return
            self.queue.popleft()
            yield head


def torch_gpu_tensor(obj: Any) -> bool:
    """Whether ``obj`` is a torch tensor in GPU memory (without importing torch)."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, torch.Tensor):
        return False
    return bool(obj.is_cuda)


def start_copy(
    outputs: Any, labels: Any, ids: Any, epoch: int, streams: dict[Any, Any], call: int = 0
) -> Pending:
    """Queues the copy of the GPU tensors among ``outputs``, ``labels`` and ``ids`` to pinned host
    memory on a side stream of their device (``streams`` caches one per device)."""
    import torch

    device = outputs.device if torch_gpu_tensor(outputs) else None
    for t in (labels, ids):
        if device is None and torch_gpu_tensor(t):
            device = t.device
    assert device is not None
    side = streams.get(device)
    if side is None:
        side = streams[device] = torch.cuda.Stream(device=device)
    # The copy reads what the training stream has computed (or will, in queue order).
    side.wait_stream(torch.cuda.current_stream(device))
    hosts = []
    with torch.cuda.stream(side):
        for t in (outputs, labels, ids):
            if not torch_gpu_tensor(t):
                hosts.append(t)
                continue
            t = t.detach()
            t.record_stream(side)
            if t.dtype == torch.bfloat16:  # numpy has no bfloat16
                t = t.float()
            host = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=True)
            host.copy_(t, non_blocking=True)
            hosts.append(host)
        event = torch.cuda.Event()
        event.record(side)
    return Pending(event, hosts[0], hosts[1], hosts[2], epoch, call)
