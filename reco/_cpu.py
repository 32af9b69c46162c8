"""This host's CPU as /proc/cpuinfo describes it: model name and instruction-set flags."""

from __future__ import annotations

from functools import cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def _first_value(key: str, cpuinfo: Path) -> str | None:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return None


@cache
def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The first processor's flags, or None when cpuinfo is unreadable (not Linux)."""
    value = _first_value("flags", cpuinfo)
    return None if value is None else frozenset(value.split())


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name, or "unknown"."""
    return _first_value("model name", cpuinfo) or "unknown"


def missing_cpu_flags(required: list[str], cpuinfo: Path = CPUINFO) -> list[str] | None:
    """Required flags this CPU lacks (sorted), or None when the CPU's flags cannot be read."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return None
    return sorted(set(required) - flags)
