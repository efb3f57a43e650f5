"""``python -m duckdb_subinterp``: the command line."""

from duckdb_subinterp._cli import main

raise SystemExit(main())
