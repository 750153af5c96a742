"""Writes docs/commands.md, the command reference, from each command's own `--help` (so the
reference cannot drift from the options; `tests/test_docs.py` fails where it has).

    python docs/make_commands.py            # rewrite docs/commands.md
"""
from __future__ import annotations

import os
import sys

import click

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's kgqa

from kgqa.cli import main  # noqa: E402

REFERENCE = os.path.join(HERE, "commands.md")
# the commands in the order a user meets them
ORDER = ["train", "predict", "evaluate", "submit", "ask", "serve", "fit-reranker", "index", "update", "merge"]
WIDTH = 100


def reference() -> str:
    """The reference's text: every command's help, as `kgqa COMMAND --help` prints it WIDTH wide."""
    assert sorted(ORDER) == sorted(main.commands), "a command is missing from ORDER"
    parts = ["# Commands\n\nEvery command's `--help`, as `kgqa COMMAND --help` prints it (made by "
             "`python docs/make_commands.py`; a test fails where this file and the options differ). "
             "The README shows them at work; `kgqa --version` prints the version.\n"]
    for name in ORDER:
        command = main.commands[name]
        with click.Context(main, info_name="kgqa", terminal_width=WIDTH, max_content_width=WIDTH) as parent:
            context = click.Context(command, info_name=name, parent=parent, terminal_width=WIDTH,
                                    max_content_width=WIDTH)
            parts.append(f"## kgqa {name}\n\n```\n{command.get_help(context)}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    with open(REFERENCE, "w", encoding="utf-8") as out:
        out.write(reference())
    print(f"{REFERENCE}: {len(ORDER)} commands")
