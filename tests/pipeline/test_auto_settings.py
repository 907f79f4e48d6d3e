"""`auto` checks every user-supplied setting before its first stage writes anything: a typo in ``--set`` must not
cost a pretraining run (issue 27, item 1)."""

import pytest

from orthodiff_auto.cli import main

CASES = ("c001", "c002", "c003", "c004", "c005")


@pytest.mark.parametrize("arguments, named", [
    (["--set", "foo=1"], "--set: foo: unknown config key"),
    (["--set", "num_epochs=many"], "--set: config num_epochs: cannot use 'many' as int"),
    (["--cls-set", "bar=2"], "--cls-set: bar: unknown config key"),
    (["--pretrain-set", "baz=3"], "--pretrain-set: baz: unknown config key"),
    (["--fusion", "average"], "--fusion: config fusion: choose"),
    (["--pretrain-config", "huge"], "--pretrain-config: unknown config 'huge'"),
    (["--config", "huge"], "--config: unknown config 'huge'"),
    (["--folds", "5"], "--folds: choose among 0-4"),
    (["--budget", "tpu"], "--budget: expected"),
])
def test_a_bad_setting_is_refused_before_any_stage_writes(make_native_dataset, tmp_path, capsys, arguments, named):
    raw = make_native_dataset(views=("sag",), cases=CASES)
    work = tmp_path / "work"
    assert main(["auto", str(raw), "--work", str(work), "--budget", "cpu", "--config", "smoke", "--no-pretrain",
                 "-np", "1", *arguments]) == 2
    err = capsys.readouterr().err
    assert named in err
    assert not work.exists()  # nothing planned, preprocessed or trained


def test_the_refusal_names_the_fix(make_native_dataset, tmp_path, capsys):
    raw = make_native_dataset(views=("sag",), cases=CASES)
    assert main(["auto", str(raw), "--work", str(tmp_path / "w"), "--config", "smoke", "--set", "foo=1"]) == 2
    err = capsys.readouterr().err
    assert "known keys: " in err and "num_epochs" in err and "--list-settings" in err


def test_a_work_path_that_is_a_file_is_refused(make_native_dataset, tmp_path, capsys):
    raw = make_native_dataset(views=("sag",), cases=CASES)
    work = tmp_path / "work"
    work.write_text("not a folder")
    assert main(["auto", str(raw), "--work", str(work), "--config", "smoke"]) == 2
    assert "--work exists and is not a folder" in capsys.readouterr().err


def test_too_few_cases_for_the_folds_is_refused_before_work(make_native_dataset, tmp_path, capsys):
    raw = make_native_dataset(views=("sag",), cases=CASES[:4])
    work = tmp_path / "work"
    assert main(["auto", str(raw), "--work", str(work), "--budget", "cpu", "--config", "smoke", "--folds", "0"]) == 2
    assert "4 training cases cannot make the 5 cross-validation folds" in capsys.readouterr().err
    assert not work.exists()


def test_image_readers_are_off_at_the_cpu_budget_only_where_the_anatomy_reader_runs():
    """At the cpu budget the image readers lost to chance (benchmarks.md), so unset they are not trained where the
    anatomy-feature classifier reads the findings; on a GPU budget, without segmentation labels, or set explicitly
    (--all-classifiers, --no-*), they are."""
    from types import SimpleNamespace

    from orthodiff_auto.commands.auto import image_reader
    from orthodiff_auto.pipeline.auto import IMAGE_READERS, AutoOptions, image_readers_by_budget

    def plans(kind, findings=("f1",)):
        return SimpleNamespace(budget=SimpleNamespace(kind=kind), findings=list(findings))

    def resolved(options, kind, segmented=True, findings=("f1",)):
        lines = []
        out = image_readers_by_budget(options, plans(kind, findings), segmented, lines.append)
        return tuple(getattr(out, name) for name in IMAGE_READERS), lines

    unset = AutoOptions()
    assert resolved(unset, "cpu") == ((False, False, False), [resolved(unset, "cpu")[1][0]])
    assert "--all-classifiers" in resolved(unset, "cpu")[1][0]
    assert resolved(unset, "gpu") == ((True, True, True), [])
    assert resolved(unset, "cpu", segmented=False) == ((True, True, True), [])  # the only readers there are
    assert resolved(AutoOptions(anatomy_features=False), "cpu")[0] == (True, True, True)
    assert resolved(unset, "cpu", findings=())[1] == []  # nothing to read: nothing said
    chosen = AutoOptions(finetune_classifiers=True, noised_classifiers=False)
    assert resolved(chosen, "cpu")[0] == (True, False, False) and resolved(chosen, "gpu")[0] == (True, False, True)
    # the command line: --no-X wins, --all-classifiers sets the rest, neither leaves the budget to decide
    assert (image_reader(True, True), image_reader(False, True), image_reader(False, False)) == (False, True, None)



