"""Helpers shared by the test files (fixtures built on them live in ``tests/conftest.py``)."""
