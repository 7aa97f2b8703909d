"""PyTorch training loops without a framework: :class:`IndexedDataset` gives every batch its
examples' ids; :meth:`fastcarto.Recorder.record` takes the batch's tensors as they are, CUDA ones
included (copied off the GPU without stalling the training stream).

>>> import torch, fastcarto.torch
>>> from torch.utils.data import DataLoader, TensorDataset
>>> data = TensorDataset(torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 1, 0]))
>>> x, y, idx = next(iter(DataLoader(fastcarto.torch.IndexedDataset(data), batch_size=4)))
>>> idx.tolist()
[0, 1, 2, 3]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.utils.data

__all__ = ["IndexedDataset"]


class IndexedDataset(torch.utils.data.Dataset):  # type: ignore[misc]
    """Wraps a map-style dataset so that each example carries its position as its id.

    ``dataset[i]`` becomes ``(*dataset[i], i)`` for a tuple, ``(dataset[i], i)`` for anything
    else, and ``{**dataset[i], key: i}`` for a dict (a Hugging Face-style example), so the
    default ``collate_fn`` gives each batch a tensor of its examples' positions, whatever the
    sampler and shuffling: pass it to :meth:`fastcarto.Recorder.record` as ``ids=``.

    Parameters
    ----------
    dataset:
        A map-style dataset (``__getitem__`` and ``__len__``). An iterable-style dataset has no
        positions: make it yield an id with each example instead.
    key:
        The id's key in dict examples (default ``"idx"``).

    Raises
    ------
    TypeError
        An iterable-style dataset (it has no positions).
    ValueError
        On access: a dict example that already has a ``key`` field.

    Examples
    --------
    >>> import torch, fastcarto.torch
    >>> data = [{"x": torch.tensor([1.0])}, {"x": torch.tensor([2.0])}]
    >>> indexed = fastcarto.torch.IndexedDataset(data, key="id")
    >>> len(indexed), indexed[1]["id"]
    (2, 1)
    """

    def __init__(self, dataset: Any, *, key: str = "idx") -> None:
        if isinstance(dataset, torch.utils.data.IterableDataset) or not (
            hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
        ):
            raise TypeError(
                f"IndexedDataset needs a map-style dataset (__getitem__ and __len__), got "
                f"{type(dataset).__name__}: an iterable dataset must yield each example's id "
                "itself"
            )
        self.dataset = dataset
        self.key = key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        if isinstance(item, Mapping):
            if self.key in item:
                raise ValueError(
                    f"the dataset's examples already have a {self.key!r} field: use it as the "
                    f"id, or pass IndexedDataset(..., key=...) another name"
                )
            return {**item, self.key: index}
        if isinstance(item, tuple):
            return (*item, index)
        return (item, index)
