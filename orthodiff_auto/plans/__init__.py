"""Plans: typed dataclasses (``schema``), budgets, the planner, topology and memory estimate.

Typical use::

    from orthodiff_auto.plans import Plans
    plans = Plans.load(preprocessed_dir / "plans.json")
    vp = plans.view("sag")
    net = build_segmentation_network(vp.segmentation.architecture, 1, plans.num_classes)
"""

from orthodiff_auto.plans.budget import parse_budget
from orthodiff_auto.plans.schema import (
    SCHEMA_VERSION,
    ArchitectureSpec,
    Budget,
    ClassificationPlan,
    DiffusionPlan,
    NormalizationPlan,
    PlanError,
    Plans,
    ResamplingPlan,
    SegmentationPlan,
    ViewPlan,
)

__all__ = [
    "SCHEMA_VERSION",
    "ArchitectureSpec",
    "Budget",
    "ClassificationPlan",
    "DiffusionPlan",
    "NormalizationPlan",
    "PlanError",
    "Plans",
    "ResamplingPlan",
    "SegmentationPlan",
    "ViewPlan",
    "parse_budget",
]
