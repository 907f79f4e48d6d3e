"""Run by tests/training/test_loop.py under torchrun (2 gloo processes): the generic loop with DDP on a toy
regression whose batches differ per rank and whose initial weights differ per rank (the Trainer seeds with
seed + rank); each rank writes the weights it ends with to OUT/rank<k>.pt."""

import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from orthodiff_auto.training.config import make_config
from orthodiff_auto.training.distributed import distributed_device, shutdown
from orthodiff_auto.training.loop import Trainer
from tests.training.test_loop import ToyTask


class _RankBatches(Dataset):
    def __init__(self, start, total, rank):
        self.start, self.total, self.rank = start, total, rank

    def __len__(self):
        return self.total - self.start

    def __getitem__(self, i):
        rng = np.random.default_rng([self.rank, self.start + i])
        x = rng.normal(size=(8, 4)).astype(np.float32)
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(x @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32))}


class RankToyTask(ToyTask):
    def batch_dataset(self, start, total, ctx):
        return _RankBatches(start, total, ctx.rank)


def main(out: Path) -> None:
    config = make_config("smoke", ["num_epochs=2", "iterations_per_epoch=3", "num_workers=0", "momentum=0.9"])
    device, ctx = distributed_device("cpu")
    try:
        trainer = Trainer(RankToyTask(), config, out, device, ctx, log=lambda *_: None)
        trainer.fit()
        torch.save(trainer.model.state_dict(), out / f"rank{ctx.rank}.pt")
    finally:
        shutdown(ctx)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
