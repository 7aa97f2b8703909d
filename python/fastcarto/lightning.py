"""Training dynamics from a PyTorch Lightning training: :class:`DynamicsCallback`.

class Model(lightning.LightningModule):
    def training_step(self, batch, batch_idx):
        x, y, idx = batch                       # e.g. fastcarto.torch.IndexedDataset
        logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        return {"loss": loss, "logits": logits, "labels": y, "ids": idx}

trainer = lightning.Trainer(callbacks=[fastcarto.lightning.DynamicsCallback("runs/dyn")])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import lightning

from ._recorder import Mode
from ._training import BatchRecorder, check_fresh_mode

__all__ = ["DynamicsCallback"]


class DynamicsCallback(lightning.Callback):  # type: ignore[misc]
    """Records the logits of every training batch to ``path`` (a :class:`fastcarto.Recorder`
    directory; one shard per rank with several processes).

    The contract: ``training_step`` returns a dict with the ``loss`` and the batch's
    ``logits`` (shape ``(batch, classes)``), ``labels`` and ``ids`` (integer example ids, e.g.
    from :class:`fastcarto.torch.IndexedDataset`); the key names can be changed with
    ``logits_key``, ``labels_key``, ``ids_key``. Each batch is recorded in
    ``on_train_batch_end`` at ``trainer.current_epoch`` (every micro-batch under gradient
    accumulation), and the epoch is published in ``on_train_epoch_end``. GPU tensors are copied
    off the device without stalling training; float16/bfloat16 logits are widened to float32.
    The first record of an (epoch, id) wins, as in :class:`fastcarto.hf.DynamicsMixin`.
    Recording reads the outputs only: training is unchanged.

    Parameters
    ----------
    path:
        Directory of the recording.
    mode:
        ``"create"`` (default) refuses a directory that holds a recording, ``"overwrite"``
        replaces it. ``trainer.fit(..., ckpt_path=...)`` continues the recording instead
        (``mode="append"`` from the checkpoint's epoch).
    logits_key, labels_key, ids_key:
        The keys of the logits, labels and ids in ``training_step``'s dict.

    Raises
    ------
    ValueError
        An unknown ``mode``; during training, a ``training_step`` that returns no dict or
        one without the three keys.
    FileExistsError
        ``path`` already holds a recording (``mode="create"``).

    Examples
    --------
    >>> import tempfile, lightning, torch, fastcarto, fastcarto.lightning
    >>> from fastcarto.torch import IndexedDataset
    >>> class Net(lightning.LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(),
    ...                                        torch.nn.Linear(4, 2))
    ...     def training_step(self, batch, batch_idx):
    ...         x, y, ids = batch
    ...         logits = self.net(x)
    ...         loss = torch.nn.functional.cross_entropy(logits, y)
    ...         return {"loss": loss, "logits": logits, "labels": y, "ids": ids}
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=0.1)
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(8, 2)
    >>> data = IndexedDataset(torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long()))
    >>> loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     trainer = lightning.Trainer(
    ...         max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
    ...         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp,
    ...         callbacks=[fastcarto.lightning.DynamicsCallback(tmp + "/dynamics")])
    ...     trainer.fit(Net(), loader)
    ...     dm = fastcarto.compute(tmp + "/dynamics")
    >>> len(dm), dm.to_pandas()["n_epochs"].unique().tolist()
    (8, [2])
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: Mode = "create",
        logits_key: str = "logits",
        labels_key: str = "labels",
        ids_key: str = "ids",
    ) -> None:
        check_fresh_mode("mode", mode)
        self.path = path
        self.mode: Mode = mode
        self.keys = (logits_key, labels_key, ids_key)
        self._rec: BatchRecorder | None = None

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Records the batch's logits, labels and ids at the trainer's current epoch."""
        logits_key, labels_key, ids_key = self.keys
        # `type(...) is dict` first: Lightning hands over training_step's own dict, and the
        # abstract-class check costs more than the rest of this hook's Python.
        if type(outputs) is dict or isinstance(outputs, Mapping):
            logits = outputs.get(logits_key)
            labels = outputs.get(labels_key)
            ids = outputs.get(ids_key)
        else:
            raise ValueError(
                "DynamicsCallback: training_step must return a dict with 'loss' and the batch's "
                f"{logits_key!r}, {labels_key!r} and {ids_key!r}, got "
                f"{type(outputs).__name__}"
            )
        if logits is None or labels is None or ids is None:
            missing = [k for k in self.keys if outputs.get(k) is None]
            raise ValueError(
                f"DynamicsCallback: training_step's dict has no {missing}: return "
                f'{{"loss": loss, "{logits_key}": logits, "{labels_key}": y, "{ids_key}": ids}} '
                "(ids: integer example ids, e.g. from fastcarto.torch.IndexedDataset)"
            )
        epoch = int(trainer.current_epoch)
        if self._rec is None:
            resuming = getattr(trainer, "ckpt_path", None) is not None
            self._rec = BatchRecorder(
                self.path,
                rank=int(trainer.global_rank),
                world_size=int(trainer.world_size),
                mode="append" if resuming else self.mode,
                resume_epoch=epoch if resuming else None,
            )
        self._rec.record(logits, labels, ids, epoch, where="DynamicsCallback")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Publishes the epoch's recorded rows."""
        if self._rec is not None:
            self._rec.end_epoch(int(trainer.current_epoch))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Closes the recording."""
        self._close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Closes the recording, so what was recorded before the error stays readable."""
        self._close()  # what was recorded before the error stays readable

    def _close(self) -> None:
        if self._rec is not None:
            self._rec.close()
            self._rec = None
