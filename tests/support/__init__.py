"""What the tests use that is not a test: the child-Python helper, the in-memory pool, process probes."""
