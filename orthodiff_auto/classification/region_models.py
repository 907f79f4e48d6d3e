"""Findings models (``reader.FindingsModel``) of the readers whose network reads each view's region of interest
(fine-tuned, noised, frozen diffusion features): the region is cut around the scan's predicted anatomy (the
field of view's centre without a segmentation) at the classification spacing, and the network's logits of one
case become probabilities."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from orthodiff_auto.classification.clinical_inputs import ClinicalEncoding
from orthodiff_auto.classification.reader import PreparedScan
from orthodiff_auto.data.clinical import ClinicalVariable, case_clinical_values, clinical_from_dicts
from orthodiff_auto.preprocessing.classification_input import ViewInput, centre_from_labels, cut_region, region_volume
from orthodiff_auto.training.device import autocast_for


class RegionModel:
    """A network on the views' regions of interest; subclasses say how it is called (``logits``)."""

    clinical_variables: tuple[ClinicalVariable, ...] = ()

    def __init__(self, network: nn.Module, extras: Mapping[str, Any], device: torch.device,
                 mixed_precision: bool = True):
        self.network = network.to(device).eval()
        self.views = list(extras.get("views") or [extras["view"]])
        self.inputs = {v: ViewInput.from_dict(d) for v, d in extras["inputs"].items()}
        self.device = device
        self.mixed_precision = mixed_precision

    def prepare(self, view: str, scan: PreparedScan) -> np.ndarray:
        """(1, *input_size): the region around the scan's predicted anatomy."""
        spec = self.inputs[view]
        centre = centre_from_labels(scan.labels) if spec.roi_source == "labels" else None
        return cut_region(region_volume(scan.data, scan.spacing, spec, centre), spec.input_size)

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array, np.float32)[None]).to(self.device)

    def logits(self, inputs: Mapping[str, np.ndarray], present: Sequence[str],
               clinical: Mapping[str, object] | None) -> torch.Tensor:
        raise NotImplementedError

    def probabilities(self, inputs: Mapping[str, np.ndarray], present: Sequence[str],
                      clinical: Mapping[str, object] | None = None) -> np.ndarray:
        with torch.no_grad(), autocast_for(self.device, self.mixed_precision):
            return torch.sigmoid(self.logits(inputs, present, clinical).float())[0].cpu().numpy()


class ViewModel(RegionModel):
    """One view's classifier: ``network(x)`` -> logits."""

    def logits(self, inputs, present, clinical):
        return self.network(self.tensor(inputs[self.views[0]]))


class MultiViewModel(RegionModel):
    """A model over several views called as ``network({view: x}, present)`` (absent views zero and masked),
    with the case's encoded clinical values when it has a tabular branch (``fusion=mpae``)."""

    def __init__(self, network: nn.Module, extras: Mapping[str, Any], device: torch.device,
                 mixed_precision: bool = True):
        super().__init__(network, extras, device, mixed_precision)
        head = extras.get("mpae") or {}
        self.encoding = ClinicalEncoding.from_dict(head["encoding"]) if head.get("encoding") else None
        self.clinical_variables = tuple(clinical_from_dicts(head["clinical"])) if self.encoding else ()

    def logits(self, inputs, present, clinical):
        mask = torch.tensor([[v in present for v in self.views]], device=self.device)
        x = {v: self.tensor(inputs[v]) if v in present
             else torch.zeros(1, 1, *self.inputs[v].input_size, device=self.device) for v in self.views}
        extra = {}
        if self.encoding is not None:
            q = self.encoding.encode(case_clinical_values(clinical, self.clinical_variables))
            extra["clinical"] = torch.from_numpy(q).to(self.device)
        return self.network(x, mask, **extra)["logits"]


__all__ = ["MultiViewModel", "RegionModel", "ViewModel"]
