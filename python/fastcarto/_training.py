"""What the PyTorch framework integrations (``fastcarto.hf``, ``fastcarto.lightning``) share:
one :class:`Recorder` per process (a shard per data-parallel rank), the first record of an
(epoch, id) winning over repeats, and logits and labels handed over as the tensors they are (a
GPU tensor is copied off the device without stalling training)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import numpy as np

from ._first_wins import FirstWins
from ._recorder import Mode, Recorder


def check_fresh_mode(name: str, mode: object) -> None:
    """A training callback's mode: resuming from a checkpoint appends by itself."""
    if mode not in ("create", "overwrite"):
        raise ValueError(
            f"{name} must be 'create' or 'overwrite', got {mode!r} (resuming from a checkpoint "
            "appends by itself)"
        )


class BatchRecorder:
    """Records training batches' logits for one process of a (possibly distributed) run."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rank: int = 0,
        world_size: int = 1,
        mode: Mode = "create",
        resume_epoch: int | None = None,
        **recorder_options: Any,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.recorder = Recorder(
            path,
            kind="logits",
            shard=rank if world_size > 1 else None,
            mode=mode,
            resume_epoch=resume_epoch,
            **recorder_options,
        )
        self._first = FirstWins()
        if world_size == 1:
            self.recorder._first = self._first

    def record(self, logits: Any, labels: Any, ids: Any, epoch: int, *, where: str) -> None:
        """``logits`` of shape (rows, classes), ``labels`` and ``ids`` (rows,): torch tensors
        or arrays. In a single process the recorder drops the repeats itself, a block of rows
        at a time (``Recorder._first``); with several, every rank's ids of the step decide
        which rows this rank keeps, at the call."""
        # The framework calling this has imported torch; `import torch` would cost a lookup.
        torch = sys.modules.get("torch") or importlib.import_module("torch")

        if logits.ndim != 2:
            raise ValueError(
                f"{where}: logits have shape {tuple(logits.shape)}; fastcarto records one row of "
                "class scores per example, shape (batch, classes) (a sequence-classification "
                "head, not per-token outputs)"
            )
        if logits.dtype == torch.bfloat16 and not logits.is_cuda:
            logits = logits.detach().float()  # mixed precision: numpy has no bfloat16
        if self.world_size == 1:
            self.recorder.record(logits, labels, epoch=epoch, ids=ids)
            return
        logits = logits.detach()
        if logits.dtype in (torch.bfloat16, torch.float16):
            logits = logits.float()
        ids_host = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids)
        keep = self._first.keep_across(self._gather(ids_host), self.rank, epoch)
        if not keep.all():
            rows = torch.as_tensor(np.flatnonzero(keep), device=logits.device)
            logits = logits.index_select(0, rows)
            if isinstance(labels, torch.Tensor):
                labels = labels.index_select(0, rows.to(labels.device))
            else:
                labels = np.asarray(labels)[keep]
            ids_host = ids_host[keep]
        labels = labels.detach() if isinstance(labels, torch.Tensor) else labels
        self.recorder.record(logits, labels, epoch=epoch, ids=ids_host)

    def end_epoch(self, epoch: int) -> None:
        self.recorder.end_epoch(epoch)

    def close(self) -> None:
        self.recorder.close()

    def _gather(self, ids: np.ndarray) -> list[np.ndarray]:
        """Every rank's ids of this step (a collective: every rank calls it in step)."""
        import torch
        import torch.distributed as dist

        backend = dist.get_backend()
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
        local = torch.as_tensor(ids, dtype=torch.int64, device=device)
        sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor([local.numel()], device=device))
        longest = int(max(int(s.item()) for s in sizes))
        padded = torch.full((longest,), -1, dtype=torch.int64, device=device)
        padded[: local.numel()] = local
        out = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(out, padded)
        return [o[: int(s.item())].cpu().numpy() for o, s in zip(out, sizes, strict=True)]
