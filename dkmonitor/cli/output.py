"""One way to choose and write a command's output: table/text, JSON or CSV.

Every command with ``--format`` declares it with ``output_options`` and
writes through ``emit`` (a list of records) or ``emit_json`` (one object):
the same JSON layout, the same CSV dialect (header row, raw numbers, empty
cell for null) everywhere, written as the records come so that an export of
a long history never sits in memory. Adding a format (say, ``ndjson``) is a
writer here and its name in the commands' ``output_options``.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any, TypeVar

import click

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_HELP = {
    "table": "table for people",
    "text": "text for people",
    "json": "json for scripts and monitoring",
    "csv": "csv for spreadsheets",
}


def output_options(
    *formats: str, default: str | None = None, required: bool = False, help: str | None = None
) -> Callable[[F], F]:
    """The ``--format`` option (parameter ``fmt``) of ``formats``; the first is the default."""
    text = help or "; ".join(_HELP.get(name, name) for name in formats) + "."

    def decorate(func: F) -> F:
        # no default at all when required: click takes an explicit None for a value
        extra: dict[str, Any] = (
            {"required": True} if required else {"default": default or formats[0]}
        )
        option = click.option(
            "--format",
            "fmt",
            type=click.Choice(list(formats)),
            show_default=not required,
            help=text,
            **extra,
        )
        return option(func)

    return decorate


def write_json(records: Iterable[Mapping[str, Any]], out: IO[str], indent: int | None = 2) -> None:
    """A JSON list, one record at a time.

    With ``indent`` the text is that of ``json.dumps(list, indent=indent)``;
    with None each record is one compact line (large exports, greppable).
    """
    pad = " " * (indent or 2)
    first = True
    for record in records:
        text = json.dumps(dict(record), indent=indent)
        if indent:
            text = text.replace("\n", "\n" + pad)
        out.write(("[\n" if first else ",\n") + pad + text)
        first = False
    out.write("[]\n" if first else "\n]\n")


def write_csv(records: Iterable[Mapping[str, Any]], keys: Sequence[str], out: IO[str]) -> None:
    """A header row of ``keys``, then one row per record: raw values, '' for None."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(keys)
    for record in records:
        writer.writerow(["" if record[key] is None else record[key] for key in keys])


def emit(
    fmt: str,
    items: Iterable[T],
    keys: Sequence[str],
    *,
    as_dict: Callable[[T], Mapping[str, Any]],
    table: Callable[[list[T]], str] | None = None,
    empty: str | None = None,
    indent: int | None = 2,
) -> None:
    """Write ``items`` to stdout in ``fmt``.

    json/csv: each item's ``as_dict`` (CSV columns ``keys``), streamed.
    table/text: ``table`` renders the whole list; ``empty`` is printed
    instead when there is nothing to show.
    """
    out = sys.stdout
    if fmt == "json":
        write_json((as_dict(item) for item in items), out, indent)
    elif fmt == "csv":
        write_csv((as_dict(item) for item in items), keys, out)
    else:
        if table is None:
            raise ValueError(f"format {fmt!r} needs a table renderer")
        shown = list(items)
        if not shown and empty is not None:
            click.echo(empty)
            return
        # termcolor already chose whether to colour (TTY, NO_COLOR, FORCE_COLOR): keep it
        click.echo(table(shown), color=True)
    out.flush()


def emit_json(value: Any) -> None:
    """One JSON value (an object, or a small list) as the other formats indent it."""
    click.echo(json.dumps(value, indent=2))
