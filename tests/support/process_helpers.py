"""What the processes backend's tests check a process for: live workers, mapped regions, /dev/shm entries."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

SHM_DIR = Path("/dev/shm")
# The only names the package ever gives a region: the fallback where memfd_create
# is missing (unlinked at once). A memfd has none.
OUR_PREFIX = "dsi_"


def our_segments() -> set[str]:
    """Return the entries of /dev/shm the package could have made (there should be none)."""
    return {path.name for path in SHM_DIR.iterdir() if path.name.startswith(OUR_PREFIX)} if SHM_DIR.exists() else set()


def mapped_regions(pid: int | str = "self") -> int:
    """Count the package's shared-memory regions a process maps (a memfd, or the fallback's unlinked object)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return sum(1 for line in lines if "/memfd:duckdb_subinterp" in line or f"/{OUR_PREFIX}" in line)


def alive(pids: Iterable[int], wait: float = 0.0) -> list[int]:
    """Return the pids still running (zombies count as gone) after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        running = [pid for pid in pids if _running(pid)]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")
