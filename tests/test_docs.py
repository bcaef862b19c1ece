"""The documentation: the site builds strictly, and every Python block in it works.

Every ```python block of README.md and docs/*.md is compiled; blocks are executed unless
a marker comment says otherwise (see tests/docblocks.py): ``not-run`` blocks are only
compiled, ``from`` blocks must be copied verbatim from a file under examples/ (whose own
tests run it), and ``pytest`` blocks run as test modules under pytest.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import dataclasses
import importlib
import importlib.util
import inspect
import ipaddress
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi  # noqa: F401 - imported once here: FastAPI breaks when pytester re-imports it
import httpx
import pytest

from .docblocks import ROOT, Block, blocks, pages, python_blocks

pytest_plugins = ["pytester"]

BLOCKS = python_blocks()
_TEST = re.compile(r"^(?:async )?def test_", re.MULTILINE)
PYTEST_INI = "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"


def _loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Documentation examples may talk to 127.0.0.1 only: anything else fails at once."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _loopback(host if isinstance(host, str) else str(host)):
            raise OSError(f"documentation examples must not reach {host!r} (loopback only)")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise OSError(f"documentation examples must not reach {address[0]!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def isolated_logging() -> Iterator[None]:
    """Blocks may configure logging (docs/operations.md does): undo it afterwards."""
    manager = logging.Logger.manager
    loggers = [
        logging.getLogger(),
        *(value for value in manager.loggerDict.values() if isinstance(value, logging.Logger)),
    ]
    saved = [
        (logger, logger.level, logger.propagate, logger.disabled, list(logger.handlers))
        for logger in loggers
    ]
    known = set(manager.loggerDict)
    yield
    for logger, level, propagate, disabled, handlers in saved:
        logger.setLevel(level)
        logger.propagate, logger.disabled, logger.handlers = propagate, disabled, handlers
    for name in set(manager.loggerDict) - known:
        added = manager.loggerDict[name]
        if isinstance(added, logging.Logger):
            added.setLevel(logging.NOTSET)
            added.propagate, added.disabled, added.handlers = True, False, []


def _compile(block: Block) -> types.CodeType:
    code: types.CodeType = compile(
        block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    return code


def _run(block: Block) -> None:
    """Execute a block as a module of its own; top-level ``await`` runs in an event loop."""
    code = _compile(block)
    name = "docs_block_" + block.where.replace("/", "_").replace(".", "_").replace(":", "_")
    module = types.ModuleType(name)
    module.__file__ = str(block.path)
    sys.modules[name] = module  # dataclasses, pydantic and FastAPI look their module up
    try:
        if code.co_flags & inspect.CO_COROUTINE:
            asyncio.run(eval(code, module.__dict__))
        else:
            exec(code, module.__dict__)
    finally:
        del sys.modules[name]


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_python_block_compiles(block: Block) -> None:
    """Every block compiles, and what it imports from resource_guard exists (blocks that
    are not run included)."""
    _compile(block)
    tree = ast.parse(block.code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resource_guard"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                # A name of the module, or one of its submodules (from resource_guard
                # import providers) whether or not something imported it already.
                found = hasattr(module, alias.name) or (
                    hasattr(module, "__path__")
                    and importlib.util.find_spec(f"{node.module}.{alias.name}") is not None
                )
                assert found, f"{node.module} has no {alias.name}"


RUNNABLE = [block for block in BLOCKS if block.kind == "run"]


@pytest.mark.usefixtures("loopback_only", "isolated_logging")
@pytest.mark.parametrize("block", RUNNABLE, ids=[block.where for block in RUNNABLE])
def test_python_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for variable in [name for name in os.environ if name.startswith("RESOURCE_GUARD_")]:
        monkeypatch.delenv(variable)
    _run(block)


COPIED = [block for block in BLOCKS if block.kind == "from"]


def _contains_lines(text: str, snippet: str) -> bool:
    """Whether ``snippet``'s lines appear together in ``text``, at any indentation."""
    wanted = snippet.strip("\n").splitlines()
    lines = text.splitlines()
    return any(
        textwrap.dedent("\n".join(lines[start : start + len(wanted)])).splitlines() == wanted
        for start in range(len(lines) - len(wanted) + 1)
    )


