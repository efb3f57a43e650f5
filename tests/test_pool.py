"""The pool engine itself, apart from any backend."""

from __future__ import annotations

import textwrap

from support.script_helper import run_python


def test_unregister_inside_the_pools_own_lock_does_not_deadlock():
    """A dispatcher's finalizer unregisters its UDF; the GC may run it while this thread holds the pool's lock."""
    probe = textwrap.dedent(
        """
        import gc
        from duckdb_subinterp._backends.inline import InlinePool

        pool = InlinePool()
        pool.register(1, ("spec",))

        class Garbage:
            def __del__(self):
                pool.unregister(1)  # as weakref.finalize(dispatcher, pool.unregister, udf_id) does

        cycle = Garbage()
        cycle.self = cycle
        del cycle
        with pool._lock:  # as in _sync_loaded, whose dict copy may start a collection
            gc.collect()
        assert 1 not in pool._specs and pool._generation == 1
        print("ok")
        """
    )
    result = run_python("-c", probe, timeout=30)
    assert result.stdout.strip() == "ok", result.report()
