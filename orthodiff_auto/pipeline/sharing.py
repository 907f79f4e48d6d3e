"""Sharing a trained model folder or a pretrained encoder bundle as one zip file, and installing one.

``export_model MODEL_DIR OUT.zip`` and ``export_pretrained PRETRAINED OUT.zip`` write every file the receiver
needs, training checkpoints without their optimizer and gradient-scaler state (a third of a fold file, and
nothing a predictor or a fine-tuning run reads), plus ``manifest.json``: what it is (``kind``), the package
version that wrote it, the license its owner gives it, its plans, and the size and SHA-256 of every file.

``install_model OUT.zip DEST`` and ``install_pretrained OUT.zip DEST`` trust nothing in the zip: the manifest's
kind and package version must fit this installation, every member must be a listed file with its size and
hash, no name may point outside DEST; the files are extracted into a hidden folder beside DEST, checked as what
they claim to be (a model folder that loads, encoders that read as a bundle), and only then renamed to DEST.
A refusal (exit 2) leaves nothing behind; a kill during the install leaves only the hidden folder
``.DEST.installing-*``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from orthodiff_auto import __version__
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.inference.model_dir import ModelDescription
from orthodiff_auto.training.checkpoint import load_checkpoint, save_checkpoint
from orthodiff_auto.training.pretrained import ENCODER_FILE_PATTERN, read_encoder_checkpoint, read_pretrained_bundle
from orthodiff_auto.utils.archive import (
    MemberDigest,
    check_members,
    digest_of,
    extract_verified,
    read_member_text,
    write_zip,
)

SHARED_FORMAT = "orthodiff_auto.shared/1"
MANIFEST = "manifest.json"
KINDS = ("model", "pretrained")
# Checkpoint entries that only resuming a training run reads (the learning rate is recomputed, never stored).
TRAINING_ONLY_KEYS = ("optimizer", "scaler")


@dataclass(frozen=True)
class Manifest:
    kind: str  # "model" or "pretrained"
    package_version: str
    license: str | None
    created: str
    source: str  # the folder's name where it was exported (for the receiver's notes, never used as a path)
    plans: dict[str, Any]  # model: its plans.json; pretrained: view -> the plans excerpt its encoder carries
    files: dict[str, MemberDigest] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": SHARED_FORMAT, "kind": self.kind, "package": "orthodiff_auto",
                "package_version": self.package_version, "license": self.license, "created": self.created,
                "source": self.source, "plans": self.plans,
                "files": {name: d.to_dict() for name, d in sorted(self.files.items())}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Manifest":
        if d.get("format") != SHARED_FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {SHARED_FORMAT!r}")
        files = {}
        for name, entry in dict(d["files"]).items():
            sha, size = str(entry["sha256"]), int(entry["size"])
            if len(sha) != 64 or size < 0:
                raise ValueError(f"files.{name}: not a sha256 and a size")
            files[str(name)] = MemberDigest(sha, size)
        return cls(kind=str(d["kind"]), package_version=str(d["package_version"]),
                   license=None if d.get("license") is None else str(d["license"]), created=str(d.get("created", "")),
                   source=str(d.get("source", "")), plans=dict(d.get("plans") or {}), files=files)


def versions_compatible(exported: str, installed: str) -> bool:
    """Same major and minor version: the formats of a model folder change only with the minor version."""
    return _major_minor(exported) == _major_minor(installed)


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


# ---------------------------------------------------------------------------------------------------- export
def export_model(model_dir: Path | str, out: Path | str, license: str | None = None) -> Manifest:
    """Write ``model_dir`` (a folder ``find_best_configuration`` or ``install_model`` made) to the zip ``out``."""
    model_dir = Path(model_dir)
    description = ModelDescription.load(model_dir)
    for rel in referenced_checkpoints(description):
        if not (model_dir / rel).is_file():
            raise UserInputError(f"{model_dir / 'model.json'}: names {rel}, which is missing")
    plans_path = model_dir / "plans.json"
    try:
        plans = json.loads(plans_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserInputError(f"{plans_path}: cannot read the model's plans ({e})") from None
    return _export("model", model_dir, _shared_files(model_dir), plans, out, license)


def export_pretrained(bundle: Path | str, out: Path | str, license: str | None = None) -> Manifest:
    """Write the encoders of a pretraining (RESULTS/pretrain, an installed bundle, or one encoder file) to ``out``,
    each as ``<view>/encoder_<view>.pt`` (the layout ``--pretrained-from`` and ``plan_and_preprocess --like`` read)."""
    bundle = Path(bundle)
    plans = read_pretrained_bundle(bundle)  # refuses a folder without encoders, two of one view, ones without plans
    files = {f"{view}/{Path(p.encoder).name}": Path(p.encoder) for view, p in plans.items()}
    excerpts = {view: read_encoder_checkpoint(p.encoder).get("plans", {}) for view, p in plans.items()}
    return _export("pretrained", bundle, files, excerpts, out, license)


def referenced_checkpoints(description: ModelDescription) -> list[str]:
    """Every checkpoint path (relative to the model folder) that the model description names (a cascade's
    previous stage, an ensemble's members and the segmentations the anatomy readers read included)."""
    segmentations = [*description.segmentation.values(),
                     *(c for by_view in description.reader_segmentations.values() for c in by_view.values())]
    choices = [*(stage for choice in segmentations for stage in choice.stages()),
               *description.classifiers_by_views().values(), *description.readers.values()]
    if description.classification is not None:
        choices.append(description.classification)
    return sorted({rel for choice in choices for rel in choice.checkpoints})


def _shared_files(folder: Path) -> dict[str, Path]:
    """The folder's files by relative name, without hidden ones (temporaries, the lock) and an old manifest."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in rel.split("/")) and rel != MANIFEST:
            files[rel] = path
    return files


def _export(kind: str, source: Path, files: Mapping[str, Path], plans: dict[str, Any], out: Path | str,
            license: str | None) -> Manifest:
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="orthodiff-export-") as staging:
        staged = {}
        for name, path in files.items():
            checkpoint = load_checkpoint(path, mmap=True) if path.suffix == ".pt" else {}
            if any(key in checkpoint for key in TRAINING_ONLY_KEYS):
                staged[name] = Path(staging) / name
                staged[name].parent.mkdir(parents=True, exist_ok=True)
                save_checkpoint(staged[name], without_training_state(checkpoint))
            else:  # shared byte for byte: an encoder keeps the sha256 that runs planned or trained from it record
                staged[name] = path
        manifest = Manifest(kind=kind, package_version=__version__, license=license,
                            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            source=source.resolve().name, plans=plans,
                            files={name: digest_of(path) for name, path in staged.items()})
        write_zip(out, staged, {MANIFEST: json.dumps(manifest.to_dict(), indent=2)})
    return manifest


def without_training_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint without what only resuming its training reads."""
    return {k: v for k, v in checkpoint.items() if k not in TRAINING_ONLY_KEYS}


# --------------------------------------------------------------------------------------------------- install
def install_model(archive: Path | str, dest: Path | str) -> Manifest:
    """Install a zip ``export_model`` wrote as the model folder ``dest`` (for ``predict_folder --model``)."""
    return _install(archive, dest, "model")


def install_pretrained(archive: Path | str, dest: Path | str) -> Manifest:
    """Install a zip ``export_pretrained`` wrote as the encoder bundle ``dest`` (for ``auto --pretrained-from``,
    ``plan_and_preprocess --like`` and ``train_fold --pretrained DEST/<view>/encoder_<view>.pt``)."""
    return _install(archive, dest, "pretrained")


def _install(archive: Path | str, dest: Path | str, kind: str) -> Manifest:
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise UserInputError(f"{archive}: not found")
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise UserInputError(f"{dest}: already exists; install into a new folder (or remove this one)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.installing-", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                manifest = _verified_manifest(zf, kind)
                check_members(zf, manifest.files, extra_allowed=(MANIFEST,))
                extract_verified(zf, manifest.files, staging)
        except (ValueError, KeyError, TypeError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
            raise UserInputError(f"{archive}: refused, nothing installed: {e}") from None
        (staging / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2))
        _check_installed(staging, kind, archive)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _verified_manifest(zf: zipfile.ZipFile, kind: str) -> Manifest:
    try:
        manifest = Manifest.from_dict(json.loads(read_member_text(zf, MANIFEST)))
    except json.JSONDecodeError as e:
        raise ValueError(f"{MANIFEST} is not valid JSON ({e})") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{MANIFEST} is incomplete ({e})") from None
    if manifest.kind != kind:
        other = "install_pretrained" if manifest.kind == "pretrained" else "install_model"
        raise ValueError(f"it holds a {manifest.kind!r}, not a {kind!r} (use `orthodiff {other}`)"
                         if manifest.kind in KINDS else f"unknown kind {manifest.kind!r}")
    if not versions_compatible(manifest.package_version, __version__):
        raise ValueError(f"exported by orthodiff_auto {manifest.package_version}, this is {__version__} (a "
                         f"{kind} is shared between versions with the same major and minor number)")
    return manifest


def _check_installed(folder: Path, kind: str, archive: Path) -> None:
    """The extracted files are what they claim to be (hashes can be right for a wrong but consistent zip)."""
    try:
        if kind == "model":
            description = ModelDescription.load(folder)
            missing = [rel for rel in referenced_checkpoints(description) if not (folder / rel).is_file()]
            if missing:
                raise UserInputError(f"model.json names {missing[0]}, which the archive does not hold")
        elif not sorted(folder.rglob(ENCODER_FILE_PATTERN)):
            raise UserInputError("it holds no encoder_<view>.pt")
        else:
            read_pretrained_bundle(folder)
    except UserInputError as e:
        raise UserInputError(f"{archive}: refused, nothing installed: {str(e).replace(str(folder) + '/', '')}") from None


__all__ = ["KINDS", "MANIFEST", "Manifest", "SHARED_FORMAT", "TRAINING_ONLY_KEYS", "export_model",
           "export_pretrained", "install_model", "install_pretrained", "referenced_checkpoints",
           "versions_compatible", "without_training_state"]
