"""Every key the gateway keeps in Redis, in one place (as arq's constants.py).

``{cid}`` is the charger id inside braces: a Redis Cluster hash tag, so that one charger's keys live on one shard.
``<p>`` is ``store.prefix`` from the config (default ``ocppgw``).

- ``<p>:{cid}:conn`` (string, JSON): node, since (unix s), protocol, backend, route, remote address.
  Written on connect, deleted on disconnect.
- ``<p>:{cid}:boot`` (string, JSON): the last BootNotification request, its response and when. Each boot.
- ``<p>:{cid}:status`` (hash): connector id -> JSON of the last StatusNotification payload. Each status.
- ``<p>:{cid}:tx:<backend>`` (string, JSON): translation state toward that backend (transaction ids, seqNo...).
- ``<p>:connected`` (set): charger ids with a live session on some node. Connect / disconnect.

No key has a TTL yet. Nothing here is a cache of something else: a restart reads it back and loses nothing
the next connection needs.
"""

from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    """Key builder for one prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "ocppgw") -> None:
        self.prefix = prefix

    def conn(self, cid: str) -> str:
        return f"{self.prefix}:{{{cid}}}:conn"

    def boot(self, cid: str) -> str:
        return f"{self.prefix}:{{{cid}}}:boot"

    def status(self, cid: str) -> str:
        return f"{self.prefix}:{{{cid}}}:status"

    def translation(self, cid: str, backend: str) -> str:
        return f"{self.prefix}:{{{cid}}}:tx:{backend}"

    def connected(self) -> str:
        return f"{self.prefix}:connected"
