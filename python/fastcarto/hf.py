"""Training dynamics from a Hugging Face ``transformers.Trainer``: :class:`DynamicsTrainer`, or
:class:`DynamicsMixin` for a Trainer subclass of your own.

    trainer = fastcarto.hf.DynamicsTrainer(
        model=model, args=args, train_dataset=train, dynamics_dir="runs/dynamics"
    )
    trainer.train()
    dm = fastcarto.compute("runs/dynamics")

The logits of every training forward pass are recorded, with each example's id, as the model
computes them (no second pass over the data), through :class:`fastcarto.Recorder`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import transformers

from ._recorder import Mode
from ._training import BatchRecorder, check_fresh_mode

__all__ = ["DynamicsMixin", "DynamicsTrainer"]

ID_COLUMNS = ("id", "idx")


class DynamicsMixin:
    """Adds training-dynamics recording to a ``transformers.Trainer`` subclass.

    Put it first: ``class MyTrainer(fastcarto.hf.DynamicsMixin, MyTrainerBase)``.

    What is recorded: for each training micro-batch (gradient accumulation records each one
    as it comes), the model's ``logits`` (shape ``(batch, classes)``; float16/bfloat16 under
    mixed precision are widened to float32), the batch's ``labels`` and ids, at the epoch the
    Trainer is in. Evaluation passes are not recorded. The first record of an (epoch, id)
    wins: repeats of an example in one epoch (a sampler with replacement, a distributed
    sampler padding the last batch) are dropped, and across ranks the lower rank's record
    wins (each rank sees the others' ids of the step: one small all-gather per step when
    there are several processes). Recording reads the outputs only: the weights are
    bit-identical with and without it.

    Parameters
    ----------
    args, kwargs:
        The Trainer's own arguments (``model``, ``args``, ``train_dataset``, ...).
    dynamics_dir:
        Directory of the recording (a :class:`fastcarto.Recorder`'s segments; with several
        processes, one shard per rank).
    dynamics_id_column:
        The id column of the training dataset (default: ``"id"`` or ``"idx"``, whichever it
        has). It is kept through ``remove_unused_columns`` and taken out of the batch before the
        model sees it. Ids must be integers. Without one, ids are the examples' positions in
        the dataset (a map-style dataset is wrapped to carry them).
    dynamics_mode:
        The recorder's ``mode``: ``"create"`` (default) refuses a directory that holds a
        recording, ``"overwrite"`` replaces it. ``trainer.train(resume_from_checkpoint=...)``
        continues the recording instead (``mode="append"``), from the epoch of the checkpoint.

    Raises
    ------
    TypeError
        No ``dynamics_dir``.
    ValueError
        An unknown ``dynamics_mode``, no ``train_dataset``, an id column the dataset lacks,
        or examples with no id and no position. While training: a batch without the ids or
        the labels (a custom collator must keep them), or a model output without
        ``logits``.
    FileExistsError
        ``dynamics_dir`` already holds a recording (``dynamics_mode="create"``).

    Examples
    --------
    A Trainer subclass of your own gains recording; examples without an id column are
    numbered by position:

    >>> import tempfile, torch, transformers, fastcarto, fastcarto.hf
    >>> config = transformers.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1,
    ...     num_attention_heads=2, intermediate_size=8, max_position_embeddings=4, num_labels=2)
    >>> _ = torch.manual_seed(0)
    >>> model = transformers.BertForSequenceClassification(config)
    >>> data = [{"input_ids": torch.tensor([i, 1, 2, 3]), "labels": i % 2} for i in range(8)]
    >>> tmp = tempfile.TemporaryDirectory()
    >>> args = transformers.TrainingArguments(tmp.name, num_train_epochs=2, report_to=[],
    ...     per_device_train_batch_size=4, save_strategy="no", use_cpu=True, disable_tqdm=True)
    >>> class MyTrainer(fastcarto.hf.DynamicsMixin, transformers.Trainer):
    ...     pass
    >>> trainer = MyTrainer(model=model, args=args, train_dataset=data,
    ...                     dynamics_dir=tmp.name + "/dynamics")
    >>> trainer.train_dataset[5]["idx"]
    5
    >>> tmp.cleanup()
    """

    if TYPE_CHECKING:  # what transformers.Trainer provides to this mixin
        train_dataset: Any
        args: Any
        label_names: Any
        _signature_columns: Any

        def add_callback(self, callback: Any) -> None: ...

    def __init__(
        self,
        *args: Any,
        dynamics_dir: str | os.PathLike[str] | None = None,
        dynamics_id_column: str | None = None,
        dynamics_mode: Mode = "create",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if dynamics_dir is None:
            raise TypeError(f"{type(self).__name__} needs dynamics_dir=, the recording's directory")
        check_fresh_mode("dynamics_mode", dynamics_mode)
        self._dyn_dir = dynamics_dir
        self._dyn_mode: Mode = dynamics_mode
        self._dyn_resuming = False
        self._dyn: BatchRecorder | None = None
        self._dyn_epoch = 0
        self._dyn_ids: Any = None
        self._dyn_column = self._dyn_find_ids(dynamics_id_column)
        self.add_callback(_EpochCallback(self))

    # -- the id column -------------------------------------------------------------------------

    def _dyn_find_ids(self, column: str | None) -> str:
        data = self.train_dataset
        if data is None:
            raise ValueError("recording training dynamics needs a train_dataset")
        names = _column_names(data)
        if column is not None:
            if names is not None and column not in names:
                raise ValueError(
                    f"dynamics_id_column={column!r} is not a column of the training dataset "
                    f"(its columns: {sorted(names)})"
                )
            return column
        for name in ID_COLUMNS:
            if names is not None and name in names:
                return name
        # No ids: the examples' positions, carried by the dataset itself.
        if hasattr(data, "add_column") and hasattr(data, "column_names"):  # datasets.Dataset
            self.train_dataset = data.add_column("idx", list(range(len(data))))
            return "idx"
        if hasattr(data, "__getitem__") and hasattr(data, "__len__") and _dict_examples(data):
            from .torch import IndexedDataset

            self.train_dataset = IndexedDataset(data, key="idx")
            return "idx"
        raise ValueError(
            "the training dataset has no 'id' or 'idx' column and its examples have no "
            "positions (an iterable or shuffled stream): add an integer id column, or name it "
            "with dynamics_id_column="
        )

    def _set_signature_columns_if_needed(self) -> None:
        # remove_unused_columns keeps what the model's forward takes: and the ids.
        super()._set_signature_columns_if_needed()  # type: ignore[misc]
        columns = self._signature_columns
        if columns is not None and self._dyn_column not in columns:
            columns.append(self._dyn_column)

    # -- recording -----------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Trains as the Trainer does; resuming a checkpoint continues the recording."""
        self._dyn_resuming = resume_from_checkpoint not in (None, False)
        return super().train(resume_from_checkpoint, *args, **kwargs)  # type: ignore[misc]

    def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's step, with the batch's ids taken out before the model sees it."""
        # The ids leave the batch here, on the host, before it moves to the device.
        inputs = dict(inputs)
        self._dyn_ids = inputs.pop(self._dyn_column, None)
        if self._dyn_ids is None:
            raise ValueError(
                f"the training batch has no {self._dyn_column!r} field: a custom data collator "
                "must keep it"
            )
        try:
            return super().training_step(model, inputs, *args, **kwargs)  # type: ignore[misc]
        finally:
            self._dyn_ids = None

    def compute_loss(
        self, model: Any, inputs: Any, return_outputs: bool = False, **kwargs: Any
    ) -> Any:
        """The Trainer's loss; records the logits of each training micro-batch."""
        ids = self._dyn_ids
        inputs = {k: v for k, v in inputs.items() if k != self._dyn_column}
        if ids is None or not model.training:  # evaluation
            return super().compute_loss(  # type: ignore[misc]
                model, inputs, return_outputs=return_outputs, **kwargs
            )
        label_name = (self.label_names or ["labels"])[0]
        labels = inputs.get(label_name)
        if labels is None:
            raise ValueError(
                f"the training batch has no {label_name!r}: recording training dynamics needs "
                "each example's label in the batch (or set TrainingArguments(label_names=...))"
            )
        loss, outputs = super().compute_loss(  # type: ignore[misc]
            model, inputs, return_outputs=True, **kwargs
        )
        logits = _logits(outputs)
        self._dyn_recorder().record(logits, labels, ids, self._dyn_epoch, where="the Trainer")
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's evaluation step, without the id column (nothing is recorded)."""
        inputs = {k: v for k, v in inputs.items() if k != self._dyn_column}
        return super().prediction_step(model, inputs, *args, **kwargs)  # type: ignore[misc]

    def _dyn_recorder(self) -> BatchRecorder:
        if self._dyn is None:
            args = self.args
            self._dyn = BatchRecorder(
                self._dyn_dir,
                rank=args.process_index,
                world_size=args.world_size,
                mode="append" if self._dyn_resuming else self._dyn_mode,
                resume_epoch=self._dyn_epoch if self._dyn_resuming else None,
            )
        return self._dyn


