"""``auto``: every stage in order, skipping what is already done, ending with a cross-validation report.

validate -> plan_and_preprocess -> pretrain per view -> train all folds (segmentation per view, from scratch
and pretrained unless ``compare_scratch`` is off; classification: the anatomy-feature classifier on each fold's
segmentations unless ``anatomy_features`` is off, fine-tuned classifiers per view and fused unless
``finetune_classifiers`` is off, and with pretraining classifiers fine-tuned on noised inputs per view unless
``noised_classifiers`` is off and ``probe`` per view and classifiers on frozen diffusion features unless
``frozen_features`` is off; those three image readers, left unset, are on except at the cpu budget where the
anatomy-feature classifier runs: ``image_readers_by_budget``) -> find_best_configuration -> DIR/model.
With ``pretrained_from`` (a pretrained encoder bundle, e.g. another dataset's RESULTS/pretrain), the views it
has encoders for are planned like them (``plans.adaptation``) and fine-tune from them instead of pretraining
here; classifiers on frozen diffusion features, which need a whole denoiser, are trained only from a bundle
that carries one (an imported OrthoDiffusion bundle: copied into RESULTS/pretrain/VIEW, probed there).
A stage counts as done when its last artifact exists (plans.json, pretrain_summary.json, a fold's summary.json)
and came from this run's settings (``pipeline.stale``: the plans' budget; a run's plans and training config, as
its checkpoint records them; encoders not newer than the folds fine-tuned from them); an artifact of other
settings is refused with a message naming it, or redone with ``redo_stale``. An interrupted pretraining or fold
resumes from its latest checkpoint.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from orthodiff_auto.classification.config import FUSED
from orthodiff_auto.classification.reader import reader_named
from orthodiff_auto.classification.readers import READERS
from orthodiff_auto.diffusion.config import make_pretrain_configs
from orthodiff_auto.diffusion.orthodiffusion_features import stage_imported_denoiser
from orthodiff_auto.diffusion.probe import run_probe
from orthodiff_auto.diffusion.run import PRETRAIN_SUMMARY, output_dir_for, pretrain
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.pipeline.model_selection import find_best_configuration
from orthodiff_auto.pipeline.stale import (
    adaptation_differences, budget_differences, fold_differences, pretrain_differences,
)
from orthodiff_auto.pipeline.train_fold import train_fold
from orthodiff_auto.plans.budget import parse_budget
from orthodiff_auto.plans.schema import CONFIGURATIONS, DEFAULT_CONFIGURATION, Plans
from orthodiff_auto.plans.adaptation import check_adaptable
from orthodiff_auto.preprocessing.stages import (
    dataset_views, run_fingerprint, run_plan, run_preprocess, validated_dataset,
)
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.training.config import ANATOMY_SEGMENTATIONS, make_config
from orthodiff_auto.training.fold import FoldRequest
from orthodiff_auto.training.pretrained import read_pretrained_bundle
from orthodiff_auto.utils.lock import folder_lock
from orthodiff_auto.utils.log import log_line

FOLDS = (0, 1, 2, 3, 4)


def check_folds(folds: Sequence[int]) -> tuple[int, ...]:
    bad = [f for f in folds if not 0 <= f < 5]
    if bad or not folds:
        raise UserInputError(f"--folds: choose among 0-4, got {list(folds)}")
    return tuple(sorted(set(folds)))


@dataclass(frozen=True)
class AutoOptions:
    budget: str | None = None  # gpu:<GB> | gpu | cpu
    config: str = "full"  # training preset for every fold
    pretrain_config: str | None = None  # default: same as config
    folds: tuple[int, ...] = FOLDS
    pretrain: bool | None = None  # None: when something trained reads the encoders (encoders_read)
    compare_scratch: bool = True  # with pretraining: also train from scratch, and let model selection choose
    # the image readers; None: by the budget (image_readers_by_budget)
    frozen_features: bool | None = None  # with pretraining: probe, then classifiers on frozen diffusion features
    anatomy_features: bool = True  # the anatomy-feature classifier on each fold's predicted segmentations
    finetune_classifiers: bool | None = None  # fine-tuned (end-to-end) classifiers per view and fused
    noised_classifiers: bool | None = None  # with pretraining: per view, fine-tuned on noised inputs, timestep kept
    classification: bool = True
    fusion_modes: tuple[str, ...] = ("gate",)
    overrides: tuple[str, ...] = ()
    classification_overrides: tuple[str, ...] = ()  # applied after ``overrides`` to classification runs only
    pretrain_overrides: tuple[str, ...] = ()
    num_processes: int = 2
    device: str | None = None
    redo_stale: bool = False  # plan again / retrain what earlier settings produced, instead of refusing
    pretrained_from: Path | None = None  # a pretrained encoder bundle to plan like and fine-tune from
    # segmentation configurations to train where planned; None: by the budget (configurations_by_budget)
    configurations: tuple[str, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "folds", check_folds(self.folds))  # UserInputError for a fold outside 0-4
        unknown = [c for c in self.configurations or () if c not in CONFIGURATIONS]
        if unknown:
            raise UserInputError(f"--configurations: unknown {unknown}; choose among {list(CONFIGURATIONS)}")


LIST_SETTINGS_HINT = "`orthodiff train_fold --list-settings` lists every key with its type and default"


def check_settings(work: Path, options: AutoOptions) -> None:
    """Every configuration a stage of ``options`` would build, built now: UserInputError (exit 2) naming the option
    and the fix for an unknown key, a value of the wrong type or an unknown preset or fusion mode."""
    if work.exists() and not work.is_dir():
        raise UserInputError(f"{work}: --work exists and is not a folder; name a new or existing folder")

    def checked(option: str, build) -> None:
        try:
            build()
        except UserInputError as e:
            raise UserInputError(f"{option}: {str(e).removeprefix('--set ')} ({LIST_SETTINGS_HINT}); nothing was "
                                 "written") from None

    shared = list(options.overrides)
    checked("--config", lambda: make_config(options.config))
    checked("--set", lambda: make_config(options.config, shared))
    checked("--cls-set", lambda: make_config(options.config, shared + list(options.classification_overrides)))
    for mode in options.fusion_modes:
        checked("--fusion", lambda: make_config(options.config, [f"fusion={mode}"]))
    preset = options.pretrain_config or options.config  # checked with --no-pretrain too: a typo is a typo
    checked("--pretrain-config", lambda: make_pretrain_configs(preset))
    checked("--pretrain-set", lambda: make_pretrain_configs(preset, list(options.pretrain_overrides)))


@dataclass
class StageClock:
    log: object = log_line
    times: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn, *args, **kw):
        self.log(f"== {name}")
        start = time.perf_counter()
        result = fn(*args, **kw)
        self.times[name] = time.perf_counter() - start
        return result


def run_auto(raw: Path | str, work: Path | str, options: AutoOptions = AutoOptions(), log=log_line):
    raw, work = Path(raw), Path(work)
    budget = parse_budget(options.budget)
    check_settings(work, options)  # a typo in a setting is refused before any stage writes (or runs for hours)
    clock = StageClock(log)
    like = read_pretrained_bundle(options.pretrained_from) if options.pretrained_from is not None else None
    dataset = clock.run("validate", validated_dataset, raw, options.num_processes)
    if len(dataset.case_ids("train")) < len(FOLDS):  # the splits are made when the first fold trains
        raise UserInputError(f"{raw}: {len(dataset.case_ids('train'))} training cases cannot make the "
                             f"{len(FOLDS)} cross-validation folds (made even for --folds 0); add training cases")
    if like:  # encoders that cannot be adopted: exit 2 naming what differs, before anything is written
        check_adaptable(dataset_views(dataset), dataset.description.modality, like, str(raw))
    with folder_lock(work):  # the input is usable: from here the work folder is written, by one auto at a time
        return _run_stages(work, dataset, budget, like, clock, options, log)


def _run_stages(work: Path, dataset, budget, like, clock: StageClock, options: AutoOptions, log):
    preprocessed, results = work / "preprocessed", work / "results"
    plans_path = preprocessed / "plans.json"
    existing = Plans.load(plans_path) if plans_path.is_file() else None
    # without --budget the work folder's plans are continued; the encoders they adopted must be this run's
    changed = budget_differences(existing.budget, budget) if existing and options.budget is not None else []
    changed += adaptation_differences(existing, like) if existing else []
    if changed:
        _refuse_or_redo(plans_path, changed, options, log)
    if existing is None or changed:
        clock.run("fingerprint", run_fingerprint, dataset, preprocessed, options.num_processes)
        clock.run("plan", run_plan, preprocessed, budget, like)
    else:
        log(f"== plans: reusing {plans_path} (budget {Plans.load(plans_path).budget})")
    clock.run("preprocess", run_preprocess, dataset, preprocessed, options.num_processes)
    plans = Plans.load(plans_path)
    views = list(plans.views)

    segmented = [v for v in views if PreprocessedDataset(preprocessed, v).case_ids(subset="train", labelled=True)]
    wanted = configurations_by_budget(options, plans)
    options = image_readers_by_budget(options, plans, segmented == views, log)
    pretrain = options.pretrain if options.pretrain is not None else encoders_read(options, plans, wanted, log)
    encoders: dict[str, Path] = {}
    for view in views:
        if like and view in like:
            encoders[view] = Path(like[view].encoder)
            log(f"== pretrain {view}: from {encoders[view]} (pretrained on {like[view].dataset_name!r})")
        elif pretrain:
            encoders[view] = _pretrain(clock, preprocessed, results, plans, view, options, log)

    def variants(view):
        if view not in encoders:
            return [None]
        return ([None] if options.compare_scratch else []) + [encoders[view]]

    for view in views:
        if view not in segmented:
            log(f"== seg {view}: skipped (no labelled training scans of this view)")
            continue
        names = configurations_to_train(plans.view(view), wanted, log)
        first_stages = {plans.view(view).configuration(c).previous_stage for c in names}
        # several runs of the view compete: their validation probabilities let model selection score each pair
        # as an ensemble (nnU-Net's --npz); a single run needs none
        ensembles = len(segmentation_runs(plans, view, names, variants(view))) > 1
        for configuration in names:
            _train_configuration(clock, preprocessed, results, plans, view, configuration, variants(view), options,
                                 log, first_stage=configuration in first_stages, save_probabilities=ensembles)
    if options.classification and plans.findings and options.anatomy_features and segmented != views:
        log("== anatomy-feature classifiers: skipped (they read every view's segmentation; "
            f"{', '.join(v for v in views if v not in segmented)} has no segmentation labels)")
    elif options.classification and plans.findings and options.anatomy_features:
        readable = [c for c in (DEFAULT_CONFIGURATION, *ANATOMY_SEGMENTATIONS) if c in wanted]
        if not readable:
            log(f"== anatomy-feature classifiers: skipped (they read a {' or '.join(ANATOMY_SEGMENTATIONS)} "
                "segmentation; none was trained)")
        for fold in options.folds if readable else ():  # the fold's segmentation of every view (pretrained if any)
            _train(clock, preprocessed, results, "cls", FUSED if len(views) > 1 else views[0], fold, options, None,
                   log, extra=("classifier_features=anatomy", f"anatomy_segmentation={readable[0]}"))
    if options.classification and plans.findings and options.finetune_classifiers:
        for view in views:
            for pretrained in variants(view):
                for fold in options.folds:
                    _train(clock, preprocessed, results, "cls", view, fold, options, pretrained, log)
        if len(views) > 1:
            # one fused model per single-view variant: its branches start from that variant's classifiers
            for pretrained in variants(views[0]):
                for mode in options.fusion_modes:
                    for fold in options.folds:
                        _train(clock, preprocessed, results, "cls", FUSED, fold, options, pretrained, log,
                               extra=(f"fusion={mode}",))
    if options.classification and plans.findings and options.noised_classifiers:
        for view, encoder in encoders.items():  # the pretraining run's weights with their timestep conditioning
            source = encoder if like else None  # a bundle's run folder holds its denoiser beside the encoder
            if like and not (encoder.parent / "checkpoint_final.pt").is_file():
                log(f"== noised classifiers {view}: skipped (no pretraining checkpoint beside {encoder})")
                continue
            for fold in options.folds:
                _train(clock, preprocessed, results, "cls", view, fold, options, source, log,
                       extra=("classifier_features=noised",))
    if options.classification and plans.findings and options.frozen_features and encoders:
        # a bundle's encoder serves only when it carries its whole denoiser (an imported OrthoDiffusion bundle)
        readable = [v for v in encoders if not like or v not in like
                    or stage_imported_denoiser(encoders[v], output_dir_for(preprocessed, v, results))]
        if readable:
            _frozen_feature_classifiers(clock, preprocessed, results, readable, options, log)
        if len(readable) < len(encoders):
            log(f"== frozen-feature classifiers: skipped for {', '.join(v for v in encoders if v not in readable)} "
                "(they need this dataset's own denoisers, not the encoders of --pretrained-from)")

    model_dir = work / "model"
    description = clock.run("find_best_configuration", find_best_configuration, preprocessed, model_dir, results,
                            options.folds, log)
    log(cv_report(description))
    log("stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in clock.times.items() if v >= 1))
    return model_dir


IMAGE_READERS = ("finetune_classifiers", "noised_classifiers", "frozen_features")
#: what ``auto`` trains per budget when --configurations is not given (documentation/training.md). At the cpu
#: budget 2d alone: at the demo's 300 steps it beat 3d_fullres (from scratch and pretrained), 3d_lowres and the
#: cascade on the demo preset's pooled folds and at the diagnostic preset (benchmarks.md, "Segmentation
#: configurations"), and each further configuration costs as much training again on two cores.
CONFIGURATIONS_BY_BUDGET = {"cpu": ("2d",), "gpu": CONFIGURATIONS}


def configurations_by_budget(options: AutoOptions, plans: Plans) -> tuple[str, ...]:
    """The segmentation configurations to train: ``options.configurations``, else the budget's: every planned one
    on a GPU (nnU-Net), 2d alone at the cpu budget (``CONFIGURATIONS_BY_BUDGET`` says why)."""
    if options.configurations is not None:
        return tuple(options.configurations)
    return CONFIGURATIONS_BY_BUDGET[plans.budget.kind]


def encoders_read(options: AutoOptions, plans: Plans, wanted: Sequence[str], log) -> bool:
    """Whether anything ``auto`` trains reads the pretrained encoders: a segmentation configuration of the
    encoder's architecture (3d_fullres, the cascade's second stage) or an image reader. When nothing does (2d or
    3d_lowres alone, with the anatomy reader), pretraining is skipped: it would cost minutes for no reader."""
    fits = any(c in vp.configuration_names and vp.configuration(c).segmentation.architecture ==
               vp.segmentation.architecture for vp in plans.views.values() for c in wanted)
    readers = options.classification and bool(plans.findings) and any(getattr(options, r) for r in IMAGE_READERS)
    if not (fits or readers):
        log(f"== pretrain: skipped (nothing trained here reads the encoders: segmentation {', '.join(wanted)}, "
            "no image reader; --pretrain trains them anyway)")
    return fits or readers


def configurations_to_train(view_plan, wanted: Sequence[str], log) -> list[str]:
    """The wanted configurations the view has planned, each cascade's first stage with it, in nnU-Net's order."""
    needed = set(wanted) | {view_plan.configurations[c].previous_stage for c in wanted
                            if c in view_plan.configurations and view_plan.configurations[c].previous_stage}
    missing = [c for c in wanted if c not in view_plan.configuration_names]
    if missing:
        log(f"== seg {view_plan.view}: {', '.join(missing)} not planned for this view (nnU-Net's rules; show_plans)")
    return [c for c in view_plan.configuration_names if c in needed]


def segmentation_runs(plans: Plans, view: str, names: Sequence[str], variants: Sequence) -> list[tuple[str, Path | None]]:
    """(configuration, pretrained encoder or None) of every segmentation run ``_train_configuration`` trains for
    the view's configurations ``names`` (a cascade's first stage among them: from scratch only)."""
    first_stages = {plans.view(view).configuration(c).previous_stage for c in names}
    return [(c, pretrained) for c in names for pretrained in _run_variants(plans, view, c, variants, c in first_stages)]


def _run_variants(plans: Plans, view: str, configuration: str, variants: Sequence, first_stage: bool) -> list:
    """The pretrained variants of a configuration's runs: ``variants`` where the encoder fits its architecture
    and it is no cascade's first stage, from scratch (None) alone otherwise."""
    fits_encoder = plans.view(view).configuration(configuration).segmentation.architecture == \
        plans.view(view).segmentation.architecture
    return list(variants) if fits_encoder and not first_stage else [None]


