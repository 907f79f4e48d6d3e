"""Human-readable rendering of plans (``orthodiff show_plans``)."""

from __future__ import annotations

from pathlib import Path

from orthodiff_auto.data.views import VIEW_NAMES
from orthodiff_auto.plans.schema import Plans


def _x(values, fmt: str = "{}") -> str:
    return "x".join(fmt.format(v) for v in values)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def format_plans(plans: Plans) -> str:
    """A compact table per task (segmentation, classification, diffusion) with one row per view, and one row per
    view and segmentation configuration."""
    b = plans.budget
    out = [f"Plans for {plans.dataset_name!r} ({plans.modality}); budget {b} ({b.source}, {b.memory_gb:g} GB); "
           f"schema {plans.schema_version}",
           f"labels: {len(plans.labels)} classes incl. background"
           + (f", ignore label {plans.ignore_label}" if plans.ignore_label is not None else "")
           + f"; findings: {len(plans.findings)}",
           "Spatial sizes are in preprocessed order: through-plane axis first, then in-plane."]
    for view, vp in plans.views.items():
        if vp.adapted_from is not None:
            a = vp.adapted_from
            out.append(f"{VIEW_NAMES.get(view, view)}: architecture, normalisation and spacing adopted from "
                       f"{a.encoder} (pretrained on {a.dataset_name!r}, view {a.view})")
    out.append("")
    seg_rows, cfg_rows, cls_rows, dif_rows, pre_rows = [], [], [], [], []
    for view, vp in plans.views.items():
        name = VIEW_NAMES.get(view, view)
        for config in vp.configuration_names:
            c = vp.configuration(config)
            cfg_rows.append([name, config, _x(c.target_spacing, "{:.3g}"), _x(c.median_shape_after_resampling),
                             _x(c.segmentation.patch_size), str(c.segmentation.batch_size),
                             str(c.segmentation.architecture.n_stages), c.data_identifier, c.previous_stage or "-"])
        s, a = vp.segmentation, vp.segmentation.architecture
        seg_rows.append([
            name, _x(vp.target_spacing, "{:.3g}"), _x(vp.median_shape_after_resampling), _x(s.patch_size),
            str(s.batch_size), str(a.n_stages), _x(a.pooling_per_axis), "-".join(str(f) for f in a.features_per_stage),
            "/".join("".join(str(k) for k in ks) for ks in a.kernel_sizes), f"{s.memory_estimate_gb:.2f}",
        ])
        c = vp.classification
        region = "labelled anatomy" if c.roi_source == "labels" else "field of view"
        cls_rows.append([name, region, _x(c.roi_size_mm, "{:.0f}"), f"{c.roi_margin_mm:.0f}", _x(c.spacing, "{:.3g}"),
                         _x(c.input_size), "yes" if c.antialias else "no", str(c.batch_size), str(c.num_findings),
                         f"{c.memory_estimate_gb:.2f}"])
        d = vp.diffusion
        dif_rows.append([name, _x(d.patch_size), str(d.batch_size), str(d.timesteps), d.schedule, d.prediction,
                         f"{d.memory_estimate_gb:.2f}"])
        n, r = vp.normalization, vp.resampling
        pre_rows.append([
            name, str(vp.num_training_cases), n.scheme + (" (non-zero mask)" if n.use_mask_for_norm else ""),
            f"{n.mean:.4g}/{n.std:.4g}", str(r.image_order), f"{r.label_order} one-hot",
            (f"{r.through_plane_order} if ratio>{r.anisotropy_threshold:g}" if r.separate_through_plane else "no"),
        ])
    classes = sorted({vp.segmentation.architecture.network_class for vp in plans.views.values()})
    out.append(f"Segmentation (U-Net: {', '.join(classes)})")
    out += _table(["view", "spacing mm", "median shape", "patch", "batch", "stages", "pool/axis", "features",
                   "kernels", "mem GB"], seg_rows)
    out += ["", "Segmentation configurations (nnU-Net's; 3d_fullres is the view's plan above; data folder below the "
                "preprocessed folder)"]
    out += _table(["view", "configuration", "spacing mm", "median shape", "patch", "batch", "stages", "data folder",
                   "previous stage"], cfg_rows)
    out += ["", "Classification (shared encoder on a region of interest at a diagnostic spacing)"]
    out += _table(["view", "region around", "region mm", "margin mm", "spacing mm", "input", "anti-alias", "batch",
                   "findings", "mem GB"], cls_rows)
    out += ["", "Diffusion pretraining (denoising U-Net, same topology)"]
    out += _table(["view", "patch", "batch", "steps", "schedule", "predicts", "mem GB"], dif_rows)
    out += ["", "Preprocessing"]
    out += _table(["view", "cases", "normalisation", "fg mean/std", "image order", "labels", "through-plane"],
                  pre_rows)
    return "\n".join(out)


def plans_file_table(path: Path | str) -> str:
    """``format_plans`` of a plans.json (``path``: the file, or the preprocessed folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "plans.json"
    return format_plans(Plans.load(path))
