"""Shared memory for a worker process's batches: regions that have no name, and their descriptors on the pipe.

Regions belong to the parent and have no name: a memfd on Linux (elsewhere
a POSIX shared-memory object unlinked the moment it is created), whose
descriptor travels to the worker over the pipe (SCM_RIGHTS). Nothing ever
appears in /dev/shm, so no crash, kill or exit can leave a segment behind;
the memory goes with the last process mapping it. Each worker has two,
inputs and outputs (``RegionSlot``), grown to fit a batch and shrunk after
a run of much smaller ones; the worker maps what it is handed
(``MappedRegion``).
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import secrets
import select
import socket
import sys
from array import array
from collections.abc import Sequence

from duckdb_subinterp._engine.pool import WorkerFailure
from duckdb_subinterp._errors import BrokenPoolError

MIN_REGION = 1 << 16
# A region shrinks when SHRINK_AFTER batches in a row needed less than a
# SHRINK_FACTOR-th of it: to twice the largest of them.
SHRINK_AFTER = 32
SHRINK_FACTOR = 4


class RegionUnavailable(Exception):
    """A region the parent handed over could not be received or mapped: the worker cannot go on."""


def _anonymous_memory(size: int) -> int:
    """Return the descriptor of ``size`` bytes of shared memory that has no name anywhere."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("duckdb_subinterp", os.MFD_CLOEXEC)
    else:  # pragma: no cover - macOS and the BSDs: a POSIX object, unlinked before anyone else can see it
        import _posixshmem  # type: ignore[import-not-found]  # CPython's own, private: typeshed has no stub

        name = f"/dsi_{secrets.token_hex(8)}"  # macOS allows 31 characters
        fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        _posixshmem.shm_unlink(name)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def send_fds(fd: int, fds: Sequence[int]) -> None:
    """Pass ``fds`` over the socket ``fd`` (SCM_RIGHTS), after the message that announced them."""
    with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        socket.send_fds(sock, [b"r"], fds)


def receive_fds(fd: int, count: int, timeout: float) -> list[int]:
    """Receive the ``count`` descriptors the parent sent right after its message."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not poller.poll(math.ceil(timeout * 1000)):
        raise RegionUnavailable(f"the parent announced {count} shared-memory regions but sent none")
    # MSG_CMSG_CLOEXEC: the descriptors must not leak into processes the UDF starts.
    with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        data, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(count * 4), getattr(socket, "MSG_CMSG_CLOEXEC", 0))
    fds = array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data or len(fds) != count:
        for received in fds:
            os.close(received)
        raise RegionUnavailable(f"expected {count} shared-memory regions from the parent, got {len(fds)}")
    return list(fds)


# -- the parent's side --------------------------------------------------------


class Region:
    """A parent-owned block of shared memory; its descriptor is held until the worker has it."""

    def __init__(self, size: int) -> None:
        size = max(MIN_REGION, (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE)
        try:
            fd = _anonymous_memory(size)
        except OSError as error:
            raise WorkerFailure(
                BrokenPoolError, f"could not allocate {size} bytes of shared memory for a batch: {error}"
            ) from None
        try:
            # trackfd=False: the mapping keeps no descriptor of its own, so a
            # region costs none once the worker received it.
            self.mmap = mmap.mmap(fd, size, trackfd=False)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.size = size
        self.view = memoryview(self.mmap)

    def handed_over(self) -> None:
        """Drop the descriptor: the worker received it (or never will, being dead)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        self.handed_over()
        self.view.release()
        with contextlib.suppress(BufferError):  # a view is still exported; the mapping goes with its last user
            self.mmap.close()


class RegionSlot:
    """One of a worker's two regions: grown to fit a batch, shrunk after a run of much smaller ones."""

    def __init__(self) -> None:
        self.region: Region | None = None
        self._peak = 0  # the largest size needed since the last resize or shrink check
        self._batches = 0

    def fit(self, size: int) -> Region | None:
        """Make the region hold ``size`` bytes; return it if it is a new one the worker must map."""
        region = self.region
        if region is not None and size <= region.size:
            self._peak = max(self._peak, size)
            self._batches += 1
            if self._batches < SHRINK_AFTER:
                return None
            peak, self._peak, self._batches = self._peak, 0, 0
            if region.size <= max(MIN_REGION, SHRINK_FACTOR * peak):
                return None
            target = 2 * peak
        else:
            # Doubling: a batch that grows a little at a time replaces the region rarely.
            target = max(size, 2 * region.size if region is not None else 0)
            self._peak = self._batches = 0
        fresh = Region(target)  # if this fails, the region in place stays
        self.retire()
        self.region = fresh
        return fresh

    def retire(self) -> None:
        """Give the region up; the next batch gets a fresh one (the worker keeps its mapping while in use)."""
        if self.region is not None:
            self.region.close()
            self.region = None


# -- the worker's side --------------------------------------------------------


class MappedRegion:
    """The worker's mapping of one of the parent's regions."""

    def __init__(self, fd: int, size: int) -> None:
        try:
            self.mmap = mmap.mmap(fd, size, trackfd=False)
        except OSError as error:
            raise RegionUnavailable(f"could not map {size} bytes of shared memory: {error}") from None
        finally:
            os.close(fd)
        self.view = memoryview(self.mmap)
        # Every memoryview made straight from the mmap (self.view, batch_view)
        # holds one reference to it, shared by all views sliced or cast from it.
        self._resting = self._references()

    def _references(self) -> int:
        return sys.getrefcount(self.mmap)

    def batch_view(self) -> memoryview:
        """Return a view for one batch's arguments; ``in_use`` tells whether anything sliced from it lives on."""
        return memoryview(self.mmap)

    def in_use(self) -> bool:
        """Tell whether views of an earlier ``batch_view`` are still alive (a UDF kept its arguments)."""
        return self._references() > self._resting

    def close(self) -> None:
        try:
            self.view.release()
            self.mmap.close()
        except BufferError:  # a UDF kept a view or an array over it; the mapping goes with the last one
            pass
