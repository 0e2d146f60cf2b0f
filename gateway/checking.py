"""The config checker as the pure config parsers below the config see it (sites, offline).

``gateway.config._Checker`` collects every problem with its YAML path; the sections that live in pure packages
under the config (``gateway.sites.config``, ``gateway.offline.config``) take it as this protocol, so that they
need not import the config they sit below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

__all__ = ["Checker"]

T = TypeVar("T")


class Checker(Protocol):
    """What a section parser uses of the config's checker (``gateway.config._Checker``)."""

    def err(self, path: str, msg: str) -> None: ...

    def mapping(self, node: Any, path: str, allowed: set[str], required: set[str] = ...) -> dict[str, Any]: ...

    def get(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        kind: type[T],
        default: T,
        check: Callable[[T], str | None] | None = None,
    ) -> T: ...
