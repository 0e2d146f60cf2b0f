"""The Store protocol: what the gateway keeps, whatever keeps it.

Writes are data (:class:`Write`), applied in batches by :meth:`Store.apply` so that the Redis implementation sends
one pipeline per batch and the write-behind queue (:mod:`gateway.store.writer`) can coalesce them. Reads are
plain coroutines. Any failure to reach the backing service raises :class:`StoreUnavailable`.

Fleet coordination (several processes or replicas on one Redis) also goes through the store: charger ownership
(a key per charger with a TTL, claimed at the handshake, refreshed in one round trip per process, released on
disconnect), one message channel per node (:meth:`Store.publish`, :meth:`Store.subscribe`), and leases
(:class:`Lease`: which process delivers a tap). Durable outboxes are the store's too (:meth:`Store.outbox`).

Nothing outside ``gateway/store/`` touches a client: every other module goes through these protocols.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway.store.compliance import ComplianceCounters
from gateway.store.outbox import Outbox

__all__ = ["Lease", "Store", "StoreUnavailable", "Subscription", "Write", "WriteKind"]

WriteKind = Literal["conn", "boot", "status", "tx", "cred", "upcred", "route", "site", "ride", "rideauth"]


@dataclass(frozen=True, slots=True)
class Write:
    """One state write. ``value`` None deletes.

    ``conn``: value = connection info (sub ""). Deleting with sub = a node id releases the charger: the record and
    the ownership go only when that node still owns the charger (or nobody does); sub "" deletes unconditionally.
    ``boot``: value = {"payload", "at"}. ``status``: sub = connector id, value = StatusNotification payload.
    ``tx``: sub = backend name, value = translation state, as a dict or as its JSON text (bytes, which the store
    keeps as they are: the translating relay encodes each state once, and writes it only when it changed).
    ``route``: value = {"primary", "mirrors"} override.
    ``cred``: the charger's own Basic auth password, value = {"hash": scrypt hash} (never the password). Deleting it
    deletes the charger's verification proof too (:meth:`Store.put_password_proof`).
    ``upcred``: sub = backend name, value = {"password": ...}, the password the gateway presents for the charger
    to that backend. Credential writes are applied directly (awaited), never through the lossy write-behind queue.
    ``site``: cid = the site's name, sub = a field of the site's document (``charger:<id>``, ``ctl:<id>``,
    ``event:<id>``, ``summary``: gateway/app/sites.py), value = its JSON document. Events are applied directly.
    ``ride``: the outage ride-through's state of one charger toward one backend, cid = charger id, sub =
    ``<backend>|<field>`` (``boot``: the interval of its last boot that backend accepted; ``tx:<gateway id>``: the
    backend's transactionId for a transaction the gateway answered, ``{"csms": id}``; gateway/app/ride.py).
    ``rideauth``: the ride-through's authorization cache, cid = backend name, sub = token (``idTag`` or
    ``<type>:<idToken>``), value = ``{"info": idTagInfo/idTokenInfo, "at": unix s}``.
    """

    kind: WriteKind
    cid: str
    sub: str
    value: dict[str, Any] | bytes | None

    @property
    def key(self) -> tuple[str, str, str]:
        """Writes with the same key supersede each other (the write-behind queue keeps the newest)."""
        return (self.kind, self.cid, self.sub)


class StoreUnavailable(Exception):
    """The backing service could not be reached or failed; the operation may be retried."""


class Subscription(Protocol):
    """Messages published to one node's channel (:meth:`Store.subscribe`), in order."""

    async def get(self, timeout: float) -> bytes | None:
        """The next message, or None when none came within ``timeout`` seconds."""
        ...

    async def close(self) -> None: ...


class Lease(Protocol):
    """One process of the fleet at a time holds it (:meth:`Store.lease`); it lapses unless extended in time."""

    #: False when there is nobody to share it with (the memory store: one process, always held)
    shared: bool

    async def hold(self) -> bool:
        """Extend the lease this process holds, or take it when nobody holds it; True when held afterwards."""
        ...

    async def release(self) -> None:
        """Give it up, if this process holds it."""
        ...


