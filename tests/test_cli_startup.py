"""Start-up cost: `dkmonitor --help` imports no command module (cron and monitoring
start dkmonitor often), and the help lines it shows say what each command's own does."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click

from dkmonitor.cli import LazyGroup, cli


def test_help_imports_no_command_module_and_no_database_library():
    code = ("import sys; from dkmonitor.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('dkmonitor.cli.', "
            "'sqlalchemy', 'psycopg2', 'alembic', 'dkmonitor.scan', 'dkmonitor.notify', "
            "'dkmonitor.config'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()[-1]
    assert out == "[]"


def test_the_help_table_matches_each_commands_own_help():
    ctx = click.Context(cli)
    for name, (module, line) in LazyGroup.COMMANDS.items():
        command = getattr(importlib.import_module(module), name)
        own = " ".join((command.help or "").split("\n\n")[0].split())
        words = line.rstrip(".").split()
        # the table's line is the command's first sentence, or a shortening of it
        assert own.startswith(" ".join(words[:3])), (name, line, own)
        assert cli.get_command(ctx, name) is command
