"""A plain PyTorch training loop recording its training dynamics: IndexedDataset gives each
batch its examples' ids, Recorder.record takes the tensors as they are (on a GPU, the copy to
the host does not stall training).

    python examples/integration_torch.py [--out out/torch-dynamics] [--epochs 10]
"""

from __future__ import annotations

import argparse

import fastcarto
import fastcarto.torch
import torch
from sklearn.datasets import load_digits

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default="out/torch-dynamics")
parser.add_argument("--epochs", type=int, default=10)
args = parser.parse_args()

device = "cuda" if torch.cuda.is_available() else "cpu"
X, y = load_digits(return_X_y=True)
data = torch.utils.data.TensorDataset(torch.tensor(X / 16, dtype=torch.float32), torch.tensor(y))
loader = torch.utils.data.DataLoader(
    fastcarto.torch.IndexedDataset(data), batch_size=64, shuffle=True
)
model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
model.to(device)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)

with fastcarto.Recorder(args.out, kind="logits", n_examples=len(data), mode="overwrite") as rec:
    for epoch in range(args.epochs):
        for xb, yb, idx in loader:
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            loss = torch.nn.functional.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.record(logits, yb, epoch=epoch, ids=idx)
        rec.end_epoch(epoch)

dm = fastcarto.compute(args.out)
print(dm.regions().value_counts())
