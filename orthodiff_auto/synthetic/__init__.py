"""Synthetic knee, ankle and shoulder MRI: the project's embedded datasets (the knee is the default).

One latent joint per case, described analytically in physical millimetres, rendered directly on each
view's own scan grid (sagittal, coronal, axial: thick slices, realistic headers) with proton-density
fat-suppressed contrast, partial volume, texture, bias field and Rician noise; labelled structures and
findings that change the anatomy where a radiologist would look. A joint is a small description
(``joint.Joint``, registered in ``joints``); everything else is shared. See documentation/synthetic_data.md.

Public API::

    sample_case(seed, index, subset="train", size="tiny", ..., joint="knee") -> CaseSpec
    render_case(spec, views=None, noise=True, findings=None) -> RenderedCase
    generate_dataset(out, n_cases, n_unlabeled, n_test, size, seed, sites, prevalence, num_processes, complete,
                     joint="knee")
    render_montage(dataset, case_id, out_png, subset=None)

``FINDINGS``, ``LABELS``, ``BEST_VIEW`` and ``DEFAULT_PREVALENCE`` are the knee's; other joints' are in
``JOINTS[name]``.
"""

from orthodiff_auto.synthetic.generator import dataset_json, generate_dataset
from orthodiff_auto.synthetic.cases import CaseSpec, RenderedCase, RenderedScan, render_case, sample_case
from orthodiff_auto.synthetic.joints import JOINTS, get_joint
from orthodiff_auto.synthetic.knee import BEST_VIEW, DEFAULT_PREVALENCE, FINDINGS, LABELS
from orthodiff_auto.synthetic.montage import render_montage
from orthodiff_auto.synthetic.spec import SITES, SIZES

__all__ = [
    "BEST_VIEW", "CaseSpec", "DEFAULT_PREVALENCE", "FINDINGS", "JOINTS", "LABELS", "RenderedCase", "RenderedScan",
    "SITES", "SIZES", "dataset_json", "generate_dataset", "get_joint", "render_case", "sample_case", "render_montage",
]

