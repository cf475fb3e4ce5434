"""Bases that give dataclasses their ``__repr__``, ``__eq__`` and ``__hash__`` once.

Why: on Python 3.11 ``@dataclass`` compiles every generated method of every
class when the class is defined, and ``run quick`` (cron starts it every hour
on every host) defines some 35 dataclasses before it does any work.
``__repr__`` and ``__eq__`` are the larger part of that cost; written once
here and inherited, they cost nothing to define. A class opts in with::

    @dataclass(frozen=True, repr=False, eq=False)
    class Spec(FrozenRecord): ...

    @dataclass(repr=False, eq=False)
    class Summary(Record): ...

and stays a dataclass in every other way (``fields``, ``replace``,
``asdict``, frozen fields, defaults); the methods below return what the
generated ones would (tests/test_records.py compares them).
"""

from __future__ import annotations

from dataclasses import fields
from reprlib import recursive_repr
from typing import Any


def _compared(record: Any) -> tuple[Any, ...]:
    """The fields ``==`` compares, in order (those not declared ``compare=False``)."""
    return tuple(getattr(record, f.name) for f in fields(record) if f.compare)


def _hashed(record: Any) -> tuple[Any, ...]:
    """The fields a frozen dataclass hashes: ``hash=`` if given, else the compared ones."""
    return tuple(getattr(record, f.name) for f in fields(record)
                 if (f.compare if f.hash is None else f.hash))


class _Shared:
    """The repr and the equality of every dataclass."""

    __slots__ = ()

    @recursive_repr()
    def __repr__(self) -> str:
        this: Any = self
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(this) if f.repr)
        return f"{self.__class__.__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return _compared(self) == _compared(other)
        return NotImplemented


class Record(_Shared):
    """A mutable dataclass's repr and equality; like one, unhashable."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]


class FrozenRecord(_Shared):
    """A frozen dataclass's repr, equality and hash."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(_hashed(self))
