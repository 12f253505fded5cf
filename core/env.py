"""Typed environment readers that fail loudly (the Healthchecks pattern).

A setting that is present but malformed stops the process at start-up with a message
naming the variable, instead of silently falling back to a default.
"""

from __future__ import annotations

import os


class ConfigError(RuntimeError):
    """A configuration variable is missing or malformed."""


def envstr(name: str, default: str | None = None) -> str | None:
    """The variable as a string, or the default when unset (an empty string counts as unset)."""
    value = os.environ.get(name, "")
    return value if value != "" else default


def envbool(name: str, default: bool) -> bool:
    """'true'/'false' (also 1/0, yes/no, on/off); anything else raises ConfigError."""
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"true", "1", "yes", "on"}:
        return True
    if raw in {"false", "0", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {os.environ[name]!r}")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    """An integer, optionally bounded below; anything else raises ConfigError."""
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def envurl(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    """A URL whose scheme is one of `schemes` (several URLs may be joined by ';', kombu's failover list).

    Anything else raises ConfigError naming the variable and the accepted schemes.
    """
    value = envstr(name, default)
    for url in value.split(";"):
        scheme, sep, _rest = url.strip().partition("://")
        if not sep or scheme.lower() not in schemes:
            accepted = ", ".join(f"{s}://" for s in schemes)
            raise ConfigError(f"{name} must be a URL starting with one of {accepted}; got {url.strip()!r}")
    return value
