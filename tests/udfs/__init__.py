"""UDF modules the tests register by reference.

Workers (interpreters, worker processes, Ray actors) import a UDF by its
``__module__``, so these are ``udfs.<module>`` everywhere: in the tests, in
the ``'module:qualname'`` strings they pass, and in the scripts their child
Pythons run. conftest.py puts ``tests/`` on ``sys.path``; workers copy it.
"""
