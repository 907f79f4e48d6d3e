"""``orthodiff show_plans``: the tables, including one row per view and segmentation configuration."""

import re

from orthodiff_auto.cli import main
from orthodiff_auto.data.views import VIEW_NAMES
from orthodiff_auto.plans.table import format_plans
from tests.plans.test_configurations import CPU, LARGE, SMALL, planned


def _section(text: str, title: str) -> list[list[str]]:
    """The rows (cells split at 2+ spaces) of the table below the line starting with ``title``."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(title))
    rows = []
    for ln in lines[start + 1:]:
        if not ln.strip():
            break
        rows.append(re.split(r"\s{2,}", ln.strip()))
    return rows


def _x(values, fmt="{}"):
    return "x".join(fmt.format(v) for v in values)


def test_show_plans_lists_every_configuration(tmp_path, capsys):
    plans, _ = planned({**LARGE, "cor": SMALL["cor"]}, CPU)
    plans.save(tmp_path / "plans.json")
    assert main(["show_plans", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert text.strip() == format_plans(plans).strip()
    for title in ("Segmentation (U-Net", "Classification", "Diffusion pretraining", "Preprocessing"):
        assert _section(text, title)  # the other tables stay
    header, rule, *rows = _section(text, "Segmentation configurations")
    assert header == ["view", "configuration", "spacing mm", "median shape", "patch", "batch", "stages",
                      "data folder", "previous stage"]
    expected = []
    for view, vp in plans.views.items():
        for name in vp.configuration_names:
            c = vp.configuration(name)
            expected.append([VIEW_NAMES[view], name, _x(c.target_spacing, "{:.3g}"), _x(c.median_shape_after_resampling),
                             _x(c.segmentation.patch_size), str(c.segmentation.batch_size),
                             str(c.segmentation.architecture.n_stages), c.data_identifier, c.previous_stage or "-"])
    assert rows == expected
    # the large views have all four, the small one 2d and 3d_fullres
    assert [r[1] for r in rows if r[0] == VIEW_NAMES["sag"]] == ["2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"]
    assert [r[1] for r in rows if r[0] == VIEW_NAMES["cor"]] == ["2d", "3d_fullres"]
    assert [r[7:] for r in rows if r[1] == "3d_lowres"] == [["sag_3d_lowres", "-"], ["ax_3d_lowres", "-"]]
    assert [r[7:] for r in rows if r[1] == "3d_cascade_fullres"] == [["sag", "3d_lowres"], ["ax", "3d_lowres"]]
