"""Run by tests/training/test_loop.py under torchrun (2 gloo processes): the generic loop with DDP on a toy
regression whose batches differ per rank and whose initial weights differ per rank (the Trainer seeds with
seed + rank); each rank writes the weights it ends with to OUT/rank<k>.pt."""

import sys
from pathlib import Path

import torch

from orthodiff_auto.training.config import make_config
from orthodiff_auto.training.distributed import distributed_device, shutdown
from orthodiff_auto.training.loop import Trainer
from tests.training.test_loop import ToyTask, _Batches


class RankToyTask(ToyTask):
    def batch_dataset(self, start, total, ctx):
        return _Batches(start, total, seed=100 + ctx.rank)  # each rank its own batches


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
