"""Errors a handler raises to tell the user what was wrong; the pipeline renders them.

Nothing is changed when one is raised: the handler's transaction rolls back.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input or a refused action: rendered from ``errors/<code>.md.j2`` with ``data``."""

    def __init__(self, code: str, **data):
        super().__init__(code)
        self.code = code
        self.data = data


class UsageError(UserError):
    """A missing or malformed argument: the reply gives the reason and the command's usage."""

    def __init__(self, code: str = "bad_arguments", **data):
        super().__init__(code, **data)
