"""The event bus: each sink gets the events it handles, a failing sink never reaches the sender."""

from __future__ import annotations

from typing import Any

import pytest

from router.events import DedupeChecked, EventBus, SendStarted


class Recorder:
    def __init__(self, handles: frozenset[type] | None = None) -> None:
        if handles is not None:
            self.handles = handles
        self.got: list[object] = []

    def handle(self, event: Any) -> None:
        self.got.append(event)


def test_a_sink_that_names_its_events_gets_only_those_and_the_others_get_all() -> None:
    picky, everything = Recorder(frozenset({SendStarted})), Recorder()
    bus = EventBus([picky, everything])
    started, checked = SendStarted("s", "login", 1), DedupeChecked("login", "new")
    for event in (started, checked, started):
        bus.emit(event)
    assert picky.got == [started, started]
    assert everything.got == [started, checked, started]
    late = Recorder(frozenset({DedupeChecked}))
    bus.add(late)  # routes are worked out again for a new sink
    bus.emit(checked)
    assert late.got == [checked] and picky.got == [started, started]


def test_a_failing_sink_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def handle(self, event: Any) -> None:
            raise RuntimeError("sink bug")

    after = Recorder()
    bus = EventBus([Broken(), after])
    with caplog.at_level("ERROR", logger="router.events"):
        bus.emit(SendStarted("s", "login", 1))
    assert len(after.got) == 1
    assert "failed on SendStarted" in caplog.text
