"""Every code block of README.md and docs/*.md runs, or says what it is.

A block is one of:

- a **complete program**: a ```python block with no marker. It is run as it is, in a
  subprocess, in an empty directory, on SQLite; a block that reads a ``*_URL`` environment
  variable (``os.environ.get("SESSIONDB_URL", "sqlite:///...")``) runs on PostgreSQL and MariaDB
  too, with that variable set to a private test database. No API key is passed on: programs
  with a model use a scripted one without ``GOOGLE_API_KEY``/``OPENAI_API_KEY``.
- a **fragment** of a complete example: a ```python block right after the line
  ``<!-- fragment of examples/NAME.py -->``. The example must exist and contain the
  fragment's code (compared token by token, comments and line breaks aside; a line ``...``
  in the fragment stands for code left out). The examples named are run here too.
- **not Python**: a block whose language is one of ``OTHER`` (shell, config, output,
  signatures as ``text``).

Anything else (an unmarked block without a language, a ```python block that is neither)
fails ``test_every_block_is_classified``.
"""

from __future__ import annotations

import ast
import inspect
import io
import os
import re
import subprocess
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

from sessiondb import AsyncSessionStore, SessionStore

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = {"python", "py"}
OTHER = {"bash", "sh", "console", "shell", "text", "yaml", "toml", "ini", "sql", "json", "jsonl"}
FRAGMENT = re.compile(r"<!-- fragment of (examples/[\w/.-]+\.py) -->")
ENV_URL = re.compile(r"""os\.(?:environ\.get|environ\[|getenv)\(?\s*["'](\w+_URL)["']""")
PLACEHOLDER_HOST = re.compile(
    r"://[^/\s\"']*@(?:db|host|db\d|db\.internal|pgbouncer|primary|replica)(?::\d+)?[/\"',]"
)
KEYS = ("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "OPENAI_API_KEY")
SERVERS = ("postgresql", "mysql")
TIMEOUT = 300


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    fragment_of: str | None  # examples/NAME.py

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def env_url(self) -> str | None:
        """The ``*_URL`` environment variable the program reads its database URL from."""
        found = ENV_URL.search(self.code)
        return found.group(1) if found else None


def blocks() -> list[Block]:
    found: list[Block] = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.lstrip().startswith("```"):
                indent = line[: len(line) - len(line.lstrip())]
                lang = line.strip()[3:].strip()
                end = i + 1
                while lines[end].strip() != "```":
                    end += 1
                code = "\n".join(x.removeprefix(indent) for x in lines[i + 1 : end]) + "\n"
                before = next((x for x in reversed(lines[:i]) if x.strip()), "")
                marker = FRAGMENT.fullmatch(before.strip())
                found.append(Block(page, i + 1, lang, code, marker and marker.group(1)))
                i = end
            i += 1
    return found


BLOCKS = blocks()
PROGRAMS = [b for b in BLOCKS if b.lang in PYTHON and b.fragment_of is None]
FRAGMENTS = [b for b in BLOCKS if b.fragment_of is not None]
EXAMPLES = sorted({b.fragment_of for b in FRAGMENTS if b.fragment_of})


def test_every_block_is_classified() -> None:
    problems = []
    for b in BLOCKS:
        if b.fragment_of is not None and b.lang not in PYTHON:
            problems.append(f"{b.name}: a fragment marker before a ```{b.lang or ''} block")
        elif b.lang not in PYTHON | OTHER:
            problems.append(
                f"{b.name}: ```{b.lang} is neither python nor one of {sorted(OTHER)}; "
                "mark what is not runnable Python (e.g. ```text)"
            )
    assert problems == []
    assert len(PROGRAMS) >= 10 and len(FRAGMENTS) >= 10


@pytest.mark.parametrize("block", PROGRAMS, ids=lambda b: b.name)
def test_program_is_complete(block: Block) -> None:
    """Parses as a module (no top-level await), and names no placeholder server."""
    try:
        ast.parse(block.code)
    except SyntaxError as exc:
        pytest.fail(
            f"{block.name} is not a complete program ({exc.msg}, line {exc.lineno}): "
            "make it one, or mark it <!-- fragment of examples/NAME.py -->"
        )
    assert not PLACEHOLDER_HOST.search(block.code), (
        f"{block.name} names a placeholder server: read the URL from an environment variable, "
        "with SQLite as the default"
    )


def tokens(code: str) -> list[str]:
    """The code's tokens, without comments, line structure or trailing commas."""
    kept = []
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    skip.add(tokenize.ENDMARKER)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(textwrap.dedent(code)).readline):
            if tok.type in skip:
                continue
            if tok.string in ")]}" and kept and kept[-1] == ",":
                kept.pop()
            kept.append(tok.string)
    except tokenize.TokenError:  # a piece that stops inside a call ("..." for the rest)
        pass
    return kept


def contains(haystack: list[str], needle: list[str], start: int) -> int:
    """The index just after ``needle`` in ``haystack[start:]``, or -1."""
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i : i + len(needle)] == needle:
            return i + len(needle)
    return -1


