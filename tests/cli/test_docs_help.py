"""docs/cli.md shows the real `--help` of every command, word for word.

The help blocks are generated: `.venv/bin/python -m tests.cli.test_docs_help` rewrites each
block under its `<!-- help: rentabot … -->` marker from the real help.
"""

from __future__ import annotations

import os
import re
import subprocess

import click
from click.testing import CliRunner

from rentabot.cli import main
from tests.support import RENTABOT, ROOT

CLI_DOC = ROOT / "docs" / "cli.md"
#: A marker, then the fenced block of that command's help.
BLOCK = re.compile(r"<!-- help: (?P<command>[a-z -]+) -->\n```text\n(?P<help>.*?)```\n", re.S)
#: Help is documented as an 80-column terminal shows it: click leaves 2 columns free.
COLUMNS = 80


def commands(group: click.Group = main, prefix: str = "rentabot") -> list[str]:
    """Every command line, the group itself first, subgroups and their commands included."""
    found = [prefix]
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
        else:
            found.append(f"{prefix} {name}")
    return found


def real_help(command_line: str) -> str:
    """What `<command line> --help` prints."""
    words = command_line.split()[1:]
    result = CliRunner().invoke(
        main, [*words, "--help"], prog_name="rentabot", terminal_width=COLUMNS - 2
    )
    assert result.exit_code == 0, result.output
    return result.output


def documented() -> dict[str, str]:
    """The help blocks of docs/cli.md, by command line."""
    return {m["command"]: m["help"] for m in BLOCK.finditer(CLI_DOC.read_text())}


def _rewrite() -> None:
    text = CLI_DOC.read_text()
    for command_line in commands():
        marker = f"<!-- help: {command_line} -->\n"
        block = f"{marker}```text\n{real_help(command_line)}```\n"
        pattern = re.compile(re.escape(marker) + r"```text\n.*?```\n", re.S)
        found = pattern.search(text)
        if found is None:
            text += f"\n### `{command_line}`\n\n{block}"
        else:
            text = text[: found.start()] + block + text[found.end() :]
    CLI_DOC.write_text(text)


def test_every_command_has_its_help_in_the_docs() -> None:
    """docs/cli.md has one help block per command, and none for a command that is gone."""
    assert sorted(documented()) == sorted(commands())


def test_the_documented_help_is_the_real_help_word_for_word() -> None:
    """Each block is exactly what the command's `--help` prints (regenerate with
    `python -m tests.cli.test_docs_help` after changing a command)."""
    blocks = documented()
    for command_line in commands():
        assert blocks.get(command_line) == real_help(command_line), command_line


def test_the_installed_command_prints_the_same_help() -> None:
    """The installed `rentabot run --help`, in an 80-column terminal, is the documented
    text (the in-process rendering used above is what users see)."""
    printed = subprocess.run(
        [str(RENTABOT), "run", "--help"],
        env={**os.environ, "COLUMNS": str(COLUMNS)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert printed == documented()["rentabot run"]


def test_the_exit_codes_table_matches_the_code() -> None:
    """The exit codes docs/cli.md lists are the ones the CLI uses."""
    from rentabot.cli import client_options

    text = CLI_DOC.read_text()
    for name in ("LEASE_LOST", "NOT_FOUND", "NOT_GRANTED", "UNREACHABLE", "REFUSED"):
        code = getattr(client_options, f"EXIT_{name}")
        assert re.search(rf"^\| {code} \|", text, re.M), f"{code} ({name}) is not in the table"


if __name__ == "__main__":
    _rewrite()
