"""Two-process CPU trainings for ``tests/test_integrations_distributed.py``.

``python distributed_child.py OUT`` is one rank of a Hugging Face ``Trainer`` run (the test
starts two, with the variables ``torchrun`` sets: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``; gloo backend). ``lightning_child.py`` is the Lightning run.

Each rank records through fastcarto into ``OUT/dyn`` and also saves, by hand, every training
forward pass's logits with the example ids, its epoch and its step in the epoch, to
``OUT/hand-{rank}.npz``: the test rebuilds the map from those.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

N = 31  # odd: the distributed sampler pads one rank with a repeated example
EPOCHS = 2
BATCH = 4
CLASSES = 3


class Hand:
    """The logits of each training forward pass on this rank, as the test reads them."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {"epoch": [], "step": [], "ids": [], "logits": []}
        self.epoch, self.step = -1, 0

    def new_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0

    def add(self, ids: Any, logits: Any) -> None:
        n = len(ids)
        self.rows["epoch"].append(np.full(n, self.epoch))
        self.rows["step"].append(np.full(n, self.step))
        self.rows["ids"].append(np.asarray(ids, dtype=np.int64))
        self.rows["logits"].append(logits.detach().float().cpu().numpy())
        self.step += 1

    def save(self, path: Path) -> None:
        np.savez(path, **{k: np.concatenate(v) for k, v in self.rows.items()})


def hf(out: Path) -> None:
    import fastcarto.hf
    import transformers

    transformers.logging.set_verbosity_error()
    rank = int(os.environ["RANK"])
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(N + 1, 64, (N, 8), generator=g)
    tokens[:, 0] = torch.arange(1, N + 1)  # the first token tells the example (for the hook)
    data = [
        {
            "input_ids": tokens[i],
            "attention_mask": torch.ones(8, dtype=torch.long),
            "labels": int(tokens[i, 1] % CLASSES),
            "id": 1000 + i,
        }
        for i in range(N)
    ]
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=8,
        num_labels=CLASSES,
    )
    model = transformers.BertForSequenceClassification(config)
    hand = Hand()

    def hook(module: Any, args: Any, kwargs: Any, output: Any) -> None:
        if module.training:
            hand.add(kwargs["input_ids"][:, 0].cpu().numpy() - 1 + 1000, output.logits)

    model.register_forward_hook(hook, with_kwargs=True)

    class Epochs(transformers.TrainerCallback):  # type: ignore[misc]
        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            hand.new_epoch(hand.epoch + 1)

    targs = transformers.TrainingArguments(
        output_dir=str(out / "hf-out"),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=BATCH,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        ddp_backend="gloo",
    )
    trainer = fastcarto.hf.DynamicsTrainer(
        model=model,
        args=targs,
        train_dataset=data,
        dynamics_dir=out / "dyn",
        callbacks=[Epochs()],
    )
    assert trainer.args.world_size == 2, trainer.args.world_size
    trainer.train()
    hand.save(out / f"hand-{rank}.npz")


if __name__ == "__main__":
    torch.set_num_threads(1)
    hf(Path(sys.argv[1]))