def _train_configuration(clock, preprocessed, results, plans, view, configuration, variants, options, log,
                         first_stage: bool = False, save_probabilities: bool = False) -> None:
    """A configuration's folds: pretrained variants where the encoder fits its architecture (3d_fullres; the
    cascade's second stage, whose stem starts fresh), from scratch otherwise. The first stage of a cascade being
    trained: from scratch (the run its second stage reads, ``segmentation.run.previous_stage_request``) on every
    fold, since the second stage trains on its out-of-fold predictions (nnU-Net)."""
    chosen = _run_variants(plans, view, configuration, variants, first_stage)
    folds = FOLDS if first_stage else options.folds
    if first_stage and tuple(folds) != tuple(options.folds):
        log(f"== seg {view} {configuration}: every fold (the cascade trains on its out-of-fold predictions)")
    for pretrained in chosen:
        for fold in folds:
            _train(clock, preprocessed, results, "seg", view, fold, options, pretrained, log,
                   configuration=configuration, save_probabilities=save_probabilities)


def image_readers_by_budget(options: AutoOptions, plans: Plans, every_view_segmented: bool, log) -> AutoOptions:
    """``options`` with the image readers left unset (None) decided by the budget: off at the cpu budget when the
    anatomy-feature classifier runs, else on. Why: at the cpu budget no image reader read a tear better than
    chance (benchmarks.md, "Diagnosis by cross-validation": macro 0.52-0.55, only effusion detected; and on a
    held-out knee dataset ``auto`` took 2769 s instead of 877 s for readers none of which beat chance), while
    the anatomy reader costs seconds per fold once the segmentations exist. Without segmentation labels they
    are the only readers, and stay on."""
    unset = [name for name in IMAGE_READERS if getattr(options, name) is None]
    anatomy_runs = bool(options.classification and plans.findings and options.anatomy_features and every_view_segmented)
    default = not (plans.budget.kind == "cpu" and anatomy_runs)
    if unset and not default and plans.findings and options.classification:
        log("== image readers (fine-tuned, noised, frozen diffusion features): not trained at the cpu budget, where "
            "the anatomy-feature classifier reads the findings (--all-classifiers trains them too)")
    return replace(options, **{name: default for name in unset})


