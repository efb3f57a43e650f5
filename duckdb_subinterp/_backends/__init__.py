"""The backends: what a worker is, on top of the one pool engine (``_engine.pool``).

``subinterpreters`` (per-GIL interpreters in this process), ``processes``
(worker processes fed through shared memory; a sub-package split by job),
``ray`` (actors of a Ray cluster) and ``inline`` (this interpreter, the
serial reference). Each is a ``Worker`` and a ``WorkerPool`` subclass; what
differs between them lives in those classes (capability flags, exit and
fork hooks), never in ``if backend == ...`` tests elsewhere. This
``__init__`` imports nothing: the worker processes import
``processes.child`` through a bare package object.
"""
