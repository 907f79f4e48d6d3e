"""Synthetic knee MRI: the project's embedded default dataset.

One latent knee per case, described analytically in physical millimetres, rendered directly on each
view's own scan grid (sagittal, coronal, axial: thick slices, realistic headers) with proton-density
fat-suppressed contrast, partial volume, texture, bias field and Rician noise; 11 labelled structures and
8 findings that change the anatomy where a radiologist would look. See documentation/synthetic_data.md.

Public API::

    sample_case(seed, index, subset="train", size="tiny", ...) -> CaseSpec
    render_case(spec, views=None, noise=True, findings=None) -> RenderedCase
    generate_dataset(out, n_cases, n_unlabeled, n_test, size, seed, sites, prevalence, num_processes, complete)
    render_montage(dataset, case_id, out_png, subset=None)
"""

from orthodiff_auto.synthetic.generator import (
    CaseSpec,
    RenderedCase,
    RenderedScan,
    dataset_json,
    generate_dataset,
    render_case,
    sample_case,
)
from orthodiff_auto.synthetic.montage import render_montage
from orthodiff_auto.synthetic.spec import BEST_VIEW, DEFAULT_PREVALENCE, FINDINGS, LABELS, SITES, SIZES

__all__ = [
    "BEST_VIEW", "CaseSpec", "DEFAULT_PREVALENCE", "FINDINGS", "LABELS", "RenderedCase", "RenderedScan", "SITES",
    "SIZES", "dataset_json", "generate_dataset", "render_case", "sample_case", "render_montage",
]

