"""fastcarto.hf on a tiny BERT built from a config (no download): every example recorded once
per epoch under gradient accumulation, ids kept through remove_unused_columns, the map equals
fastcarto.compute on logits gathered by hand, bit-identical weights, and bad input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pytest
from helpers import raises
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("fastcarto.hf")
from fastcarto._first_wins import FirstWins  # noqa: E402

N, SEQ, EPOCHS = 32, 8, 2


def examples(with_ids: bool = True, n: int = N) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 50, (n, SEQ), generator=g)
    labels = (tokens[:, 0] % 3).tolist()
    out = []
    for i in range(n):
        ex: dict[str, Any] = {
            "input_ids": tokens[i],
            "attention_mask": torch.ones(SEQ, dtype=torch.long),
            "labels": labels[i],
            "comment": "dropped by remove_unused_columns",
        }
        if with_ids:
            ex["id"] = 1000 + i
        out.append(ex)
    return out


def model() -> Any:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=SEQ,
        num_labels=3,
    )
    return transformers.BertForSequenceClassification(config)


def args(tmp_path: Path, **kw: Any) -> Any:
    base = {
        "output_dir": str(tmp_path / "out"),
        "num_train_epochs": EPOCHS,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 2,
        "learning_rate": 1e-3,
        "report_to": [],
        "save_strategy": "no",
        "logging_strategy": "no",
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
    }
    return transformers.TrainingArguments(**{**base, **kw})


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    # The default collator, minus the text column it cannot stack.
    return transformers.default_data_collator(
        [{k: v for k, v in ex.items() if k != "comment"} for ex in batch]
    )


class Gathering(hf.DynamicsTrainer):  # type: ignore[misc]
    """Also keeps every training micro-batch's logits by hand."""

    gathered: dict[tuple[int, int], np.ndarray]

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, **kw: Any) -> Any:
        ids = self._dyn_ids
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kw)
        if ids is not None and model.training:
            for i, row in zip(ids.tolist(), outputs.logits.detach().float().numpy(), strict=True):
                self.gathered.setdefault((self._dyn_epoch, i), row)
        return (loss, outputs) if return_outputs else loss


@pytest.mark.parametrize("bf16", [False, True])
def test_trainer_records_every_example_once_per_epoch(tmp_path: Path, bf16: bool) -> None:
    data = examples()
    trainer = Gathering(
        model=model(),
        args=args(tmp_path, bf16=bf16),
        train_dataset=data,
        data_collator=collate,
        dynamics_dir=tmp_path / "dyn",
    )
    trainer.gathered = {}
    trainer.train()
    dm = fastcarto.compute(tmp_path / "dyn")
    df = dm.to_pandas()
    assert df["id"].tolist() == [1000 + i for i in range(N)]  # ids survived
    assert (df["n_epochs"] == EPOCHS).all()
    dense = np.stack(
        [np.stack([trainer.gathered[(e, 1000 + i)] for i in range(N)]) for e in range(EPOCHS)]
    )
    labels = np.array([ex["labels"] for ex in data])
    expected = fastcarto.compute(dense, labels, kind="logits").to_pandas()
    ours = df.drop(columns="id").reset_index(drop=True)
    for col in ours.columns:
        if ours[col].dtype.kind == "f":
            np.testing.assert_array_equal(ours[col], expected[col], err_msg=col)
        else:
            assert ours[col].tolist() == expected[col].tolist(), col

    # Training is unchanged by recording: bit-identical weights.
    plain = transformers.Trainer(
        model=model(), args=args(tmp_path, bf16=bf16), train_dataset=data, data_collator=collate
    )
    plain.train()
    ours_w, plain_w = trainer.model.state_dict(), plain.model.state_dict()
    for name, w in plain_w.items():
        assert torch.equal(ours_w[name], w), name


def test_positions_without_id_column(tmp_path: Path) -> None:
    trainer = hf.DynamicsTrainer(
        model=model(),
        args=args(tmp_path, num_train_epochs=1),
        train_dataset=examples(with_ids=False),
        data_collator=collate,
        dynamics_dir=tmp_path / "dyn",
    )
    trainer.train()
    assert fastcarto.compute(tmp_path / "dyn").to_pandas()["id"].tolist() == list(range(N))


def test_restart_refused_resume_appends(tmp_path: Path) -> None:
    def make(**kw: Any) -> Any:
        return hf.DynamicsTrainer(
            model=model(),
            args=args(tmp_path, num_train_epochs=1),
            train_dataset=examples(),
            data_collator=collate,
            dynamics_dir=tmp_path / "dyn",
            **kw,
        )

    make().train()
    with raises(FileExistsError, "mode='overwrite'"):
        make().train()  # the first run's recording is not silently mixed with this one
    make(dynamics_mode="overwrite").train()
    assert (fastcarto.compute(tmp_path / "dyn").to_pandas()["n_epochs"] == 1).all()


