"""Zip archives whose every member has a known SHA-256: written atomically, read back only into a given folder.

Reading trusts nothing in the archive: a member name that would land outside the folder (``../x``, ``/etc/x``,
``C:\\x``, a symlink entry) is refused before anything is written (zip-slip), every member is checked against the
size and SHA-256 it is expected to have while it is copied, so a member larger than announced is never written
whole (a zip bomb), and a member that nobody expects, or an expected one that is missing, is refused too.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Mapping

from orthodiff_auto.utils.atomic import atomic_path

CHUNK = 1 << 20


@dataclass(frozen=True)
class MemberDigest:
    sha256: str
    size: int

    def to_dict(self) -> dict[str, object]:
        return {"sha256": self.sha256, "size": self.size}


def sha256_of(path: Path | str) -> str:
    """The file's SHA-256, read in 1 MiB chunks (checkpoints are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_of(path: Path | str) -> MemberDigest:
    return MemberDigest(sha256_of(path), Path(path).stat().st_size)


def safe_member_name(name: str) -> PurePosixPath:
    """``name`` as a relative path that stays inside the folder it is extracted to; ValueError otherwise."""
    if not name or "\\" in name or "\x00" in name or ":" in name:
        raise ValueError(f"member name {name!r} is not a plain relative path")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", ".", "") for part in name.split("/")):
        raise ValueError(f"member name {name!r} points outside the archive's folder")
    return path


def write_zip(out: Path | str, files: Mapping[str, Path], texts: Mapping[str, str]) -> None:
    """``files`` (member name -> file) and ``texts`` (member name -> UTF-8 text) into ``out``, atomically."""
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, text in texts.items():
            zf.writestr(str(safe_member_name(name)), text)
        for name, path in sorted(files.items()):
            zf.write(path, str(safe_member_name(name)))


def read_member_text(zf: zipfile.ZipFile, name: str, limit: int = 64 << 20) -> str:
    """A small text member (e.g. a manifest); ValueError when it is missing or larger than ``limit`` bytes."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ValueError(f"no {name} in the archive") from None
    if info.file_size > limit:
        raise ValueError(f"{name} is {info.file_size} bytes, more than a manifest can be")
    with zf.open(info) as f:
        return f.read(limit + 1)[:limit].decode("utf-8")


def check_members(zf: zipfile.ZipFile, expected: Mapping[str, MemberDigest], extra_allowed: tuple[str, ...]) -> None:
    """Refuse (ValueError naming the member) unsafe names, links, duplicates, and members not expected or missing."""
    names = []
    for info in zf.infolist():
        safe_member_name(info.filename.rstrip("/") if info.is_dir() else info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ValueError(f"member {info.filename!r} is a symbolic link")
        if not info.is_dir():
            names.append(info.filename)
    if len(names) != len(set(names)):
        raise ValueError("the archive holds a member name twice")
    unexpected = sorted(set(names) - set(expected) - set(extra_allowed))
    if unexpected:
        raise ValueError(f"member {unexpected[0]!r} is not listed in the manifest")
    missing = sorted(set(expected) - set(names))
    if missing:
        raise ValueError(f"member {missing[0]!r} is listed in the manifest but missing")
    for name in expected:
        safe_member_name(name)


def extract_verified(zf: zipfile.ZipFile, expected: Mapping[str, MemberDigest], into: Path) -> None:
    """Copy every expected member into ``into`` (which must exist), checking its size and SHA-256 as it is
    copied; ValueError naming the first member that differs. Call ``check_members`` first."""
    root = into.resolve()
    for name, digest in sorted(expected.items()):
        target = root.joinpath(*safe_member_name(name).parts)
        if root not in target.resolve().parents:
            raise ValueError(f"member {name!r} points outside the archive's folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        h, size = hashlib.sha256(), 0
        with zf.open(name) as src, open(target, "xb") as dst:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if size > digest.size:
                    raise ValueError(f"member {name!r} is larger than the manifest says ({digest.size} bytes)")
                h.update(chunk)
                dst.write(chunk)
        if size != digest.size or h.hexdigest() != digest.sha256:
            raise ValueError(f"member {name!r} does not match its sha256 in the manifest (changed or corrupt)")


__all__ = ["MemberDigest", "check_members", "digest_of", "extract_verified", "read_member_text", "safe_member_name",
           "sha256_of", "write_zip"]