def _frozen_feature_classifiers(clock, preprocessed, results, views, options, log) -> None:
    """The paper's frozen-feature mode: probe each pretrained view for its timestep and block, then train light
    heads on those features, per view and fused (the first trained fusion mode)."""
    for view in views:
        if (output_dir_for(preprocessed, view, results) / "probe.json").is_file():
            log(f"== probe {view}: done")
        else:
            clock.run(f"probe {view}", run_probe, preprocessed, view, results=results, device=options.device, log=log)
    frozen = ("classifier_features=diffusion",)
    for view in views:
        for fold in options.folds:
            _train(clock, preprocessed, results, "cls", view, fold, options, None, log, extra=frozen)
    # frozen-feature heads are trained directly and pooled per view: only the reader's own modes apply
    # ("stacked" and "mpae" are fitted on other folds' predictions, "xattn" needs fine-tuned feature maps)
    modes = READERS["diffusion"].fusion_modes
    mode = next((m for m in options.fusion_modes if m in modes), modes[0])
    if len(views) > 1:
        for fold in options.folds:
            _train(clock, preprocessed, results, "cls", FUSED, fold, options, None, log,
                   extra=frozen + (f"fusion={mode}",))


def _refuse_or_redo(artifact: Path, changed: Sequence[str], options: AutoOptions, log) -> None:
    """An artifact of other settings: refused (UserInputError naming it), or with ``redo_stale`` announced."""
    if not options.redo_stale:
        raise UserInputError(f"{artifact}: made with other settings than this run ({'; '.join(changed)}); use a new "
                             "--work folder, or --redo-stale to redo it and what depends on it")
    log(f"== {artifact}: made with other settings ({'; '.join(changed)}), redoing it (--redo-stale)")


