"""Injected time (the engine's public name for :mod:`providers.clock`, where adapters find it)."""

from providers.clock import Clock, FakeClock, SystemClock

__all__ = ["Clock", "FakeClock", "SystemClock"]
