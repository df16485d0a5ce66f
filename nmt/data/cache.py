"""Cache entries that verify themselves: sentencepiece models and encoded training sets.

An entry is a directory under ``data.cache_dir`` (``spm-<key>/``, ``train-<key>/``). It is built into a
temporary directory beside it; a manifest with every file's size and sha256 is written there last, and
only then is the directory renamed into place. So an entry is either absent or complete: a killed build
leaves a temporary directory that no load reads (it is removed once its process is gone), and concurrent
builders (parallel runs, ranks on other nodes) each publish a whole entry, the first one staying.

Every load checks the files against the manifest, sizes first, then checksums (flipped bytes keep the
size): a truncated or damaged file, a missing file or a missing or unreadable manifest is logged in one
warning line and the entry rebuilt, never used. Hashing reads each file once per load; the encoded corpus
is memory-mapped from the same files just after, so the pages read stay cached.

Caches of earlier versions (``spm-<key>.model`` and ``train-<key>.arrow`` directly in the cache folder, no
manifest) are not read: each is rebuilt once as an entry, with the same key and the same bytes. The old
files are left alone, as a run of the earlier code may still be reading them; they can be deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from nmt.errors import DataError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(folder: Path) -> None:
    """Record size and sha256 of every file in ``folder``; the manifest is the last file written."""
    files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(folder.iterdir()) if p.is_file()}
    tmp = folder / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": files}, indent=1))
    tmp.replace(folder / MANIFEST)


def _recorded(entry: Path) -> dict[str, tuple[int, str]]:
    """File name -> (size, sha256) as the manifest records them; ValueError if it cannot be read."""
    try:
        files = json.loads((entry / MANIFEST).read_text())["files"]
        return {name: (int(f["size"]), str(f["sha256"])) for name, f in files.items()}
    except (KeyError, TypeError, AttributeError) as e:  # valid JSON of another shape
        raise ValueError(e) from None


def _problem(entry: Path) -> str | None:
    """What is wrong with the cache entry ``entry``, or None if every file matches its manifest."""
    if not (entry / MANIFEST).is_file():
        return f"has no manifest ({MANIFEST} was deleted, or the entry was not written by nmt)"
    try:
        recorded = _recorded(entry)
    except ValueError:
        return f"has an unreadable {MANIFEST} (damaged)"
    for name, (size, _) in recorded.items():
        path = entry / name
        if not path.is_file():
            return f"is missing {name}"
        if path.stat().st_size != size:
            return f"has {name} of {path.stat().st_size} bytes, not {size} (truncated or overwritten)"
    for name, (_, sha256) in recorded.items():
        if _sha256(entry / name) != sha256:
            return f"has {name} with another sha256 checksum than its manifest records (damaged)"
    return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        pass
    return True


def _remove_abandoned(entry: Path) -> None:
    """Delete the temporary directories of builds of ``entry`` whose process is gone (killed); a build
    still running keeps its own. The directory's name carries the process id."""
    for folder in entry.parent.glob(f"{entry.name}.partial*"):
        pid = folder.name.removeprefix(f"{entry.name}.partial").split(".")[0]
        if pid.isdigit() and not _running(int(pid)):
            log.info("removing %s, left by an interrupted build", folder)
            shutil.rmtree(folder, ignore_errors=True)


def cached_files(entry: Path, build: Callable[[Path], None], what: str) -> list[Path]:
    """The files of the cache entry ``entry`` (sorted by name), verified against its manifest, or built
    afresh by ``build(folder)`` (which writes them into ``folder``) when the entry is absent, incomplete
    or damaged. ``what`` names the entry in the log."""
    if entry.exists():
        wrong = _problem(entry)
        if wrong is None:
            log.info("reusing %s %s", what, entry)
            return sorted(entry / name for name in _recorded(entry))
        log.warning("cache entry %s %s; rebuilding it", entry, wrong)
        shutil.rmtree(entry, ignore_errors=True)  # a parallel run may be removing it too
    entry.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(entry)
    folder = entry.parent / f"{entry.name}.partial{os.getpid()}.{secrets.token_hex(4)}"
    folder.mkdir()  # permissions as the umask says, as the files in it get (tempfile.mkdtemp's are private)
    try:
        build(folder)
        _write_manifest(folder)
        try:
            folder.rename(entry)
            log.info("built %s %s", what, entry)
        except OSError as e:
            if not entry.is_dir() or _problem(entry) is not None:
                raise DataError(
                    f"cannot put the cache entry {entry} in place ({e}); delete it (or all of {entry.parent}) "
                    "and start again"
                ) from None
            log.info("another process built %s %s first; using that one", what, entry)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # gone after the rename; a failed build's files otherwise
    return sorted(entry / name for name in _recorded(entry))