class Store(Protocol):
    """Per-charger state. Implementations: :class:`~gateway.store.memory.MemoryStore`,
    :class:`~gateway.store.redis.RedisStore`."""

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers."""
        ...

    async def apply(self, writes: list[Write]) -> None:
        """Apply writes in order (one round trip where the store allows)."""
        ...

    async def get_connection(self, cid: str) -> dict[str, Any] | None: ...

    async def list_connections(self) -> dict[str, dict[str, Any]]:
        """Every charger with a live session, fleet-wide, with its connection info: only chargers whose ownership
        has not expired (a node killed with SIGKILL loses its chargers from this list within the ownership TTL)."""
        ...

    async def get_boot(self, cid: str) -> dict[str, Any] | None: ...

    async def get_statuses(self, cid: str) -> dict[str, dict[str, Any]]:
        """Connector id (as a string) -> last StatusNotification payload."""
        ...

    async def get_translation_state(self, cid: str, backend: str) -> dict[str, Any] | None: ...

    async def get_route_override(self, cid: str) -> dict[str, Any] | None:
        """The charger's route override (``route`` write: {"primary", "mirrors"}), or None."""
        ...

    async def list_route_overrides(self) -> dict[str, dict[str, Any]]:
        """Every route override, by charger id."""
        ...

    async def get_site(self, site: str) -> dict[str, dict[str, Any]]:
        """Every field of a site's document (``site`` writes): field -> its JSON document."""
        ...

    async def get_ride(self, cid: str) -> dict[str, dict[str, Any]]:
        """Every field of the charger's ride-through state (``ride`` writes): ``<backend>|<field>`` -> document."""
        ...

    async def get_ride_auth(self, backend: str) -> dict[str, dict[str, Any]]:
        """The ride-through authorization cache of ``backend`` (``rideauth`` writes): token -> entry."""
        ...

    async def get_password_hash(self, cid: str) -> str | None:
        """The scrypt hash of the charger's Basic auth password (``cred`` write), or None."""
        ...

    async def get_password_hash_and_proof(self, cid: str, proof_ttl_s: float) -> tuple[str | None, bytes | None]:
        """The charger's password hash and its verification proof (:meth:`put_password_proof`), in one round trip;
        the proof, when there is one, lives ``proof_ttl_s`` from now on."""
        ...

    async def put_password_proof(self, cid: str, proof: bytes, ttl_s: float) -> None:
        """Keep ``proof`` (an HMAC from a successful password check, never the password) for ``ttl_s`` seconds."""
        ...

    async def get_upstream_password(self, cid: str, backend: str) -> str | None:
        """The password the gateway presents to ``backend`` for this charger (``upcred`` write), or None."""
        ...

    async def claim_owner(self, cid: str, node: str, ttl_s: float) -> str | None:
        """Make ``node`` the owner of ``cid`` for ``ttl_s`` seconds; return the previous owner (None: nobody)."""
        ...

    async def refresh_owners(self, node: str, cids: Collection[str], ttl_s: float) -> list[str]:
        """Extend ``node``'s ownership of ``cids`` (claiming the expired ones again) in one round trip; return the
        charger ids another node owns now (their sessions here are stale)."""
        ...

    async def get_owner(self, cid: str) -> str | None:
        """The node that owns ``cid`` now (its ownership has not expired), or None."""
        ...

    async def publish(self, node: str, message: bytes) -> int:
        """Send ``message`` on ``node``'s channel; return how many subscribers got it (0: that node is gone)."""
        ...

    async def subscribe(self, node: str) -> Subscription:
        """Listen on ``node``'s channel; returns once the subscription is active."""
        ...

    def outbox(self) -> Outbox:
        """The durable outboxes kept by this store (the same object every call)."""
        ...

    def compliance(self) -> ComplianceCounters:
        """The compliance report's counters, fleet-wide (the same object every call)."""
        ...

    def lease(self, key: str, holder: str, ttl_s: float) -> Lease:
        """The lease stored under ``key``, as ``holder`` (a node id) would hold it for ``ttl_s`` at a time."""
        ...

    async def add_to_stream(self, key: str, events: Sequence[bytes], max_len: int) -> None:
        """Append each event as one entry (field ``event``) of the stream ``key``, trimmed to about ``max_len``
        (a tap's ``redis_stream`` sink). Raises StoreUnavailable (the memory store has no such stream)."""
        ...

    async def close(self) -> None: ...