def test_resume_from_checkpoint_appends(tmp_path: Path) -> None:
    def make(epochs: int) -> Any:
        return hf.DynamicsTrainer(
            model=model(),
            args=args(tmp_path, num_train_epochs=epochs, save_strategy="epoch"),
            train_dataset=examples(),
            data_collator=collate,
            dynamics_dir=tmp_path / "dyn",
        )

    make(1).train()
    make(2).train(resume_from_checkpoint=True)  # continues the recording at epoch 1
    df = fastcarto.compute(tmp_path / "dyn").to_pandas()
    assert (df["n_epochs"] == 2).all() and len(df) == N


def test_bad_input(tmp_path: Path) -> None:
    class NoLogits(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.inner = model()

        def forward(self, input_ids: Any, attention_mask: Any, labels: Any) -> Any:
            return {"loss": self.inner(input_ids, attention_mask, labels=labels).loss}

    with raises(ValueError, "no 'logits'", "ForSequenceClassification"):
        hf.DynamicsTrainer(
            model=NoLogits(),
            args=args(tmp_path),
            train_dataset=examples(),
            data_collator=collate,
            dynamics_dir=tmp_path / "a",
        ).train()

    unlabeled = [{k: v for k, v in ex.items() if k != "labels"} for ex in examples()]
    with raises(ValueError, "no 'labels'"):
        hf.DynamicsTrainer(
            model=model(),
            args=args(tmp_path),
            train_dataset=unlabeled,
            data_collator=collate,
            dynamics_dir=tmp_path / "b",
        ).train()

    class Stream(torch.utils.data.IterableDataset):  # type: ignore[misc]
        def __iter__(self) -> Any:
            yield from examples(with_ids=False)

    with raises(ValueError, "no 'id' or 'idx' column", "dynamics_id_column="):
        hf.DynamicsTrainer(
            model=model(),
            args=args(tmp_path, max_steps=2),
            train_dataset=Stream(),
            dynamics_dir=tmp_path / "c",
        )
    with raises(ValueError, "dynamics_id_column='key' is not a column"):
        hf.DynamicsTrainer(
            model=model(),
            args=args(tmp_path),
            train_dataset=examples(),
            dynamics_dir=tmp_path / "d",
            dynamics_id_column="key",
        )
    with raises(TypeError, "dynamics_dir="):
        hf.DynamicsTrainer(model=model(), args=args(tmp_path), train_dataset=examples())


def test_first_record_wins() -> None:
    fw = FirstWins()
    assert fw.keep(np.array([3, 1, 3, 2]), 0).tolist() == [True, True, False, True]
    assert fw.keep(np.array([2, 5, 1 << 40, 1 << 40]), 0).tolist() == [False, True, True, False]
    assert fw.keep(np.array([1 << 40, 3]), 0).tolist() == [False, False]
    assert fw.keep(np.array([3, 1 << 40]), 1).tolist() == [True, True]  # a new epoch
    # Two ranks, each seeing both ranks' ids: exactly one record of each id survives.
    ranks = [FirstWins(), FirstWins()]
    steps = [([0, 1], [2, 3]), ([4, 5], [6, 0])]  # rank 1 repeats example 0 (padding)
    kept: list[int] = []
    for step in steps:
        for r, fwr in enumerate(ranks):
            mask = fwr.keep_across([np.array(s) for s in step], r, 0)
            kept += np.array(step[r])[mask].tolist()
    assert sorted(kept) == list(range(7))
    with raises(ValueError, "non-negative"):
        FirstWins().keep(np.array([-1]), 0)
    with raises(TypeError, "integers"):
        FirstWins().keep(np.array(["a"]), 0)


@given(
    batches=st.lists(
        st.tuples(
            st.integers(0, 2),  # epoch (epochs change only forward, as in training)
            st.lists(st.one_of(st.integers(0, 40), st.just(1 << 40)), max_size=12),
        ),
        max_size=12,
    )
)
def test_first_record_wins_matches_a_plain_reference(batches: list[tuple[int, list[int]]]) -> None:
    """The fast path (ids all new and distinct) and the general one give the rows a set of
    the epoch's recorded ids keeps."""
    fw = FirstWins()
    seen: set[int] = set()
    current = None
    for epoch, ids in sorted(batches, key=lambda b: b[0]):
        if epoch != current:
            current, seen = epoch, set()
        want = []
        for i in ids:
            want.append(i not in seen)
            seen.add(i)
        got = fw.keep(np.array(ids, dtype=np.int64), epoch)
        assert got.tolist() == want


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
