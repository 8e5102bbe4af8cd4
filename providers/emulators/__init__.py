"""Fake provider servers (ASGI apps) that behave like the real gateways, with fault injection.

They are the sandbox's embedded default and the fixture for every integration test. Each app
exposes control endpoints under ``/_emulator/`` (faults, recorded requests, reset) and can push
delivery receipts to a configured callback URL.
"""