def _pretrain(clock, preprocessed, results, plans, view, options, log) -> Path:
    """The view's encoder: reused when its run had these settings, else pretrained (or refused)."""
    run_dir = output_dir_for(preprocessed, view, results)
    encoder = run_dir / f"encoder_{view}.pt"
    preset = options.pretrain_config or options.config
    config, dconfig = make_pretrain_configs(preset, list(options.pretrain_overrides))
    changed = pretrain_differences(run_dir, config, dconfig.to_dict(), plans.view(view))
    if changed:
        _refuse_or_redo(run_dir, changed, options, log)
        shutil.rmtree(run_dir)  # with it its probe.json; the folds fine-tuned from it see a newer encoder
    if (run_dir / PRETRAIN_SUMMARY).is_file():  # written last: an encoder alone is a run killed before the end
        log(f"== pretrain {view}: done ({encoder})")
        return encoder
    resume = (run_dir / "checkpoint_latest.pt").is_file()
    clock.run(f"pretrain {view}", pretrain, preprocessed, view, preset=preset,
              overrides=list(options.pretrain_overrides), resume=resume, results=results,
              device=options.device or "auto", log=log)
    return encoder


def _train(clock, preprocessed, results, task, view, fold, options, pretrained, log, extra: Sequence[str] = (),
           configuration: str = DEFAULT_CONFIGURATION, save_probabilities: bool = False):
    task_overrides = options.classification_overrides if task == "cls" else ()
    config = make_config(options.config, list(options.overrides) + list(task_overrides) + list(extra))
    request = FoldRequest(preprocessed, task, view, fold, config, results_dir=results, pretrained=pretrained,
                          device=options.device, configuration=configuration)
    out = request.output_dir()
    name = f"{task} {view} fold {fold} ({request.variant})"
    changed = fold_differences(out, config, Plans.load(preprocessed / "plans.json"),
                               _fold_inputs(preprocessed, results, task, view, fold, config, pretrained))
    if changed:
        _refuse_or_redo(out, changed, options, log)
        shutil.rmtree(out)
    if (out / "summary.json").is_file():
        log(f"== {name}: done")
        return
    resume = (out / "checkpoint_latest.pt").is_file() or (out / "checkpoint_final.pt").is_file()
    clock.run(name, train_fold, FoldRequest(preprocessed, task, view, fold, config, results_dir=results,
                                            pretrained=pretrained, device=options.device, resume=resume,
                                            configuration=configuration,
                                            save_probabilities=save_probabilities), log)


