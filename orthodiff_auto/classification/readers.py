"""The built-in readers, registered in ``reader.READERS`` by importing their modules (one module each):

- ``finetune`` (the default): the plans' encoder trained on each view's region of interest, and the fused
  models of a fold's views (trained gate, concat, cross-attention; ``stacked`` and ``mpae`` fitted out of fold);
- ``noised``: the pretrained denoiser's encoder fine-tuned on inputs noised at a fixed timestep;
- ``diffusion``: light heads on frozen denoiser features (``diffusion_reader``);
- ``anatomy``: a logistic regression on features of the fold's predicted segmentations (``anatomy_fold``).

A new reader is one module that builds a ``reader.Reader`` and registers it; importing it here makes it a
built-in (``classifier_features=<name>``), nothing else changes.
"""

from __future__ import annotations

from orthodiff_auto.classification import anatomy_fold, diffusion_reader, finetune, noised
from orthodiff_auto.classification.reader import READERS, Reader

BUILT_IN: tuple[Reader, ...] = (finetune.READER, noised.READER, diffusion_reader.READER, anatomy_fold.READER)

__all__ = ["BUILT_IN", "READERS"]
