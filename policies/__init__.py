"""Routing policies: pure ranking logic over a health snapshot. No I/O."""