@pytest.mark.parametrize("block", COPIED, ids=[block.where for block in COPIED])
def test_python_block_is_copied_from_a_tested_example(block: Block) -> None:
    source = (ROOT / block.argument).resolve()
    assert source.is_relative_to(ROOT / "examples"), f"{block.argument} is not under examples/"
    assert _contains_lines(source.read_text(encoding="utf-8"), block.code), (
        f"{block.where} differs from {block.argument}: copy it again"
    )


def test_not_run_blocks_say_why() -> None:
    silent = [block.where for block in BLOCKS if block.kind == "not-run" and not block.argument]
    assert not silent, f"say why these blocks are not run: <!-- not-run: reason --> {silent}"


def _pytest_files(page: Path) -> Iterator[tuple[Block, str, Block | None]]:
    """(block, module source, expected-output block) for each pytest block of a page."""
    page_blocks = blocks(page)
    previous = ""
    for index, block in enumerate(page_blocks):
        if block.kind == "pytest":
            previous = block.code
            yield block, block.code, None
        elif block.kind == "pytest-fails":
            following = page_blocks[index + 1] if index + 1 < len(page_blocks) else None
            expected = following if following and following.language == "text" else None
            yield block, previous + "\n\n" + block.code, expected


PYTEST_PAGES = [page for page in pages() if any(b.kind.startswith("pytest") for b in blocks(page))]


@pytest.mark.parametrize("page", PYTEST_PAGES, ids=[p.name for p in PYTEST_PAGES])
def test_pytest_blocks_pass_or_fail_as_documented(page: Path, pytester: pytest.Pytester) -> None:
    pytester.makeini(PYTEST_INI)
    passing: dict[str, str] = {}
    failing: list[tuple[Block, str, Block | None]] = []
    for block, source, expected in _pytest_files(page):
        if block.kind == "pytest":
            passing[f"test_{page.stem.replace('-', '_')}_line{block.line}"] = source
        else:
            failing.append((block, source, expected))
    if passing:
        pytester.makepyfile(**passing)
        result = pytester.runpytest_inprocess(*[f"{name}.py" for name in passing])
        outcomes = result.parseoutcomes()
        assert outcomes.get("passed", 0) >= len(passing), result.stdout.str()
        assert not {"failed", "errors", "error"} & outcomes.keys(), result.stdout.str()
    for block, source, expected in failing:
        name = f"test_{page.stem.replace('-', '_')}_line{block.line}_fails"
        pytester.makepyfile(**{name: source})
        result = pytester.runpytest_inprocess(f"{name}.py")
        tests = len(_TEST.findall(block.code))
        result.assert_outcomes(passed=len(_TEST.findall(source)) - tests, failed=tests)
        if expected is not None:
            output = [line.strip() for line in result.stdout.lines]
            for line in expected.code.splitlines():
                assert not line.strip() or line.strip() in output, (
                    f"{expected.where}: {line.strip()!r} is not in pytest's output"
                )


def test_the_configuration_reference_is_complete() -> None:
    """Every option of the configurable classes and every RESOURCE_GUARD_* variable the
    code reads is on docs/configuration.md."""
    from resource_guard import IntrospectionVerifier, TokenVerifier
    from resource_guard.client import ClientCredentialsAuth
    from resource_guard.middleware import BearerAuthMiddleware
    from resource_guard.testing import AppClient, FakeIssuer

    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = []
    classes = (TokenVerifier, IntrospectionVerifier, BearerAuthMiddleware, ClientCredentialsAuth)
    for cls in (*classes, FakeIssuer, AppClient):
        for name in inspect.signature(cls).parameters:
            if name != "app" and f"`{name}`" not in page and f"{name}=" not in page:
                missing.append(f"{cls.__name__}({name})")
    sources = (ROOT / "src" / "resource_guard").rglob("*.py")
    variables = {
        name
        for path in sources
        for name in re.findall(r"RESOURCE_GUARD_[A-Z_]*[A-Z]", path.read_text(encoding="utf-8"))
    }
    missing += sorted(name for name in variables if f"`{name}`" not in page)
    assert not missing, f"docs/configuration.md does not mention {missing}"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:  # pragma: no cover - dev extra missing
        pytest.skip("mkdocs is not installed: pip install -e '.[dev]'")
    for page in ("security.md", "performance.md"):
        assert (ROOT / "docs" / page).exists(), f"docs/{page} is in the nav but missing"
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    assert (site / "index.html").exists()
    assert (site / "api" / "index.html").exists()
    shutil.rmtree(site)


