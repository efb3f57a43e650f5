"""Registration: what ``create_function`` does, by job.

``signatures`` reads a UDF's types as DuckDB does, ``shipping`` decides how
its code reaches the workers, ``validation`` makes the one ``Registration``
record of a call, ``backends`` turns it into what DuckDB calls on a pool of
the backend's kind, ``connections`` keeps what DuckDB's catalog holds, and
``api`` has the public functions. ``aggregates`` and ``table_functions``
have ``create_aggregate_function`` and ``create_table_function``: a
temporary macro over a scalar UDF of ours (``macros``).
"""
