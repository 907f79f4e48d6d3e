"""What a scan's file name says, in the two namings users bring: ours (``<case>_<view>.nii.gz``) and nnU-Net's
(``<case>_0000.nii.gz``, a 4-digit channel suffix; its labels and predictions are ``<case>.nii.gz``)."""

from __future__ import annotations

import re

from orthodiff_auto.data.views import VIEWS

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
_VIEW_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<view>" + "|".join(VIEWS) + r")$")
_CHANNEL_SUFFIX = re.compile(r"^(?P<name>.+)_(?P<channel>\d{4})$")


def split_image_name(name: str) -> tuple[str, str] | None:
    """(stem, ending) of an image file name (``IMAGE_ENDINGS``), or None for another file."""
    for ending in IMAGE_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)], ending
    return None


def without_channel_suffix(stem: str) -> tuple[str, str | None]:
    """(name, channel) of an nnU-Net style ``<name>_<4 digits>`` stem; (stem, None) otherwise."""
    m = _CHANNEL_SUFFIX.match(stem)
    return (m.group("name"), m.group("channel")) if m else (stem, None)


def case_and_view(stem: str) -> tuple[str, str | None]:
    """(case, view) of a ``<case>_<view>`` stem; (stem, None) when it names no view."""
    m = _VIEW_SUFFIX.match(stem)
    return (m.group("case"), m.group("view")) if m else (stem, None)


__all__ = ["IMAGE_ENDINGS", "case_and_view", "split_image_name", "without_channel_suffix"]