class DynamicsTrainer(DynamicsMixin, transformers.Trainer):  # type: ignore[misc]
    """``transformers.Trainer`` that records training dynamics to ``dynamics_dir``.

    See :class:`DynamicsMixin` for what is recorded and the errors raised.

    Parameters
    ----------
    args, kwargs:
        The Trainer's own arguments (``model``, ``args``, ``train_dataset``, ...).
    dynamics_dir, dynamics_id_column, dynamics_mode:
        As in :class:`DynamicsMixin`.

    Examples
    --------
    A two-epoch run of a tiny BERT built from a config (no download):

    >>> import tempfile, torch, transformers, fastcarto, fastcarto.hf
    >>> config = transformers.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1,
    ...     num_attention_heads=2, intermediate_size=8, max_position_embeddings=4, num_labels=2)
    >>> _ = torch.manual_seed(0)
    >>> model = transformers.BertForSequenceClassification(config)
    >>> data = [{"input_ids": torch.tensor([i, 1, 2, 3]), "labels": i % 2} for i in range(8)]
    >>> tmp = tempfile.TemporaryDirectory()
    >>> args = transformers.TrainingArguments(tmp.name, num_train_epochs=2, report_to=[],
    ...     per_device_train_batch_size=4, save_strategy="no", use_cpu=True, disable_tqdm=True)
    >>> trainer = fastcarto.hf.DynamicsTrainer(model=model, args=args, train_dataset=data,
    ...                                        dynamics_dir=tmp.name + "/dynamics")
    >>> trainer.remove_callback(transformers.PrinterCallback)  # no metrics printed
    >>> _ = trainer.train()
    >>> dm = fastcarto.compute(tmp.name + "/dynamics")
    >>> len(dm), dm.to_pandas()["n_epochs"].unique().tolist()
    (8, [2])
    >>> tmp.cleanup()
    """


