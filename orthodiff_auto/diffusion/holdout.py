"""Which of a view's pretraining scans are held out for the validation loss, and which are trained on.

The validation loss of diffusion pretraining is only a measure of how well the denoiser generalises when it is
computed on scans the training batches never draw. A seeded fraction of the scans (at least one) is held out;
the choice ranks the case ids by a hash of (seed, case id), so it is the same in every process and on every run,
whatever order the ids come in, and adding a scan moves at most one other scan between the two sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from orthodiff_auto.utils.seeding import stable_seed


@dataclass(frozen=True)
class PretrainingSplit:
    """``training``: the scans the batches draw; ``validation``: the scans the validation loss is computed on.
    ``reuses_training``: nothing could be held out (a single scan, or holding out switched off), so the
    validation scans are the training scans and the validation loss measures fit, not generalisation."""

    training: tuple[str, ...]
    validation: tuple[str, ...]
    reuses_training: bool

    @property
    def held_out(self) -> tuple[str, ...]:
        return () if self.reuses_training else self.validation


def split_pretraining_scans(case_ids: Sequence[str], fraction: float, seed: int) -> PretrainingSplit:
    """Hold out ``round(fraction * n)`` of the ``n`` scans (at least one, and never all) for validation."""
    ids = sorted(set(case_ids))
    if fraction <= 0 or len(ids) < 2:
        return PretrainingSplit(tuple(ids), tuple(ids), reuses_training=True)
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    ranked = sorted(ids, key=lambda cid: (stable_seed(str(seed), "pretraining-validation", cid), cid))
    held_out = set(ranked[:count])
    return PretrainingSplit(tuple(c for c in ids if c not in held_out), tuple(c for c in ids if c in held_out),
                            reuses_training=False)


__all__ = ["PretrainingSplit", "split_pretraining_scans"]
