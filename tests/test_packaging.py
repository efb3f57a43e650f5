"""What users install says what it is: metadata, version, extras, and a README that works as a PyPI page."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.resources
import re
from pathlib import Path

import pytest

import duckdb_subinterp
from bench import suite as _bench

README = Path(__file__).resolve().parents[1] / "README.md"
METADATA = importlib.metadata.metadata("duckdb-subinterp")


def test_metadata_says_what_was_tested():
    assert METADATA["Version"] == duckdb_subinterp.__version__
    assert METADATA["License-Expression"] == "MIT"
    assert METADATA["Requires-Python"] == ">=3.13"
    classifiers = METADATA.get_all("Classifier")
    # Only the Python versions the suite ran on: add one when CI runs it.
    assert [c for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)] == [
        "Programming Language :: Python :: 3.13"
    ]
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert not [c for c in classifiers if "Windows" in c]


def test_requirements_have_lower_bounds_and_psutil_is_an_extra():
    requirements = METADATA.get_all("Requires-Dist")
    required = [r for r in requirements if "extra ==" not in r]
    assert sorted(re.match(r"[\w-]+", r).group(0) for r in required) == ["cloudpickle", "duckdb", "numpy", "pyarrow"]
    assert all(">=" in r for r in required), required
    assert any(r.startswith("psutil") and 'extra == "bench"' in r for r in requirements)


def test_project_urls_and_homepage():
    urls = dict(entry.split(", ", 1) for entry in METADATA.get_all("Project-URL"))
    assert urls["Homepage"] == _bench.project_url()
    assert urls["Source"] == urls["Homepage"] and urls["Issues"] == urls["Homepage"] + "/issues"


@pytest.mark.skipif(not README.exists(), reason="no README.md beside the tests (not a checkout or an sdist)")
def test_readme_links_are_absolute_and_point_at_the_project():
    readme = README.read_text()
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert links
    relative = [link for link in links if not link.startswith("https://")]
    assert not relative, f"relative links break on PyPI: {relative}"
    github = {re.match(r"https://github\.com/[^/#]+/[^/#]+", link).group(0) for link in links if "github.com" in link}
    assert github == {_bench.project_url()}
    assert "pip install duckdb-subinterp" in readme


EXTENSIONS = ("_direct", "_arrowc", "_codecc")


def test_the_package_ships_its_types():
    package = importlib.resources.files("duckdb_subinterp")
    assert package.joinpath("py.typed").is_file()
    for extension in EXTENSIONS:
        assert package.joinpath(f"{extension}.pyi").is_file(), f"no type stub for {extension}"


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_each_stub_names_what_its_extension_has(extension):
    try:
        module = importlib.import_module(f"duckdb_subinterp.{extension}")
    except ImportError:
        pytest.skip(f"duckdb_subinterp.{extension} was not built")
    stub = ast.parse(importlib.resources.files("duckdb_subinterp").joinpath(f"{extension}.pyi").read_text())
    stubbed = {node.name: node for node in stub.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert set(stubbed) == {name for name in vars(module) if not name.startswith("_")}
    for name, node in stubbed.items():
        if isinstance(node, ast.ClassDef):
            members = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
            actual = {member for member in vars(getattr(module, name)) if not member.startswith("_")}
            assert {member for member in members if not member.startswith("_")} == actual, name
