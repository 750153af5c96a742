"""The command reference in docs/ is the commands' help of today."""
from __future__ import annotations

import importlib.util
import os

from conftest import ROOT


def test_the_command_reference_is_every_commands_help_as_it_is_now():
    spec = importlib.util.spec_from_file_location("make_commands", os.path.join(ROOT, "docs", "make_commands.py"))
    made = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(made)
    with open(made.REFERENCE, encoding="utf-8") as handle:
        assert handle.read() == made.reference(), "docs/commands.md is stale: run python docs/make_commands.py"
