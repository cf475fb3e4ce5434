"""Click commands whose usage errors are one line, as DESIGN.md asks.

Click reports a bad option with the usage text, a hint and the error: four
lines that cron mails and scripts must parse. These classes turn the usage
error into a ``DkmError`` naming the command, which ``dkmonitor.cli.main``
prints as one ``dkmonitor: error: ...`` line with exit status 2.
``UsageExit`` lets a command choose another status (``check`` uses 3,
UNKNOWN, because 2 means CRITICAL to a monitoring system).
"""

from __future__ import annotations

from typing import Any

import click

from dkmonitor.errors import DkmError

_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())


def usage_error(ctx: click.Context | None, exc: click.UsageError) -> click.UsageError | DkmError:
    """The one-line error for ``exc`` (a bare group asking for help stays as it is)."""
    if _NoArgsIsHelp and isinstance(exc, _NoArgsIsHelp):
        return exc
    where_ctx = exc.ctx or ctx
    where = where_ctx.command_path if where_ctx is not None else "dkmonitor"
    return DkmError(f"{where}: {' '.join(exc.format_message().split())}")


class OneLineCommand(click.Command):
    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise usage_error(parent, exc) from None


class OneLineGroup(click.Group):
    command_class = OneLineCommand

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise usage_error(parent, exc) from None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise usage_error(ctx, exc) from None
