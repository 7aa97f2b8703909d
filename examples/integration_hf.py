"""A Hugging Face Trainer recording its training dynamics: a tiny BERT built from a config
(nothing is downloaded) classifying synthetic token sequences.

    python examples/integration_hf.py [--out out/hf] [--examples 2000] [--epochs 3]
"""

from __future__ import annotations

import argparse

import fastcarto
import fastcarto.hf
import torch
import transformers

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", default="out/hf")
parser.add_argument("--examples", type=int, default=2000)
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

torch.manual_seed(0)
tokens = torch.randint(1, 100, (args.examples, 16))
labels = (tokens[:, :4].sum(1) % 3).tolist()  # a rule the model can learn
train = [
    {
        "input_ids": tokens[i],
        "attention_mask": torch.ones(16, dtype=torch.long),
        "labels": labels[i],
        "id": i,
    }
    for i in range(args.examples)
]
config = transformers.BertConfig(
    vocab_size=100,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=16,
    num_labels=3,
)
trainer = fastcarto.hf.DynamicsTrainer(
    model=transformers.BertForSequenceClassification(config),
    args=transformers.TrainingArguments(
        output_dir=f"{args.out}/checkpoints",
        num_train_epochs=args.epochs,
        per_device_train_batch_size=32,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
    ),
    train_dataset=train,
    dynamics_dir=f"{args.out}/dynamics",
    dynamics_mode="overwrite",
)
trainer.train()
dm = fastcarto.compute(f"{args.out}/dynamics")
print(dm.regions().value_counts())
