"""The main side, whatever the backend: the pool engine, the dispatcher DuckDB calls, Arrow buffers, exit and fork."""
