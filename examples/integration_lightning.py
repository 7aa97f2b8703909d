"""A PyTorch Lightning training recording its training dynamics with DynamicsCallback: the
training_step returns the batch's logits, labels and ids with the loss.

    python examples/integration_lightning.py [--out out/lightning] [--epochs 10]
"""

from __future__ import annotations

import argparse

import fastcarto
import fastcarto.lightning
import fastcarto.torch
import lightning
import torch
from sklearn.datasets import load_digits

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default="out/lightning")
parser.add_argument("--epochs", type=int, default=10)
args = parser.parse_args()


class Net(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
        )

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        logits = self.net(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        return {"loss": loss, "logits": logits, "labels": y, "ids": idx}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


X, y = load_digits(return_X_y=True)
data = torch.utils.data.TensorDataset(torch.tensor(X / 16, dtype=torch.float32), torch.tensor(y))
loader = torch.utils.data.DataLoader(
    fastcarto.torch.IndexedDataset(data), batch_size=64, shuffle=True
)
trainer = lightning.Trainer(
    max_epochs=args.epochs,
    logger=False,
    enable_checkpointing=False,
    callbacks=[fastcarto.lightning.DynamicsCallback(args.out, mode="overwrite")],
)
trainer.fit(Net(), loader)
print(fastcarto.compute(args.out).regions().value_counts())
