"""Workdir housekeeping: an exclusive lock and atomic JSON files (process 0 only)."""

from __future__ import annotations

import fcntl
import json
import math
import os
from typing import Any

from shared.errors import WorkdirLockedError
from shared.metrics import is_main_process

_HELD: dict[str, Any] = {}  # realpath -> open lock file, held for the process life


def lock(workdir: str) -> None:
    """Takes `workdir/.lock` for this process, or refuses if a live run holds it.

    The lock is an `flock`: the kernel drops it when the holder dies (even by
    `kill -9`), so a crashed run never leaves a stale lock behind.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.realpath(os.path.join(workdir, ".lock"))
    if path in _HELD:
        return
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise WorkdirLockedError(
            f"workdir {workdir} is in use by a live run (pid {holder}); wait for it "
            "to finish, stop it, or choose another --workdir."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _HELD[path] = handle


def unlock(workdir: str) -> None:
    path = os.path.realpath(os.path.join(workdir, ".lock"))
    handle = _HELD.pop(path, None)
    if handle is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _strict(obj: Any) -> Any:
    """Non-finite floats as null: NaN / Infinity are not JSON, and strict readers
    (jq, JavaScript, `json.loads(..., parse_constant=...)`) reject them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def write_json(workdir: str, name: str, obj: Any) -> str:
    """Writes `workdir/name` atomically (tmp + rename) from process 0.

    Non-finite floats (e.g. a rate from a resumed run that had no step left to
    time) are written as null, so the file is strict JSON.
    """
    path = os.path.join(workdir, name)
    if is_main_process():
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(
                _strict(obj), f, indent=2, sort_keys=True, default=str, allow_nan=False
            )
            f.write("\n")
        os.replace(tmp, path)
    return path


def read_json(workdir: str, name: str) -> Any:
    with open(os.path.join(workdir, name)) as f:
        return json.load(f)
