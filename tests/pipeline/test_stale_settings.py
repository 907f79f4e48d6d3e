"""One configuration: every classification setting is set with ``--set`` like any training setting, reaches
the classifier, and makes a fold stale when it changes; a run recorded before a setting existed is compared
with that setting's default."""

from __future__ import annotations

from dataclasses import fields

import pytest

from orthodiff_auto.classification.config import ClassificationConfig
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.pipeline.stale import RESULT_NEUTRAL_FIELDS, config_differences
from orthodiff_auto.training.config import ClassificationSettings, TrainingConfig, make_config

CHANGED = {"fusion": "concat", "target_sensitivity": "0.9", "classifier_features": "anatomy",
           "balanced_sampling": "true", "mirror": "all", "pos_weight_max": "10", "aux_weight": "0.25",
           "fused_init": "scratch", "view_dropout": "0.2", "stacked_l2": "2", "rotation_degrees": "5",
           "scale_low": "0.9", "scale_high": "1.1", "cache_gb": "2", "anatomy_strengths": "0.1,1",
           "frozen_pooling": "mean", "noise_timestep": "50", "noise_draws": "2",
           "anatomy_feature_set": "where", "anatomy_screen_features": "7", "anatomy_segmentation": "2d"}


def test_every_classification_setting_is_set_on_the_command_line_and_reaches_the_classifier():
    assert set(CHANGED) == {f.name for f in fields(ClassificationSettings)}  # a new setting is listed here too
    config = make_config("smoke", [f"{k}={v}" for k, v in CHANGED.items()])
    read = ClassificationConfig.from_training(config)
    default = ClassificationConfig()
    for name in CHANGED:
        assert getattr(read, name) == getattr(config, name) != getattr(default, name), name
    assert read.anatomy_strengths == (0.1, 1.0)
    with pytest.raises(UserInputError, match="config mirror"):
        make_config("smoke", ["mirror=upside_down"])


def test_stale_compares_every_classification_setting():
    before = make_config("smoke").to_dict()
    for name, value in CHANGED.items():
        after = make_config("smoke", [f"{name}={value}"]).to_dict()
        found = config_differences(before, after, TrainingConfig().to_dict())
        assert (found == []) == (name in RESULT_NEUTRAL_FIELDS), (name, found)
        if found:
            assert found[0].startswith(f"{name} ")


def test_a_run_recorded_before_a_setting_existed_uses_its_default():
    now = make_config("smoke").to_dict()
    old = {k: v for k, v in now.items() if k not in ("mirror", "anatomy_strengths", "view_dropout")}
    assert config_differences(old, now, TrainingConfig().to_dict()) == []
    assert config_differences(old, make_config("smoke", ["mirror=none"]).to_dict(), TrainingConfig().to_dict()) \
        == ["mirror 'left_right' -> 'none'"]
