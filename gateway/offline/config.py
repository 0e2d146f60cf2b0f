"""``routes[].offline`` in the config: what the gateway does for a route's chargers while its primary is unreachable.

Parsed by :func:`parse_offline`, which :func:`gateway.config.parse_config` calls with its checker (every problem is
reported with its YAML path, all at once). The YAML shape, every key optional::

    routes:
      - match: "CP-*"
        primary: csms-a
        offline:
          mode: ride_through            # close (the default: the charger is kept offline) | ride_through
          auth_cache: {ttl_s: 604800, max_entries: 100000}
          unknown_token: {policy: reject}     # reject | accept_limited (then max_energy_wh and/or max_duration_s)
          data_transfer: reject         # reject | accept
          journal: {max_len: 10000, max_age_s: 86400}

and, per backend, ``backends.<name>.replay_per_s`` (the pace of the journal's replay toward that backend, shared by
every charger of the process; default 50).

Pure: no I/O. It sits below :mod:`gateway.config` in the layers, so it knows nothing of that module: the checker
it is given is a :class:`~gateway.checking.Checker` (the protocol :mod:`gateway.sites.config` uses too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from gateway.checking import Checker

__all__ = ["Checker", "OfflineConfig", "parse_offline"]

OfflineMode = Literal["close", "ride_through"]
UnknownTokenPolicy = Literal["reject", "accept_limited"]
DataTransferPolicy = Literal["reject", "accept"]


@dataclass(frozen=True, slots=True)
class OfflineConfig:
    """A route's outage behaviour. ``mode="close"``: as without the key (refused upgrade, 1013 after the grace)."""

    mode: OfflineMode = "close"
    #: how long a CSMS answer about an idTag/idToken may be used (from when it was given; its own expiryDate is
    #: honoured too), and how many tokens the cache of one backend keeps (the least recently learned go first)
    auth_cache_ttl_s: float = 7 * 86400.0
    auth_cache_max_entries: int = 100_000
    #: a token the cache does not know (or knows expired): refused (1.6 Invalid, 2.x Unknown), or accepted with a
    #: limit, after which the gateway stops the transaction (RemoteStopTransaction / RequestStopTransaction)
    unknown_token: UnknownTokenPolicy = "reject"
    max_energy_wh: float | None = None
    max_duration_s: float | None = None
    #: a DataTransfer from the charger: refused (not journalled) or accepted (journalled, replayed)
    data_transfer: DataTransferPolicy = "reject"
    #: the journal of one charger: past ``journal_max_len`` entries or when its oldest is older than
    #: ``journal_max_age_s``, no new transaction is admitted (Authorize, StartTransaction, a TransactionEvent
    #: Started are not answered); past twice ``journal_max_len`` nothing more is answered. Nothing is ever trimmed.
    journal_max_len: int = 10_000
    journal_max_age_s: float = 86400.0

    @property
    def ride_through(self) -> bool:
        return self.mode == "ride_through"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"

    return check


def parse_offline(c: Checker, node: Any, path: str) -> OfflineConfig:
    """``routes[i].offline`` (absent: mode close)."""
    d0 = OfflineConfig()
    if node is None:
        return d0
    d = c.mapping(node, path, {"mode", "auth_cache", "unknown_token", "data_transfer", "journal"})
    mode = cast(OfflineMode, c.get(d, "mode", path, str, d0.mode, _one_of("close", "ride_through")))
    p = f"{path}.auth_cache"
    a = c.mapping(d.get("auth_cache"), p, {"ttl_s", "max_entries"})
    ttl = c.get(a, "ttl_s", p, float, d0.auth_cache_ttl_s, _positive)
    max_entries = c.get(a, "max_entries", p, int, d0.auth_cache_max_entries, _positive)
    p = f"{path}.unknown_token"
    u = c.mapping(d.get("unknown_token"), p, {"policy", "max_energy_wh", "max_duration_s"})
    policy = cast(UnknownTokenPolicy, c.get(u, "policy", p, str, d0.unknown_token, _one_of("reject", "accept_limited")))
    energy = c.get(u, "max_energy_wh", p, float, 0.0, _positive) or None
    duration = c.get(u, "max_duration_s", p, float, 0.0, _positive) or None
    if policy == "accept_limited" and energy is None and duration is None:
        c.err(p, "policy accept_limited needs max_energy_wh or max_duration_s (or both): the limit of the risk taken")
    if policy == "reject" and (energy is not None or duration is not None):
        c.err(p, "max_energy_wh and max_duration_s apply to policy accept_limited only")
    dt = cast(DataTransferPolicy, c.get(d, "data_transfer", path, str, d0.data_transfer, _one_of("reject", "accept")))
    p = f"{path}.journal"
    j = c.mapping(d.get("journal"), p, {"max_len", "max_age_s"})
    max_len = c.get(j, "max_len", p, int, d0.journal_max_len, _positive)
    max_age = c.get(j, "max_age_s", p, float, d0.journal_max_age_s, _positive)
    return OfflineConfig(
        mode=mode,
        auth_cache_ttl_s=ttl,
        auth_cache_max_entries=max_entries,
        unknown_token=policy,
        max_energy_wh=energy,
        max_duration_s=duration,
        data_transfer=dt,
        journal_max_len=max_len,
        journal_max_age_s=max_age,
    )
