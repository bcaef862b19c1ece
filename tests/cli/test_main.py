"""The command as a whole: help, version, usage errors, the entry points, what any
command does with an unexpected error or Ctrl-C, and the shared option vocabulary."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest

import resource_guard
from resource_guard import cli
from resource_guard.cli import _token

from ._harness import one_line_error, run

# -- help, version, usage errors -----------------------------------------------------------------

COMMANDS = [
    ((), "issuer"),
    (("issuer",), "serve"),
    (("issuer", "serve"), "--client"),
    (("token",), "inspect"),
    (("token", "mint"), "--lifetime"),
    (("token", "inspect"), "UNVERIFIED"),
    (("verify",), "--allow-insecure-http"),
]


@pytest.mark.parametrize(
    ("command", "mentions"), COMMANDS, ids=[" ".join(c) or "top" for c, _ in COMMANDS]
)
def test_every_command_has_help(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...], mentions: str
) -> None:
    status, out, err = run(capsys, *command, "--help")
    assert status == 0
    assert out.startswith(f"usage: resource-guard {' '.join(command)}".rstrip())
    assert mentions in out
    assert err == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert (status, out.strip()) == (0, "resource-guard 0.1.0")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), "resource-guard: error: the following arguments are required: COMMAND"),
        (("verify", "x"), "resource-guard verify: error: the following arguments are required"),
        (("token", "mint", "--lifetime", "soon"), "'soon' is not a duration"),
        (("token", "mint", "--claim", "novalue"), "--claim takes NAME=VALUE"),
        (("token", "mint", "--claim", "=x"), "--claim takes NAME=VALUE"),
        (("issuer", "serve", "--port", "70000"), "'70000' is not a port number"),
        (("issuer", "serve", "--port", "http"), "'http' is not a port number"),
        (("issuer", "serve", "--client", "nosecret"), "--client takes ID:SECRET"),
        (("issuer", "serve", "--client", "id::scope"), "--client: the secret is empty"),
        (("verify", "t", "--issuer", "u", "--audience", "a", "--leeway", "x"), "not a number"),
    ],
    ids=[
        "no-command",
        "verify-without-issuer",
        "bad-duration",
        "claim-without-equals",
        "claim-without-name",
        "port-too-large",
        "port-not-a-number",
        "client-without-secret",
        "client-empty-secret",
        "leeway-not-a-number",
    ],
)
def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    line = one_line_error(err)
    assert expected in line
    assert line.endswith("--help)")


def test_python_dash_m_runs_main() -> None:
    """``python -m resource_guard`` runs this main (test_processes.py runs it for real too)."""
    entry = importlib.import_module("resource_guard.__main__")
    assert entry.main is cli.main


# -- what every command does with a bug or Ctrl-C -------------------------------------------------


def test_an_unexpected_error_is_still_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key_file: Path
) -> None:
    def broken(*args: Any) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(_token, "mint_token", broken)
    status, _, err = run(capsys, "token", "mint")
    assert status == 70
    assert one_line_error(err) == "resource-guard: unexpected error: ZeroDivisionError: a bug"


def test_ctrl_c_outside_serve_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key_file: Path
) -> None:
    def interrupted(*args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(_token, "mint_token", interrupted)
    status, _, err = run(capsys, "token", "mint")
    assert (status, err) == (130, "resource-guard: interrupted\n")


# -- one vocabulary: list options, public names ----------------------------------------------------

VERIFY = ("verify", "t", "--issuer", "https://idp.test")
LIST_OPTIONS = [
    (("token", "mint"), "--scope", "scope"),
    (("token", "mint"), "--audience", "audience"),
    (("issuer", "serve"), "--audience", "audience"),
    ((*VERIFY,), "--audience", "audience"),
    ((*VERIFY, "--audience", "x"), "--algorithm", "algorithm"),
    ((*VERIFY, "--audience", "x"), "--scope-claim", "scope_claim"),
    ((*VERIFY, "--audience", "x"), "--require-scope", "require_scope"),
]


@pytest.mark.parametrize(
    ("command", "option", "dest"),
    LIST_OPTIONS,
    ids=[f"{' '.join(c[:2]) if c[0] != 'verify' else 'verify'} {o}" for c, o, _ in LIST_OPTIONS],
)
@pytest.mark.parametrize(
    "values",
    [
        ("a,b", "c"),
        ("a b c",),
        ("a", "b", "c", "a"),
        (" a, b ,,c ",),
    ],
    ids=["commas-and-repeats", "spaces", "repeats-with-a-duplicate", "stray-separators"],
)
def test_every_list_option_splits_the_same_way(
    command: tuple[str, ...], option: str, dest: str, values: tuple[str, ...]
) -> None:
    """Repeatable, comma- and/or space-separated, duplicates dropped, first order kept."""
    argv = [*command]
    for value in values:
        argv += [option, value]
    args = cli.build_parser().parse_args(argv)
    assert getattr(args, dest) == ["a", "b", "c"]


SRC = Path(resource_guard.__file__).parent


def _library_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every name a CLI module imports from resource_guard outside cli/."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                continue  # a sibling in resource_guard.cli
            module = "resource_guard." * (node.level > 1) + (node.module or "")
            if module.startswith("resource_guard"):
                found += [(module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if "resource_guard" in alias.name]
    return found


@pytest.mark.parametrize("module", sorted(p.name for p in (SRC / "cli").glob("*.py")))
def test_the_cli_uses_only_public_names_of_the_library(module: str) -> None:
    """No private module (``_verifier``, ``_models``...) and no private name of them."""
    for imported, name in _library_imports(SRC / "cli" / module):
        parts = imported.split(".")
        private = [part for part in parts if part.startswith("_")]
        assert not private or parts[:2] == ["resource_guard", "cli"], (imported, name)
        assert not name.startswith("_") or name == "__version__", (imported, name)


def test_only_token_inspect_decodes_tokens_without_verifying() -> None:
    """The command line decodes no token itself: ``_token.decode_unverified`` asks the
    library's one unverified reader, ``resource_guard.testing.read_unverified``."""
    sources = {path.name: path.read_text() for path in (SRC / "cli").glob("*.py")}
    assert [name for name, text in sources.items() if "b64decode" in text] == []
    assert [name for name, text in sources.items() if "read_unverified(" in text] == ["_token.py"]
