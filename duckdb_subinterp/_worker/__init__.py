"""What runs inside a worker: an isolated interpreter, a worker process, a Ray actor, or inline.

Standard library only (plus cloudpickle, for functions shipped by value):
the workers import these modules through a bare ``duckdb_subinterp``
package object, where duckdb and pyarrow cannot load. This ``__init__``
imports nothing.
"""
