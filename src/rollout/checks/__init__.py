"""Checks: each measures one thing and returns a ``CheckResult`` (model.py)."""
