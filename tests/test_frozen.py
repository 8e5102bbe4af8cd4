"""``fast_init`` (providers/frozen.py) must be the dataclass ``__init__`` it replaces, only
cheaper: same signature, same field values, still frozen. Checked for every class that uses
it, with hypothesis over which optional arguments are given and how."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import MISSING
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.frozen import fast_init

MODULES = [
    "providers.base",
    "providers.mobile",
    "providers.wire",
    "router.breaker",
    "router.events",
    "router.model",
    "router.prepare",
    "router.receipts",
    "router.recipients",
    "router.runtime",
    "router.state.base",
]


def _classes() -> list[type]:
    found = []
    for name in MODULES:
        for value in vars(importlib.import_module(name)).values():
            init = getattr(value, "__init__", None)
            fast = hasattr(init, "__dataclass_init__")
            if isinstance(value, type) and fast and value.__module__ == name:
                found.append(value)
    return found


CLASSES = _classes()
IDS = [f"{c.__module__}.{c.__qualname__}" for c in CLASSES]


def test_the_hot_classes_use_it() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"AttemptFinished", "SendFinished", "Batch", "AttemptResult", "SendResult"} <= names


def _original(cls: type) -> Any:
    """The dataclass ``__init__`` that fast_init replaced."""
    return vars(cls)["__init__"].__dataclass_init__


def _shape(signature: inspect.Signature) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_same_signature_as_the_dataclass_init(cls: type) -> None:
    new = _shape(inspect.signature(vars(cls)["__init__"]))
    old = _shape(inspect.signature(_original(cls)))
    assert [(n, k) for n, k, _ in new] == [(n, k) for n, k, _ in old]
    factories = {f.name for f in dataclasses.fields(cls) if f.default_factory is not MISSING}
    for (name, _, mine), (_, _, theirs) in zip(new, old, strict=True):
        if name not in factories:  # a factory shows as the dataclass's sentinel there, ours here
            assert mine is theirs or mine == theirs, name


VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.tuples(st.integers()))


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
@given(data=st.data())
def test_builds_what_the_dataclass_init_builds(cls: type, data: st.DataObject) -> None:
    args: list[object] = []
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        required = f.default is MISSING and f.default_factory is MISSING
        if not required and data.draw(st.booleans(), label=f"{f.name} left out"):
            continue
        value = data.draw(VALUES, label=f.name)
        if f.kw_only or (not required and data.draw(st.booleans())) or kwargs:
            kwargs[f.name] = value
        else:
            args.append(value)
    fast = cls(*args, **kwargs)
    slow: Any = object.__new__(cls)
    _original(cls)(slow, *args, **kwargs)
    for f in dataclasses.fields(cls):
        assert getattr(fast, f.name) == getattr(slow, f.name), f.name
    assert fast == slow
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(fast, dataclasses.fields(cls)[0].name, "changed")


def test_refuses_classes_it_cannot_serve() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        a: int

    for cls in (Mutable, Checked, Unslotted):
        with pytest.raises(TypeError, match=cls.__name__):
            fast_init(cls)


def test_defaults_and_factories_are_fresh_per_instance() -> None:
    @fast_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Holder:
        a: int
        items: list[int] = dataclasses.field(default_factory=list)
        b: str = "x"
        c: int = dataclasses.field(default=3, kw_only=True)

    one, two = Holder(1), Holder(2, [5], "y", c=4)
    assert (one.items, one.b, one.c) == ([], "x", 3)
    assert (two.items, two.b, two.c) == ([5], "y", 4)
    assert Holder(1).items is not one.items
    with pytest.raises(TypeError):
        Holder(1, [], "y", 4)  # type: ignore[call-arg]  # c is keyword-only
