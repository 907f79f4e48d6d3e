"""``--list-settings``: every ``--set KEY=VALUE`` key with its type and its value in each preset, read from the
config dataclasses themselves (so the list cannot fall behind them). Not a command: the CLI skips modules whose
name starts with an underscore."""

from __future__ import annotations

import types
import typing
from dataclasses import fields


def type_name(hint) -> str:
    """``int``, ``float | None``, ``tuple[int, ...] | None``: how a type reads on the command line."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) is tuple:
        return "tuple[int, ...]" if args and args[-1] is Ellipsis else "tuple"
    return getattr(hint, "__name__", str(hint))


def _table(title: str, config_class, presets: dict) -> list[str]:
    hints = typing.get_type_hints(config_class)
    names = list(presets)
    rows = [(f.name, type_name(hints[f.name]), *(_show(getattr(presets[p], f.name)) for p in names))
            for f in fields(config_class)]
    header = ("key", "type", *names)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = [title, "  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def _show(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def settings_table(diffusion: bool = False) -> str:
    """The training keys (``--set``, ``--cls-set``) and, with ``diffusion``, pretraining's own keys
    (``--pretrain-set``, ``pretrain --set``), each with its value in every preset (``--config``)."""
    # imported here: `orthodiff --help` and the CLI load no config module until --list-settings
    from orthodiff_auto.training.config import PRESETS, TrainingConfig

    lines = _table("training settings (--set KEY=VALUE; none: no value, e.g. the plan's; tuples as comma lists):",
                   TrainingConfig, PRESETS)
    if diffusion:
        # imported here: diffusion.config imports torch, needed only for the diffusion keys
        from orthodiff_auto.diffusion.config import DIFFUSION_PRESETS, PRETRAIN_TRAINING_DEFAULTS, DiffusionConfig

        lines += [""] + _table("diffusion pretraining settings (pretrain --set, auto --pretrain-set; the training "
                               "settings above apply too):", DiffusionConfig, DIFFUSION_PRESETS)
        lines += ["pretraining starts from these training values before your --set: "
                  + "; ".join(f"{p}: {', '.join(v)}" for p, v in PRETRAIN_TRAINING_DEFAULTS.items())]
    return "\n".join(lines)
