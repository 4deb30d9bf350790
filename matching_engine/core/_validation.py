"""Checks shared by the command classes: what a field must be, with the error that says so."""

from __future__ import annotations

import re

from ._errors import InvalidCommand

__all__ = ["CLIENT_ORDER_ID_PATTERN", "require_account", "require_int"]

CLIENT_ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def require_int(name: str, value: object, *, positive: bool = True) -> None:
    # bool is an int subclass; True must not pass as a quantity of one lot.
    if type(value) is not int or (positive and value <= 0):
        raise InvalidCommand(f"{name} must be a positive integer, got {value!r}")


def require_account(account: object) -> None:
    if not isinstance(account, str) or not account:
        raise InvalidCommand("account must be a non-empty string")
