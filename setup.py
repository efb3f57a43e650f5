"""Build hook; the project's metadata and extension list are in pyproject.toml.

A Python built with ``--enable-shared`` (pyenv's, for one) puts
``-Wl,-rpath,<its lib dir>`` into the link command it hands to extensions.
Extension modules do not link libpython on Linux, so that RUNPATH serves
nothing and would ship the build machine's path inside every wheel
(auditwheel repair keeps it): drop it at link time.

The extensions are optional for ``pip install`` from source (without a
compiler the package runs, slower, and says so); a wheel for others must
carry them: ``DUCKDB_SUBINTERP_REQUIRE_EXTENSIONS=1`` makes a failed
compile fail the build.
"""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildExtWithoutRpath(build_ext):
    """build_ext that links without the interpreter's own -rpath."""

    def build_extensions(self) -> None:
        if os.environ.get("DUCKDB_SUBINTERP_REQUIRE_EXTENSIONS") == "1":
            for extension in self.extensions:
                extension.optional = False
        self.compiler.linker_so = [flag for flag in self.compiler.linker_so if not flag.startswith("-Wl,-rpath")]
        super().build_extensions()


setup(cmdclass={"build_ext": BuildExtWithoutRpath})