def _fold_inputs(preprocessed, results, task, view, fold, config, pretrained) -> list[Path]:
    """Files a fold was made from beside the plans: its pretrained encoder, or what its reader reads (e.g. the
    encoders and probe choices of frozen diffusion features); a newer one makes the fold stale."""
    if pretrained is not None:
        return [Path(pretrained)]
    if task != "cls":
        return []
    views = list(Plans.load(preprocessed / "plans.json").views) if view == FUSED else [view]
    request = FoldRequest(preprocessed, task, view, fold, config, results_dir=results)
    return reader_named(config.classifier_features).fold_inputs(request, views)


def cv_report(description) -> str:
    """The cross-validation numbers of what was chosen and of what it was chosen against."""
    lines = ["", "Cross-validation report"]
    seg = description.candidates.get("segmentation", {})
    for view, variants in seg.items():
        chosen = description.segmentation.get(view)
        for variant, v in variants.items():
            mark = "*" if chosen and chosen.variant == variant else " "
            lines.append(f" {mark} seg {view:<5} {variant:<24} mean Dice {v['mean_dice']:.3f}  "
                         + " ".join(f"{k} {x:.2f}" for k, x in v["per_structure"].items()))
        pairs = description.candidates.get("segmentation_ensembles", {}).get(view, {})
        if pairs:  # scored on the view's grid: beside each pair, the best single run's score there
            single = max((v for v in variants.values() if "grid" in v), key=lambda v: v["mean_dice"])
            lines.append(f"   seg {view:<5} ensembles of two, on the view's grid (the best single run there "
                         f"{single['grid']['mean_dice']:.3f}):")
        for name, v in pairs.items():
            mark = "*" if chosen and chosen.variant == name else " "
            lines.append(f" {mark} seg {view:<5} {name:<24} mean Dice {v['mean_dice']:.3f}  "
                         + " ".join(f"{k} {x:.2f}" for k, x in v["per_structure"].items()))
    cls = description.candidates.get("classification", {})
    chosen = description.classification
    for name, variants in cls.items():
        for variant, v in variants.items():
            mark = "*" if chosen and chosen.name == name and chosen.variant == variant else " "
            lines.append(f" {mark} cls {name:<5} {variant:<24} macro AUROC {v['macro_auroc']:.3f}  "
                         + " ".join(f"{k} {x:.2f}" for k, x in v["per_finding_auroc"].items()))
    lines.append(" (* chosen for cases with every view)")
    for key, choice in description.classification_by_views.items():
        sel = choice.cv.get("selection", {})
        low, high = sel.get("ci", [float("nan")] * 2)
        lines.append(f"   cases with {key:<12} -> {choice.label:<28} macro AUROC {sel.get('macro_auroc', float('nan')):.3f} "
                     f"(95% CI {low:.2f}-{high:.2f}, {sel.get('n_cases', 0)} validation cases)")
        for finding, row in description.findings_by_views.get(key, {}).items():
            if row["reader"] != choice.label:  # a finding another reader reads clearly better
                low, high = row["ci"]
                lines.append(f"     {finding} from {row['reader']}: AUROC {row['auroc']:.3f} "
                             f"(95% CI {low:.2f}-{high:.2f}; {choice.label} {row['compared'][choice.label]:.3f})")
    return "\n".join(lines)

