"""dkmonitor.records: the shared __repr__/__eq__/__hash__ say what @dataclass's own would."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field

import pytest

from dkmonitor.records import FrozenRecord, Record


@dataclass(frozen=True)
class PlainFrozen:
    name: str
    size: int = 0
    note: str = field(default="", compare=False)
    secret: str = field(default="", repr=False)
    tags: tuple[str, ...] = field(default=(), hash=False)


@dataclass(frozen=True, repr=False, eq=False)
class SharedFrozen(FrozenRecord):
    name: str
    size: int = 0
    note: str = field(default="", compare=False)
    secret: str = field(default="", repr=False)
    tags: tuple[str, ...] = field(default=(), hash=False)


@dataclass
class PlainMutable:
    items: list[object] = field(default_factory=list)
    count: int = 0


@dataclass(repr=False, eq=False)
class SharedMutable(Record):
    items: list[object] = field(default_factory=list)
    count: int = 0


def _same_repr(plain: object, shared: object) -> None:
    assert repr(shared) == repr(plain).replace("Plain", "Shared", 1)


def test_frozen_repr_eq_and_hash_are_the_generated_ones():
    values = [("a", 1, "x", "s", ("t",)), ("a", 1, "y", "s", ("t",)), ("a", 1, "x", "s", ("u",)),
              ("b", 1, "", "", ())]
    plains = [PlainFrozen(*v) for v in values]
    shareds = [SharedFrozen(*v) for v in values]
    for plain, shared in zip(plains, shareds, strict=True):
        _same_repr(plain, shared)
        assert hash(shared) == hash(plain)
    for i in range(len(values)):
        for j in range(len(values)):
            assert (shareds[i] == shareds[j]) == (plains[i] == plains[j]), (i, j)
            assert (shareds[i] != shareds[j]) == (plains[i] != plains[j]), (i, j)
    assert shareds[0] == shareds[1]  # `note` is not compared
    assert shareds[0] != shareds[2] and hash(shareds[0]) == hash(shareds[2])  # `tags` not hashed
    assert SharedFrozen("a") != ("a", 0, "", "", ())  # not a tuple, no cross-class equality
    assert SharedFrozen("a").__eq__(PlainFrozen("a")) is NotImplemented
    with pytest.raises(dataclasses.FrozenInstanceError):
        shareds[0].name = "c"  # type: ignore[misc]
    assert dataclasses.replace(shareds[0], size=5).size == 5
    assert dataclasses.asdict(shareds[3]) == dataclasses.asdict(plains[3])


def test_mutable_repr_eq_and_no_hash_are_the_generated_ones():
    plain, shared = PlainMutable([1, "two"], 2), SharedMutable([1, "two"], 2)
    _same_repr(plain, shared)
    assert shared == SharedMutable([1, "two"], 2) and shared != SharedMutable([1], 2)
    with pytest.raises(TypeError, match="unhashable"):
        hash(shared)
    with pytest.raises(TypeError, match="unhashable"):
        hash(plain)
    shared.items.append(shared)  # a cycle: repr says '...' as the generated repr does
    plain.items.append(plain)
    _same_repr(plain, shared)


MODULES = ("dkmonitor.config", "dkmonitor.taskrun", "dkmonitor.scan.stats", "dkmonitor.metrics",
           "dkmonitor.taskspec", "dkmonitor.outcome", "dkmonitor.dburl", "dkmonitor.db.backends",
           "dkmonitor.channels.base", "dkmonitor.channels.metrics", "dkmonitor.db.store",
           "dkmonitor.scan.disk")


@pytest.mark.parametrize("name", MODULES)
def test_the_start_up_dataclasses_use_the_shared_methods(name):
    """Every dataclass these modules (on the path of every run) define inherits the methods."""
    module = importlib.import_module(name)
    defined = [value for value in vars(module).values() if isinstance(value, type)
               and dataclasses.is_dataclass(value) and value.__module__ == name]
    assert defined
    for cls in defined:
        assert issubclass(cls, (Record, FrozenRecord)), cls
        assert "__eq__" not in vars(cls), cls
        assert "__repr__" not in vars(cls) or cls.__name__ == "DatabaseURL", cls  # its own masks
        assert ("__hash__" in vars(cls)) is False, cls
        assert issubclass(cls, FrozenRecord) == cls.__dataclass_params__.frozen, cls
