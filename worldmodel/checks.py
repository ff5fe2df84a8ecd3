"""Checks of user-given numbers, with errors that name the setting and what it must be."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def whole_number(value: Any, name: str, minimum: int | None = None) -> int:
    """`value` as an int if it is a whole number (not a bool, not 2.5, not "abc") >= `minimum`;
    else a ValueError naming `name`."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    if not ok or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name} must be a whole number{bound}, got {value!r}.")
    return value


def check_counts(cfg: Mapping[str, Any], **minimums: int) -> None:
    """Each `cfg[key]` a whole number >= `minimums[key]` (a null key is left to its default): a
    tool's counts checked before any work, so `episodes=-1` is refused rather than sliced or averaged."""
    for key, minimum in minimums.items():
        if cfg.get(key) is not None:
            whole_number(cfg[key], key, minimum)
