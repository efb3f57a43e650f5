"""Types of ``_direct.c``: calls into an isolated interpreter on the calling thread (main interpreter only)."""

from collections.abc import Callable
from typing import Self, final

# What a request may hold: rebuilt inside the interpreter, memoryviews shared (not copied).
type Request = bool | int | str | memoryview | tuple[Request, ...] | None
# What comes back: the same but memoryview. An exception in the interpreter
# comes back as the tuple (type name, message, traceback text).
type Reply = bool | int | str | tuple[Reply, ...] | None

@final
class DirectCall:
    """Call functions of an isolated interpreter on the calling thread."""

    def __new__(cls, interpreter_id: int) -> Self: ...
    def call(self, name: str, request: Request, /) -> Reply:
        """Call function ``name`` of the interpreter's __main__ with ``request`` rebuilt there."""

    def detach(self) -> None:
        """Delete this object's thread states and references in the interpreter, so it can be destroyed."""

    def stop(self, call: int, exception: str, /) -> bool:
        """Raise ``exception``, a class of the interpreter's __main__, in call number ``call`` if it still runs."""

    def raise_in_threads(self, idents: tuple[int, ...], /) -> int:
        """Raise SystemExit in the interpreter's threads of these idents; return how many were found."""

    def forget(self) -> None:
        """Drop the interpreter without touching it: for a process forked from the one that made it."""

    @property
    def interpreter_id(self) -> int:
        """The interpreter called into."""

    @property
    def held_buffers(self) -> int:
        """Caller's buffers kept because the interpreter still refers to them."""

    @property
    def thread_states(self) -> int:
        """Thread states kept in the interpreter, one per OS thread that called."""

    @property
    def running(self) -> tuple[int, int] | None:
        """(number, sigint_count() when it started) of the call running in the interpreter now, or None."""

@final
class SettledCall:
    """Call ``function`` for the next ``left`` batches, counting them, then ``fallback`` (see _direct.c)."""

    @property
    def left(self) -> int:
        """Calls still made through ``function`` before ``fallback`` again."""

    @left.setter
    def left(self, value: int) -> None: ...
    @property
    def thread(self) -> int:
        """While not 0: a call from another thread ident goes to ``fallback``, ``left`` set to -2."""

    @thread.setter
    def thread(self, value: int) -> None: ...
    @property
    def slow_per_row(self) -> float:
        """While > 0: a call whose rows took longer than this many seconds each sets ``left`` to -1."""

    @slow_per_row.setter
    def slow_per_row(self, value: float) -> None: ...
    @property
    def ended(self) -> float:
        """When the last timed call since ``thread`` was set ended, in time.perf_counter() seconds; 0.0: none."""

    @property
    def function(self) -> Callable[..., object]:
        """What the next calls call while ``left`` > 0."""

    @function.setter
    def function(self, value: Callable[..., object]) -> None: ...
    def __new__(
        cls,
        function: Callable[..., object],
        fallback: Callable[..., object],
        on_error: Callable[[BaseException], object] | None = None,
    ) -> Self: ...
    def __call__(self, *arguments: object) -> object: ...
    def take_counts(self) -> tuple[int, int]:
        """Return (batches, rows) called through ``function`` since the last take, and start again from 0."""

def watch_sigint() -> bool:
    """Count SIGINT in front of the installed handler; return whether it is counted."""

def sigint_count() -> int:
    """Return how many SIGINTs were noted since watch_sigint() first installed the handler."""