def pieces(code: str) -> list[str]:
    """The fragment's code split at lines that are only ``...`` (code left out)."""
    parts, current = [], []
    for line in code.splitlines():
        if line.strip() in ("...", "# ..."):
            parts.append("\n".join(current))
            current = []
        else:
            current.append(line)
    parts.append("\n".join(current))
    return [p for p in parts if p.strip()]


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda b: b.name)
def test_fragment_is_in_its_example(block: Block) -> None:
    assert block.fragment_of is not None
    example = ROOT / block.fragment_of
    assert example.is_file(), f"{block.name}: {block.fragment_of} does not exist"
    source = tokens(example.read_text(encoding="utf-8"))
    at = 0
    for piece in pieces(block.code):
        at = contains(source, tokens(piece + "\n"), at)
        assert at >= 0, f"{block.name}: {block.fragment_of} does not contain:\n{piece}"


def backend_params(env_url: str | None) -> list[object]:
    names = ["sqlite", *(SERVERS if env_url else ())]
    return [pytest.param(n, marks=getattr(pytest.mark, n), id=n) for n in names]


def program_params() -> list[object]:
    params = []
    for b in PROGRAMS:
        for p in backend_params(b.env_url):
            name = p.values[0]  # type: ignore[attr-defined]
            params.append(pytest.param(b, name, marks=p.marks, id=f"{b.name}-{name}"))  # type: ignore[attr-defined]
    return params


def run(args: list[str], cwd: Path, env_url: str | None, url: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in KEYS and not k.endswith("_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if env_url and url:
        env[env_url] = url
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize(("block", "backend"), program_params(), indirect=["backend"])
def test_program_runs(
    block: Block, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = None if backend == "sqlite" else request.getfixturevalue("db_url")
    (tmp_path / "program.py").write_text(block.code, encoding="utf-8")
    run(["program.py"], tmp_path, block.env_url, url)


def example_params() -> list[object]:
    params = []
    for name in EXAMPLES:
        path = ROOT / name
        if path.parent.name != "examples":  # a module of an app (fastapi_app): its tests run it
            continue
        env_url = ENV_URL.search(path.read_text(encoding="utf-8")) if path.is_file() else None
        for p in backend_params(env_url and env_url.group(1)):
            backend = p.values[0]  # type: ignore[attr-defined]
            params.append(pytest.param(name, backend, marks=p.marks, id=f"{name}-{backend}"))  # type: ignore[attr-defined]
    return params


@pytest.mark.parametrize(("example", "backend"), example_params(), indirect=["backend"])
def test_example_runs(
    example: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    path = ROOT / example
    found = ENV_URL.search(path.read_text(encoding="utf-8"))
    url = None if backend == "sqlite" else request.getfixturevalue("db_url")
    run([str(path)], tmp_path, found and found.group(1), url)


# -- README's method table ----------------------------------------------------------------------

SIGNATURE = re.compile(r"`(\w+)\(([^`]*)\)`")


def readme_methods() -> list[tuple[str, str]]:
    """``(name, parameters)`` of each signature in the first column of README's method table."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| method | returns |")
    found = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        found += SIGNATURE.findall(line.split(" | ")[0])
    return found


def described(params: str) -> list[tuple[str, str, object]]:
    """``(kind, name, default)`` of each parameter written in the table."""
    fn = ast.parse(f"def f({params}): pass").body[0]
    assert isinstance(fn, ast.FunctionDef)
    a = fn.args
    out: list[tuple[str, str, object]] = []
    defaults = [None] * (len(a.args) - len(a.defaults)) + list(a.defaults)
    for arg, default in zip(a.args, defaults, strict=True):
        value = inspect.Parameter.empty if default is None else ast.literal_eval(default)
        out.append(("POSITIONAL_OR_KEYWORD", arg.arg, value))
    if a.vararg:
        out.append(("VAR_POSITIONAL", a.vararg.arg, inspect.Parameter.empty))
    for arg, kw_default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        value = inspect.Parameter.empty if kw_default is None else ast.literal_eval(kw_default)
        out.append(("KEYWORD_ONLY", arg.arg, value))
    if a.kwarg:
        out.append(("VAR_KEYWORD", a.kwarg.arg, inspect.Parameter.empty))
    return out


def actual(cls: type, name: str) -> list[tuple[str, str, object]]:
    params = list(inspect.signature(getattr(cls, name)).parameters.values())[1:]  # self
    return [(p.kind.name, p.name, p.default) for p in params]


def test_readme_method_table_matches_the_stores() -> None:
    table = readme_methods()
    names = [name for name, _ in table]
    assert len(names) == len(set(names)), (
        f"listed twice: {sorted(n for n in names if names.count(n) > 1)}"
    )
    public = {
        name
        for name, _ in inspect.getmembers(SessionStore, inspect.isfunction)
        if not name.startswith("_")
    }
    assert set(names) == public, (
        f"missing from the table: {sorted(public - set(names))}; "
        f"not methods: {sorted(set(names) - public)}"
    )
    for name, params in table:
        written = described(params)
        for cls in (SessionStore, AsyncSessionStore):
            assert written == actual(cls, name), f"README's {name}({params}) vs {cls.__name__}"
