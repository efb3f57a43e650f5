"""Every ```python block of the README and the docs runs: page by page, in order, in a child Python.

A page's blocks share one namespace, as a reader running them one after the
other would, in a fresh ``python -W error`` whose working directory is a
temporary folder (also first on its ``sys.path``) and which a hard timeout
ends. A block may be marked, by an HTML comment on the line just above it
(invisible on GitHub, PyPI and the site):

- ``<!-- docs-test: file NAME.py -->``: the block is a module of the
  reader's, written to NAME.py in that folder before the page runs, so
  that later blocks import it (a UDF registered by reference needs one);
- ``<!-- docs-test: skip WHY -->``: the block is not run, for the reason
  given (it needs a Ray cluster, a network). Keep these few.

An unmarked block that fails, or a marker that no ```python block follows,
fails the test. Shell and other blocks are not run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.script_helper import run_python

from bench import suite as _bench

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [page for page in (README, *sorted(DOCS.glob("*.md"))) if page.exists()]

# A page runs in well under a minute on 2 cores; a hang dumps every thread's stack first.
PAGE_TIMEOUT = 150.0
STACK_DUMP_AFTER = PAGE_TIMEOUT - 15.0

FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
MARKER = re.compile(r"^\s*<!-- docs-test: (?P<action>\S+)(?: (?P<argument>.*?))? -->\s*$")
# Other names for Python code would slip past the runner: every Python block says ```python.
OTHER_PYTHON_LABELS = {"py", "python3", "pycon", "ipython", "pyi"}


@dataclass(frozen=True)
class Block:
    """A fenced block of a page: where it starts, its language, its code and its marker, if any."""

    page: Path
    line: int  # of the first code line, 1-based
    language: str
    code: str
    action: str  # "run", "skip" or "file"
    argument: str = ""

    @property
    def path(self) -> str:
        return self.page.relative_to(REPO).as_posix() if self.page.is_relative_to(REPO) else self.page.name

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """Return the fenced blocks of a Markdown page, each with the marker on the line above it, checked."""
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    marker: tuple[int, str, str] | None = None  # waiting for its block: line, action, argument
    index = 0
    while index < len(lines):
        found, opening = MARKER.match(lines[index]), FENCE.match(lines[index])
        if found or not opening:
            assert marker is None, f"{page.name}:{marker[0]}: a docs-test marker goes on the line right above its block"
            if found:
                marker = (index + 1, found["action"], found["argument"] or "")
            index += 1
            continue
        start, indent, fence = index, len(opening["indent"]), opening["fence"]
        language = opening["info"].split()[0] if opening["info"] else ""
        index += 1
        while index < len(lines) and not (
            (closing := FENCE.match(lines[index])) and closing["fence"].startswith(fence) and not closing["info"]
        ):
            index += 1
        assert index < len(lines), f"{page.name}:{start + 1}: the block opened here is never closed"
        # A block inside a list item is indented: its code is what is left of each line past that indent.
        code = "".join(f"{line[indent:] if not line[:indent].strip() else line}\n" for line in lines[start + 1 : index])
        action, argument = ("run", "") if marker is None else marker[1:]
        where = f"{page.name}:{start + 1}"
        if marker is not None:
            assert language == "python", f"{where}: docs-test markers go above ```python blocks only"
        assert action in {"run", "skip", "file"}, f"{where}: unknown docs-test action {action!r}"
        assert action != "skip" or argument, f"{where}: `docs-test: skip` needs a reason"
        assert action != "file" or re.fullmatch(r"[A-Za-z_]\w*\.py", argument), f"{where}: `file` needs a NAME.py"
        blocks.append(Block(page, start + 2, language, code, action, argument))
        marker = None
        index += 1
    assert marker is None, f"{page.name}:{marker[0]}: a docs-test marker at the end of the page marks nothing"
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [block for block in blocks_of(page) if block.language == "python"]


# The child: runs each block in __main__'s namespace, as a script made of the page's blocks would, with
# tracebacks that point at the page's own lines. It leaves no global name of its own there.
DRIVER = """\
def _run():
    import faulthandler, json, sys
    globals().pop("_run")
    faulthandler.dump_traceback_later(float(sys.argv[2]), exit=True)
    with open(sys.argv[1]) as file:
        blocks = json.load(file)
    for path, line, code in blocks:
        print(f"== {path}:{line}", flush=True)
        exec(compile("\\n" * (line - 1) + code, path, "exec"), globals())
    print("== every block ran", flush=True)


_run()
"""


def run_page(page: Path, folder: Path) -> tuple[int, str]:
    """Write the page's modules into ``folder``, then run its other blocks there in one child Python."""
    blocks = python_blocks(page)
    for block in blocks:
        if block.action == "file":
            (folder / block.argument).write_text(block.code)
    runnable = [[block.path, block.line, block.code] for block in blocks if block.action == "run"]
    (folder / "blocks.json").write_text(json.dumps(runnable))
    (folder / "run_blocks.py").write_text(DRIVER)
    result = run_python(
        *("-W", "error", "run_blocks.py", "blocks.json", str(STACK_DUMP_AFTER)),
        cwd=folder,
        timeout=PAGE_TIMEOUT,
        merge_stderr=True,
        tests_on_path=False,  # a reader's Python: what the page imports is its own
    )
    return result.returncode, result.stdout


