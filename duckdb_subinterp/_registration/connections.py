"""What DuckDB holds of a registered UDF, and the connections that registered them.

DuckDB puts a Python UDF in the *database's* catalog, where every
connection and cursor of that database can call it, but keeps only a raw
pointer to the callable there; the one reference is held by the connection
object that registered it (duckdb-python issue 530). Once that object is
closed or collected, a cursor, or a second connection to the same database,
calls freed memory: DuckDB's own UDFs do, unless something else (a module)
keeps the function alive.

So DuckDB is never handed anything of ours but a ``CatalogEntry``: a
C-level forwarder (a ``functools.partial``, one vectorcall, ~20 ns a
call) that is never freed, whose target changes with the registration's
state:

- **live**: the target is the dispatcher (or the function, for DuckDB's own
  machinery), which the entry keeps while the registering connection lives;
- **released** (that connection is gone, the UDF stays in the catalog): the
  dispatcher and what the workers loaded are freed; a later call sets the
  UDF up again from the registration's arguments, as long as its function
  still exists (held weakly: a lambda nobody keeps is gone, as it is for
  DuckDB's own UDF), and keeps it from then on;
- **removed** (``remove_function``): the same, but a call (from a query that
  was already running, the only caller left) sets it up for that call only.

No Python API tells when a database itself is destroyed, so entries stay:
about 400 bytes each once released (the name, and a recipe that holds
the function and pool weakly), in ``_orphans``.

An aggregate or a table function is a temporary macro over a scalar UDF of
ours (``macros``); the connection keeps it too (``MacroFunction``), for
``remove_function`` and ``udf_stats`` to find the scalar UDF by the name
the user gave. DuckDB keeps temporary macros per connection: nothing of
them outlives the connection.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import duckdb

from duckdb_subinterp._errors import UDFRegistrationError

if TYPE_CHECKING:
    from duckdb_subinterp._engine.dispatch import BatchDispatcher


class Prepared(NamedTuple):
    """What a backend made of a registration: the callable DuckDB calls, and how DuckDB is to call it."""

    target: Callable[..., Any]
    arrow: bool  # registered with DuckDB as an arrow UDF (a batch a call)
    null_handling: str
    exception_handling: str
    dispatcher: BatchDispatcher | None  # the dispatcher behind target, where it is one of ours
    signature: inspect.Signature  # what DuckDB reads of target's parameters, where they are not given
    backend: str  # the backend that made it, which makes it again (backend="auto" chose one)


class Recipe(Protocol):
    """Sets a registration up again (a released or removed entry's next call).

    Raises ``FunctionGone`` where its function, held weakly, was collected,
    or UDFRegistrationError where it cannot for another reason.
    """

    def __call__(self) -> Prepared: ...


_NO_KEYWORDS: dict[str, Any] = {}  # DuckDB passes none

# Entries no connection holds any more; DuckDB's catalog may still point at them.
_orphans: list[CatalogEntry] = []
# Setting an entry up again, and releasing it: re-entrant, since the garbage
# collector may release entries (a connection's finalizer) on a thread that
# is setting one up.
_state_lock = threading.RLock()


class CatalogEntry(functools.partial[Any]):
    """The callable DuckDB's catalog holds for one UDF: forwards each call to the registration's current target.

    A ``functools.partial`` so that the forwarding is C code; ``_retarget``
    changes what it calls in place (``partial.__setstate__``), since DuckDB
    keeps the object's address. Slots, no instance dict: a released entry
    costs ~400 bytes (see the module docstring).
    """

    __slots__ = ("__signature__", "dispatcher", "name", "recipe")

    name: str
    dispatcher: BatchDispatcher | None
    __signature__: inspect.Signature  # set for DuckDB to read at registration, then deleted
    recipe: Recipe | None  # None: its function is gone for good

    @classmethod
    def create(cls, name: str, prepared: Prepared, recipe: Recipe | None) -> CatalogEntry:
        entry = cls(prepared.target)
        entry._retarget(prepared.target)  # to share _NO_KEYWORDS
        entry.name = name
        entry.dispatcher = prepared.dispatcher
        entry.recipe = recipe
        return entry

    def _retarget(self, target: Callable[..., Any]) -> None:
        # (function, args, keywords, instance dict); partial's pickling
        # support, which typeshed does not list. An exact dict is shared,
        # where None would make an empty one per entry.
        cast(Any, self).__setstate__((target, (), _NO_KEYWORDS, None))

    def switch(self, prepared: Prepared) -> None:
        """Call ``prepared``'s target from now on (backend="auto" moving a UDF to processes)."""
        with _state_lock:
            self.dispatcher = prepared.dispatcher
            self._retarget(prepared.target)

    def release(self) -> None:
        """The registering connection is gone: free the dispatcher; set the UDF up again if it is called."""
        with _state_lock:
            self.dispatcher = None
            self._retarget(self._set_up_again)

    def remove(self) -> None:
        """``remove_function`` dropped it from the catalog: free the dispatcher; a running query's call still works."""
        with _state_lock:
            self.dispatcher = None
            self._retarget(self._set_up_for_one_call)

    def _set_up_again(self, *arguments: Any) -> Any:
        """A released entry's first call: set the UDF up on its pool again, and keep it.

        Only a cursor, or another connection to the database, calls it now:
        what DuckDB's own UDF would run if its function were still alive.
        """
        with _state_lock:
            if self.func == self._set_up_again:  # not set up by another thread meanwhile
                prepared = self._prepared()
                self.dispatcher = prepared.dispatcher
                self._retarget(prepared.target)
            target = self.func
        return target(*arguments)

    def _set_up_for_one_call(self, *arguments: Any) -> Any:
        """A removed entry called by a query that was running at the removal: set up for this call only."""
        with _state_lock:
            target = self._prepared().target
        return target(*arguments)

    def _prepared(self) -> Prepared:
        recipe = self.recipe
        if recipe is None:
            raise UDFRegistrationError(f"UDF {self.name!r}: {_GONE}")
        try:
            return recipe()
        except FunctionGone:
            self.recipe = None  # gone for good: keep the name only
            raise UDFRegistrationError(f"UDF {self.name!r}: {_GONE}") from None


_GONE = (
    "the connection object that registered it was garbage-collected, and so was its function (nothing else "
    "referred to it); DuckDB keeps a UDF in the database's catalog, but only that connection object kept the "
    "function: keep that connection, or register the UDF again on the connection you query from"
)


class FunctionGone(Exception):
    """A recipe found the registered function collected."""


class MacroFunction(NamedTuple):
    """An aggregate or table function registered on a connection: its macro and the scalar UDF behind it."""

    name: str
    kind: str  # "aggregate" or "table function"
    scalar_name: str
    adapter: Any  # what the scalar UDF runs; kept here, since create_function holds a function weakly


class _ConnectionUdfs:
    """The UDFs one connection registered, by name; and its aggregates and table functions, by name."""

    __slots__ = ("active", "macros")

    def __init__(self) -> None:
        self.active: dict[str, CatalogEntry] = {}
        self.macros: dict[str, MacroFunction] = {}


_connections: dict[int, _ConnectionUdfs] = {}
_connections_lock = threading.Lock()


def add(con: duckdb.DuckDBPyConnection, entry: CatalogEntry) -> None:
    """Record ``entry`` as registered on ``con`` (after DuckDB accepted it)."""
    key = id(con)
    with _connections_lock:
        udfs = _connections.get(key)
        if udfs is None:
            udfs = _connections[key] = _ConnectionUdfs()
            weakref.finalize(con, _forget_connection, key)
        udfs.active[entry.name] = entry


def remove(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Forget ``name`` on ``con`` after DuckDB removed it."""
    with _connections_lock:
        udfs = _connections.get(id(con))
        entry = udfs.active.pop(name, None) if udfs is not None else None
    if entry is not None:
        _orphans.append(entry)
        entry.remove()


def _forget_connection(key: int) -> None:
    # No _connections_lock: the garbage collector runs this finalizer on
    # whatever thread allocates, possibly one holding it. One dict.pop is
    # atomic, and no holder of the lock iterates _connections.
    udfs = _connections.pop(key, None)
    if udfs is None:
        return
    for entry in udfs.active.values():
        _orphans.append(entry)
        entry.release()


def dispatcher(con: duckdb.DuckDBPyConnection, name: str) -> BatchDispatcher:
    """Return the dispatcher of the UDF ``name`` on ``con``, or raise KeyError."""
    with _connections_lock:
        udfs = _connections.get(id(con))
        entry = udfs.active.get(name) if udfs is not None else None
    found = entry.dispatcher if entry is not None else None
    if found is None:
        raise KeyError(f"no UDF {name!r} runs on a duckdb_subinterp pool on this connection")
    return found


def quote(identifier: str) -> str:
    """Return ``identifier`` as a quoted SQL identifier (any text, keywords and quotes included)."""
    return '"' + identifier.replace('"', '""') + '"'


def add_macro(con: duckdb.DuckDBPyConnection, macro: MacroFunction) -> None:
    """Record aggregate or table function ``macro`` on ``con`` (after its scalar UDF and its macro were created)."""
    with _connections_lock:
        udfs = _connections.get(id(con))
        if udfs is None:  # add() made it, for the scalar UDF: only a collected connection has none
            raise UDFRegistrationError(f"{macro.kind} {macro.name!r}: the connection was closed while registering")
        udfs.macros[macro.name.lower()] = macro


def macro(con: duckdb.DuckDBPyConnection, name: str) -> MacroFunction | None:
    """Return the aggregate or table function ``name`` registered on ``con``, if there is one.

    Case aside, as DuckDB's catalog finds the macro: ``PYMED(x)`` calls ``pymed``.
    """
    with _connections_lock:
        udfs = _connections.get(id(con))
        return udfs.macros.get(name.lower()) if udfs is not None else None


def scalar_name(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """Return the name of the scalar UDF doing ``name``'s work: its own, unless an aggregate's or table function's."""
    found = macro(con, name)
    return found.scalar_name if found is not None else name


def drop_macro(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """Drop the macro of aggregate or table function ``name``; return its scalar UDF's name (None: not one)."""
    found = macro(con, name)
    if found is None:
        return None
    table = " TABLE" if found.kind == "table function" else ""
    # Dropped first, forgotten after: where DuckDB refuses (an aborted transaction) the record stays.
    con.execute(f"DROP MACRO{table} IF EXISTS temp.main.{quote(found.name)}")
    with _connections_lock:
        udfs = _connections.get(id(con))
        if udfs is not None:
            udfs.macros.pop(name.lower(), None)
    return found.scalar_name