# -- shell commands: they run as pasted, one after another ---------------------------------------

SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console"})
SHELL_PAGES = ("README.md", "docs/quickstart.md")
"""Pages whose shell sessions are checked whole: the fake issuer, the token, the service."""
_SUBSTITUTION = re.compile(r"^(?P<name>[A-Za-z_]\w*)=\$\((?P<command>.*)\)$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_BLOCKING = (("resource-guard", "issuer", "serve"), ("uvicorn",))


@dataclasses.dataclass(frozen=True)
class Command:
    """One shell command of a page: ``argv`` after ``VAR=value`` prefixes, which go to
    ``env``; ``captured`` names the variable of ``VAR=$(command)``."""

    block: Block
    argv: tuple[str, ...]
    env: dict[str, str]
    captured: str | None
    prose: str  # the text between the previous block and this one

    @property
    def program(self) -> str:
        return Path(self.argv[0]).name

    @property
    def blocking(self) -> bool:
        words = (self.program, *self.argv[1:])
        return any(words[: len(prefix)] == prefix for prefix in _BLOCKING)


def _prose_before(block: Block) -> str:
    lines = block.path.read_text(encoding="utf-8").splitlines()[: block.line - 1]
    prose: list[str] = []
    for line in reversed(lines):
        if line.lstrip().startswith(("```", "~~~")):
            break
        prose.insert(0, line)
    return " ".join(" ".join(prose).split())


def shell_commands(page: str) -> list[Command]:
    found = []
    for block in blocks(ROOT / page):
        if block.language not in SHELL_LANGUAGES:
            continue
        for line in block.code.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            captured = None
            if match := _SUBSTITUTION.match(line.split(" #")[0].strip()):
                captured, line = match["name"], match["command"]
            words = shlex.split(line, comments=True)
            if not words or words[0] == "export":
                continue
            env = {}
            while words and _ASSIGNMENT.match(words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            if words:
                found.append(Command(block, tuple(words), env, captured, _prose_before(block)))
    return found


def _audiences(args: argparse.Namespace) -> tuple[str, ...]:
    from resource_guard.testing import DEFAULT_AUDIENCE

    return tuple(args.audience or (DEFAULT_AUDIENCE,))


def _cli(commands: list[Command], *words: str) -> list[argparse.Namespace]:
    from resource_guard.cli import build_parser

    return [
        build_parser().parse_args(command.argv[1:])
        for command in commands
        if command.program == "resource-guard" and command.argv[1 : 1 + len(words)] == words
    ]


@pytest.fixture
def private_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's default key file, moved out of the user's ~/.config."""
    path = tmp_path / "fake-issuer-keys.json"
    monkeypatch.setenv("RESOURCE_GUARD_KEY_FILE", str(path))
    return path


@pytest.mark.parametrize("page", SHELL_PAGES)
def test_commands_that_block_are_alone_and_say_so(page: str) -> None:
    """A command that runs until Ctrl-C is alone in its block (pasting the block does not
    swallow the next commands), and the text before it says to use another terminal."""
    commands = shell_commands(page)
    blocking = [command for command in commands if command.blocking]
    assert blocking, f"{page} starts no server"
    for command in blocking:
        others = [c for c in commands if c.block == command.block and c is not command]
        assert not others, f"{command.block.where}: {command.argv[:3]} blocks; put it alone"
        assert "terminal" in command.prose, f"{command.block.where}: say which terminal"
        assert "Ctrl-C" in command.prose, f"{command.block.where}: say it runs until Ctrl-C"


@pytest.mark.parametrize("page", SHELL_PAGES)
def test_the_token_comes_from_the_fake_issuer_before_it_is_used(page: str) -> None:
    commands = shell_commands(page)
    minted = [i for i, c in enumerate(commands) if c.captured == "TOKEN"]
    used = [i for i, c in enumerate(commands) if any("$TOKEN" in word for word in c.argv)]
    assert minted, f"{page} never sets TOKEN"
    assert commands[minted[0]].argv[1:3] == ("token", "mint"), "TOKEN=$(resource-guard token mint)"
    assert used, f"{page} never uses $TOKEN"
    assert minted[0] < used[0], f"{page} uses $TOKEN before it says where it comes from"


@pytest.mark.parametrize("page", SHELL_PAGES)
async def test_one_issuer_and_one_audience_throughout(
    page: str, private_key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The served issuer, the minted token and the side that checks it (`verify` or the
    service's RESOURCE_GUARD_* variables) agree; the minted token passes that check against
    the served issuer's keys (in-process: no server is started)."""
    from resource_guard import TokenVerifier
    from resource_guard.cli import main
    from resource_guard.cli._serve import build_issuer

    commands = shell_commands(page)
    [serve] = _cli(commands, "issuer", "serve")
    [mint] = _cli(commands, "token", "mint")
    checks = [(args.issuer, _audiences(args)) for args in _cli(commands, "verify")]
    checks += [
        (c.env["RESOURCE_GUARD_ISSUER"], (c.env["RESOURCE_GUARD_AUDIENCE"],))
        for c in commands
        if "RESOURCE_GUARD_ISSUER" in c.env
    ]
    assert checks, f"{page}: nothing checks the minted token"
    served_url = f"http://127.0.0.1:{serve.port}{serve.path.rstrip('/')}"
    for issuer, audience in checks:
        assert issuer == mint.issuer == served_url
        assert audience == _audiences(mint) == _audiences(serve)

    [mint_command] = [c for c in commands if c.captured == "TOKEN"]
    assert main(list(mint_command.argv[1:])) == 0
    token = capsys.readouterr().out.strip()
    fake, _, _ = build_issuer(serve)
    assert Path(serve.key_file) == private_key_file
    for issuer, audience in checks:
        verifier = TokenVerifier(
            issuer=issuer,
            audience=audience,
            jwks_uri=fake.jwks_uri,
            http_client=fake.async_client(),
        )
        try:
            access = await verifier.verify(token)
        finally:
            await verifier.aclose()
        assert access.scopes == frozenset(mint.scope)


OWN_PAGES = ("README.md", "docs/quickstart.md", "docs/index.md")
_INDEX_INSTALL = re.compile(r"pip install\s+['\"]?resource-guard\b")


@pytest.mark.parametrize("page", OWN_PAGES)
def test_install_instructions_need_no_package_index(page: str) -> None:
    """Until a release exists, installing means a checkout or a wheel built by make dist."""
    text = (ROOT / page).read_text(encoding="utf-8")
    assert not _INDEX_INSTALL.search(text), f"{page}: resource-guard is not on an index yet"
    if "pip install" in text:
        assert "/path/to/resource-guard" in text or ".whl" in text


async def test_the_readme_fastapi_example_serves_its_public_path() -> None:
    """The README's FastAPI snippet makes /health public: the route exists and answers
    without a token (no lifespan: a public path needs no keys)."""
    [block] = [b for b in BLOCKS if b.path.name == "README.md" and "FastAPI()" in b.code]
    namespace: dict[str, Any] = {"__name__": "readme_fastapi"}
    exec(_compile(block), namespace)
    transport = httpx.ASGITransport(app=namespace["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        health = await client.get("/health")
        orders = await client.get("/orders")
    assert health.status_code == 200, health.text
    assert orders.status_code == 401