class _EpochCallback(transformers.TrainerCallback):  # type: ignore[misc]
    def __init__(self, trainer: DynamicsMixin) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # state.epoch is the epochs done so far (fractional when resumed mid-epoch).
        self.trainer._dyn_epoch = math.floor((state.epoch or 0.0) + 1e-9)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.trainer._dyn is not None:
            self.trainer._dyn.end_epoch(self.trainer._dyn_epoch)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.trainer._dyn is not None:
            self.trainer._dyn.close()
            self.trainer._dyn = None


def _logits(outputs: Any) -> Any:
    logits = None
    if isinstance(outputs, Mapping):
        logits = outputs.get("logits")
    else:
        logits = getattr(outputs, "logits", None)
    if logits is None:
        keys = list(outputs.keys()) if isinstance(outputs, Mapping) else type(outputs).__name__
        raise ValueError(
            f"the model's output has no 'logits' (it has {keys}): recording training dynamics "
            "needs a classification head's logits, e.g. an AutoModelForSequenceClassification"
        )
    return logits


def _column_names(data: Any) -> set[str] | None:
    names = getattr(data, "column_names", None)
    if names is not None:
        return set(names)
    if _dict_examples(data):
        return set(data[0])
    return None


def _dict_examples(data: Any) -> bool:
    try:
        return len(data) > 0 and isinstance(data[0], Mapping)
    except Exception:
        return False
