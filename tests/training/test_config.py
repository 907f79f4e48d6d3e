import pytest

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.training.config import PRESETS, TrainingConfig, make_config


def test_presets_ordered_by_length():
    assert PRESETS["smoke"].total_iterations < PRESETS["demo"].total_iterations < PRESETS["full"].total_iterations
    full = PRESETS["full"]
    assert (full.initial_lr, full.momentum, full.nesterov, full.poly_exponent) == (1e-2, 0.99, True, 0.9)


@pytest.mark.parametrize(
    "item, key, value",
    [
        ("num_epochs=3", "num_epochs", 3),
        ("initial_lr=0.005", "initial_lr", 0.005),
        ("initial_lr=1e-3", "initial_lr", 1e-3),
        ("nesterov=false", "nesterov", False),
        ("augment=0", "augment", False),
        ("patch_size=16,32,32", "patch_size", (16, 32, 32)),
        ("patch_size=[8, 16, 16]", "patch_size", (8, 16, 16)),
        ("batch_size=none", "batch_size", None),
        ("batch_size=4", "batch_size", 4),
    ],
)
def test_overrides_parse_by_type(item, key, value):
    cfg = make_config("demo", [item])
    assert getattr(cfg, key) == value
    assert type(getattr(cfg, key)) is type(value)


@pytest.mark.parametrize(
    "item, message",
    [("bogus=1", "unknown config key"), ("num_epochs", "key=value"), ("num_epochs=2.5", "cannot use"),
     ("nesterov=maybe", "cannot use"), ("initial_lr=abc", "cannot use"), ("num_epochs=none", "cannot use")],
)
def test_bad_overrides(item, message):
    with pytest.raises(UserInputError, match=message):
        make_config("demo", [item])


def test_unknown_preset():
    with pytest.raises(UserInputError, match="unknown config"):
        make_config("huge")


def test_dict_roundtrip():
    cfg = make_config("smoke", ["patch_size=8,16,16"])
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UserInputError):
        TrainingConfig.from_dict({**cfg.to_dict(), "extra": 1})
