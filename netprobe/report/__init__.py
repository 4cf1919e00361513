"""Compliance reports: one document (`document.py`) written as HTML, JSON or CSV, and checked
back with `verify.py`."""
