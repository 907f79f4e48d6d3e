"""Batch datasets: index k -> the whole training batch of iteration k, a pure function of (seed, rank, k).

Used through ``torch.utils.data.DataLoader(batch_size=None, num_workers=N)``, so batches are built in
background processes, arrive in order, and a resumed run replays exactly the batches it would have seen.
"""

from __future__ import annotations

import contextlib
import random
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from orthodiff_auto.training.patch_sampling import crop_patch, patch_bbox


@contextlib.contextmanager
def seeded_numpy_global(seed_sequence: Sequence[int]):
    """batchgenerators draws from numpy's and Python's global generators: seed both for one batch, then
    restore them, so a batch is reproducible and the caller's random state is untouched."""
    np_state, py_state = np.random.get_state(), random.getstate()
    seed = int(np.random.SeedSequence(list(seed_sequence)).generate_state(1)[0])
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class CaseSource:
    """What a batch dataset needs from preprocessed data (implemented by the preprocessed dataset)."""

    def load(self, case_id: str):  # -> (data (C, *spatial), seg (1, *spatial) | None, properties dict)
        raise NotImplementedError


class PatchBatches(Dataset):
    """Random patches of labelled cases with foreground oversampling and augmentation.

    ``foreground_locations(properties)`` maps a case's properties to {class: (N, ndim) voxel coordinates}
    (precomputed once per case by preprocessing, as nnU-Net's class_locations). The last
    ``round(batch_size * oversample_foreground)`` samples of every batch are forced to contain foreground, as
    in nnU-Net, centred on a class chosen by ``foreground_class_choice`` (``patch_sampling``; "voxels" weighs
    the classes by ``foreground_counts(properties)``, {class: voxel count}).
    """

    def __init__(
        self, source: CaseSource, case_ids: Sequence[str], sample_patch_size: Sequence[int], batch_size: int,
        transforms: Callable | None, start: int, total: int, seed: int, rank: int = 0,
        oversample_foreground: float = 0.33,
        foreground_locations: Callable[[Mapping], Mapping[int, np.ndarray]] | None = None,
        with_seg: bool = True, foreground_class_choice: str = "uniform",
        foreground_counts: Callable[[Mapping], Mapping[int, int]] | None = None,
    ):
        if not case_ids:
            raise ValueError("no cases to draw patches from")
        self.source = source
        self.case_ids = sorted(case_ids)
        self.sample_patch_size = tuple(int(s) for s in sample_patch_size)
        self.batch_size = batch_size
        self.transforms = transforms
        self.start, self.total = start, total
        self.seed, self.rank = seed, rank
        self.n_forced = int(round(batch_size * oversample_foreground))
        self.foreground_locations = foreground_locations
        self.with_seg = with_seg
        self.foreground_class_choice = foreground_class_choice
        self.foreground_counts = foreground_counts

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        iteration = self.start + index
        rng = np.random.default_rng([self.seed, self.rank, iteration])
        chosen = rng.choice(len(self.case_ids), self.batch_size, replace=True)
        datas, segs = [], []
        for j, c in enumerate(chosen):
            data, seg, props = self.source.load(self.case_ids[c])
            force = j >= self.batch_size - self.n_forced
            locations = self.foreground_locations(props) if (force and self.foreground_locations) else None
            counts = self.foreground_counts(props) if (force and self.foreground_counts) else None
            bbox = patch_bbox(data.shape[1:], self.sample_patch_size, rng, locations, force_foreground=force,
                              class_choice=self.foreground_class_choice, class_voxel_counts=counts)
            datas.append(crop_patch(data, bbox, 0).astype(np.float32, copy=False))
            if self.with_seg:
                # outside the image counts as background, as nnU-Net pads labels with 0
                segs.append(crop_patch(seg, bbox, 0).astype(np.float32, copy=False))
        batch = {"data": np.stack(datas)}
        if self.with_seg:
            batch["seg"] = np.stack(segs)
        if self.transforms is not None:
            with seeded_numpy_global([self.seed, self.rank, iteration, 1]):
                batch = self.transforms(**batch)
        out = {"data": torch.from_numpy(np.ascontiguousarray(batch["data"], dtype=np.float32))}
        if self.with_seg:
            out["seg"] = torch.from_numpy(np.ascontiguousarray(np.round(batch["seg"]), dtype=np.int16))
        return out