PAGES_WITH_CODE = [page for page in PAGES if any(block.action == "run" for block in python_blocks(page))]


@pytest.mark.timeout(PAGE_TIMEOUT + 30)
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[str(page.relative_to(REPO)) for page in PAGES_WITH_CODE])
def test_the_python_blocks_of_each_page_run(page: Path, tmp_path: Path):
    returncode, output = run_page(page, tmp_path)
    assert returncode == 0 and output.rstrip().endswith("== every block ran"), (
        f"a ```python block of {page.name} failed (exit {returncode}); mark it only if it cannot run in CI:\n"
        f"{output[-8000:]}"
    )


def test_every_python_block_runs_or_says_why_not():
    assert README in PAGES and (DOCS / "index.md") in PAGES, "the README and docs/*.md are beside the tests"
    blocks = [block for page in PAGES for block in blocks_of(page)]  # each page's markers checked on the way
    mislabelled = [block.where for block in blocks if block.language in OTHER_PYTHON_LABELS]
    assert not mislabelled, f"label Python blocks ```python, or they are never run: {mislabelled}"
    for block in blocks:
        if block.action == "file":
            compile(block.code, block.where, "exec")
    # What cannot run in CI (a Ray cluster, a network) is the exception: each one is a promise nobody checks.
    skipped = [block.where for block in blocks if block.action == "skip"]
    assert len(skipped) <= 3, f"too many ```python blocks are not run: {skipped}"


@pytest.mark.skipif(not README.exists(), reason="no README.md beside the tests (not a checkout or an sdist)")
def test_the_readme_is_short_and_says_how_to_set_up():
    readme = README.read_text()
    # It sells and links; the docs hold the rest.
    assert len(readme.splitlines()) <= 200, "README.md has grown past 200 lines: move the detail into docs/"
    assert "bash .ci/env demo" in readme and "bash .ci/env test" in readme


def test_the_runner_shares_names_across_blocks_imports_file_blocks_and_fails_on_a_failing_block(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: file helper.py -->\n```python\nVALUE = 41\n```\n\n"
        "```python\nimport helper\n\nanswer = helper.VALUE + 1\n```\n\n"
        "- a list item:\n\n  ```python\n  assert answer == 42\n  ```\n\n"
        "<!-- docs-test: skip never runs -->\n```python\nraise SystemExit(5)\n```\n\n"
        "```sh\nexit 1\n```\n"
    )
    (tmp_path / "run").mkdir()
    assert run_page(page, tmp_path / "run") == (0, "== page.md:7\n== page.md:15\n== every block ran\n")
    page.write_text(page.read_text() + "\n```python\nraise ValueError('a broken example')\n```\n")
    returncode, output = run_page(page, tmp_path / "run")
    assert returncode == 1 and 'File "page.md", line 28' in output and "ValueError: a broken example" in output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- docs-test: skip why -->\n\n```python\npass\n```\n", "on the line right above its block"),
        ("<!-- docs-test: skip -->\n```python\npass\n```\n", "needs a reason"),
        ("<!-- docs-test: file a-b.py -->\n```python\npass\n```\n", "needs a NAME.py"),
        ("<!-- docs-test: later -->\n```python\npass\n```\n", "unknown docs-test action"),
        ("<!-- docs-test: skip why -->\n```sh\ntrue\n```\n", "above ```python blocks only"),
        ("text\n<!-- docs-test: skip why -->\n", "marks nothing"),
        ("```python\npass\n", "never closed"),
    ],
)
def test_a_misplaced_or_malformed_marker_fails(tmp_path: Path, text: str, message: str):
    page = tmp_path / "page.md"
    page.write_text(text)
    with pytest.raises(AssertionError, match=re.escape(message)):
        blocks_of(page)


@pytest.mark.skipif(not (DOCS / "reference.md").exists(), reason="no docs/ beside the tests")
def test_the_api_reference_covers_the_public_api():
    import duckdb_subinterp

    documented = re.findall(r"^::: duckdb_subinterp\.(\w+)$", (DOCS / "reference.md").read_text(), re.M)
    assert sorted(documented) == sorted(duckdb_subinterp.__all__)


def test_links_to_the_repository_name_files_that_exist():
    """A link to a file of the repository (the README's are absolute, for PyPI) names one that is there."""
    link = re.compile(rf"\]\({re.escape(_bench.project_url())}/(?:blob|tree|raw)/main/([^)#\s]+)")
    # The sdist carries what the tests read, not tools/: a link into a folder that is not here is not checked.
    missing = [
        f"{page.name}: {path}"
        for page in PAGES
        for path in link.findall(page.read_text())
        if (REPO / path.split("/")[0]).exists() and not (REPO / path).exists()
    ]
    assert not missing, f"links to files that do not exist: {missing}"