def test_configurations_by_budget_and_pretraining_only_where_the_encoders_are_read():
    """auto trains every planned configuration on a GPU budget and 2d at the cpu budget (or what
    --configurations names, each cascade with its first stage); it pretrains only when a configuration of the
    encoder's architecture or an image reader will read the encoders."""
    from orthodiff_auto.pipeline.auto import (AutoOptions, configurations_by_budget, configurations_to_train,
                                              encoders_read)
    from orthodiff_auto.plans.planner import plan_experiment
    from orthodiff_auto.plans.schema import Budget
    from tests.plans.fake_fingerprint import fake_fingerprint

    # the 3d_fullres patch covers < 25%, and the lowres image has under half the voxels (nnU-Net keeps 3d_lowres)
    wide = [((3.5, 1.0, 1.0), (33, 180 + i, 180)) for i in range(10)]
    plans = {kind: plan_experiment(fake_fingerprint({"sag": wide}), Budget(kind, 0.25 if kind == "cpu" else 8.0))
             for kind in ("cpu", "gpu")}
    assert plans["cpu"].view("sag").configuration_names == ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")
    lines = []
    default = AutoOptions()
    assert configurations_by_budget(default, plans["gpu"]) == ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")
    assert configurations_by_budget(default, plans["cpu"]) == ("2d",)
    asked = AutoOptions(configurations=("3d_cascade_fullres", "2d"))
    assert configurations_to_train(plans["cpu"].view("sag"), configurations_by_budget(asked, plans["cpu"]),
                                   lines.append) == ["2d", "3d_lowres", "3d_cascade_fullres"]  # its first stage too
    readers_off = AutoOptions(finetune_classifiers=False, noised_classifiers=False, frozen_features=False)
    assert encoders_read(readers_off, plans["cpu"], ("3d_fullres",), lines.append)
    assert encoders_read(readers_off, plans["cpu"], ("3d_lowres", "3d_cascade_fullres"), lines.append)
    assert not lines
    assert not encoders_read(readers_off, plans["cpu"], ("2d",), lines.append)  # a 2D network: no 3D encoder
    assert "pretrain: skipped" in lines[-1]
    with_reader = AutoOptions(finetune_classifiers=True, noised_classifiers=False, frozen_features=False)
    assert encoders_read(with_reader, plans["cpu"], ("2d",), lines.append)
    from orthodiff_auto.errors import UserInputError
    with pytest.raises(UserInputError, match="--configurations"):
        AutoOptions(configurations=("3d",))


def test_a_cascade_first_stage_trains_from_scratch_on_every_fold(monkeypatch):
    """The cascade's second stage reads its first stage's from-scratch run on all five folds: auto trains exactly
    that, even where the encoder would fit the first stage (here 3d_lowres has 3d_fullres's topology); the same
    configuration trained alone follows --folds and the pretrained variants."""
    from orthodiff_auto.pipeline import auto
    from orthodiff_auto.plans.planner import plan_experiment
    from orthodiff_auto.plans.schema import Budget
    from tests.plans.fake_fingerprint import fake_fingerprint

    wide = [((3.5, 1.0, 1.0), (33, 180 + i, 180)) for i in range(10)]
    plans = plan_experiment(fake_fingerprint({"sag": wide}), Budget("cpu", 0.25))
    vp = plans.view("sag")
    assert vp.configuration("3d_lowres").segmentation.architecture == vp.segmentation.architecture
    calls = []
    monkeypatch.setattr(auto, "_train", lambda *a, configuration, **kw: calls.append((configuration, a[7], a[5])))
    options = auto.AutoOptions(folds=(0,))
    encoder = "encoder_sag.pt"
    auto._train_configuration(None, None, None, plans, "sag", "3d_lowres", [None, encoder], options, print,
                              first_stage=True)
    assert calls == [("3d_lowres", None, f) for f in range(5)]
    calls.clear()
    auto._train_configuration(None, None, None, plans, "sag", "3d_lowres", [None, encoder], options, print)
    assert calls == [("3d_lowres", None, 0), ("3d_lowres", encoder, 0)]


def test_validation_probabilities_are_kept_where_several_runs_of_a_view_compete(monkeypatch):
    """auto asks for the validation probabilities (--npz) exactly when model selection can pair runs: more than
    one run of the view (configurations, or scratch beside pretrained where the encoder fits)."""
    from orthodiff_auto.pipeline import auto
    from orthodiff_auto.plans.planner import plan_experiment
    from orthodiff_auto.plans.schema import Budget
    from tests.plans.fake_fingerprint import fake_fingerprint

    wide = [((3.5, 1.0, 1.0), (33, 180 + i, 180)) for i in range(10)]
    plans = plan_experiment(fake_fingerprint({"sag": wide}), Budget("cpu", 0.25))
    encoder = "encoder_sag.pt"
    assert auto.segmentation_runs(plans, "sag", ["3d_fullres"], [None]) == [("3d_fullres", None)]
    assert auto.segmentation_runs(plans, "sag", ["3d_fullres"], [None, encoder]) == [
        ("3d_fullres", None), ("3d_fullres", encoder)]
    # the cascade's first stage from scratch only, the cascade with both
    assert auto.segmentation_runs(plans, "sag", ["3d_lowres", "3d_cascade_fullres"], [None, encoder]) == [
        ("3d_lowres", None), ("3d_cascade_fullres", None), ("3d_cascade_fullres", encoder)]
    calls = []
    monkeypatch.setattr(auto, "_train", lambda *a, configuration, save_probabilities, **kw:
                        calls.append((configuration, a[7], save_probabilities)))
    auto._train_configuration(None, None, None, plans, "sag", "2d", [None], auto.AutoOptions(folds=(0,)), print,
                              save_probabilities=True)
    assert calls == [("2d", None, True)]
