"""Chaos tests: faults injected into real processes, each test asserting its figure.

Run them alone with ``pytest -m chaos tests/chaos`` (they are ``slow`` too).
"""
