"""``python lightning_child.py OUT``: ``lightning.Trainer(accelerator="cpu", devices=2,
strategy="ddp_spawn")`` with ``fastcarto.lightning.DynamicsCallback`` recording into
``OUT/dyn``; each rank also saves its training steps' logits by hand (``distributed_child.Hand``)
for ``tests/test_integrations_distributed.py``. The module is at top level so that the spawned
processes can unpickle it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import fastcarto.lightning
import lightning
import torch
from distributed_child import BATCH, CLASSES, EPOCHS, Hand, N
from fastcarto.torch import IndexedDataset


class Net(lightning.LightningModule):  # type: ignore[misc]
    def __init__(self, out: Path) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, CLASSES)
        )
        self.out = out
        self.hand = Hand()

    def on_train_epoch_start(self) -> None:
        self.hand.new_epoch(self.current_epoch)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y, idx = batch
        logits = self.net(x)
        self.hand.add(idx.numpy(), logits)
        loss = torch.nn.functional.cross_entropy(logits, y)
        return {"loss": loss, "logits": logits, "labels": y, "ids": idx}

    def on_train_end(self) -> None:
        self.hand.save(self.out / f"hand-{self.global_rank}.npz")

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(out: Path) -> None:
    lightning.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    loader = torch.utils.data.DataLoader(
        IndexedDataset(torch.utils.data.TensorDataset(x, y)), batch_size=BATCH, shuffle=True
    )
    trainer = lightning.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[fastcarto.lightning.DynamicsCallback(out / "dyn")],
    )
    trainer.fit(Net(out), loader)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]))
