"""Every key the gateway keeps in Redis, in one place (as arq's constants.py).

``{cid}`` is the charger id inside braces: a Redis Cluster hash tag, so that one charger's keys live on one shard.
``<p>`` is ``store.prefix`` from the config (default ``ocppgw``).

- ``<p>:{cid}:conn`` (string, JSON): node, since (unix s), protocol, backend, route, remote address.
  Written on connect (write-behind), deleted on disconnect only by the node that still owns the charger; a record
  whose owner key expired is stale (deleted when the fleet is listed).
- ``<p>:{cid}:owner`` (string, TTL ``store.owner_ttl_s``): the node id (``host:pid:rand``) of the process holding
  the charger's session. Claimed at the handshake (``SET .. PX .. GET``: the previous owner is told to close its
  session), refreshed every TTL/3 by one task per process (one pipeline over its chargers, compare-and-expire),
  deleted on disconnect (compare-and-delete). A process killed with SIGKILL loses its chargers when the TTL runs out.
- ``<p>:{cid}:boot`` (string, JSON): the last BootNotification request, its response and when. Each boot.
- ``<p>:{cid}:status`` (hash): connector id -> JSON of the last StatusNotification payload. Each status.
- ``<p>:{cid}:tx:<backend>`` (string, JSON): translation state toward that backend (transaction ids, seqNo...).
- ``<p>:{cid}:cred`` (string, JSON ``{"hash": "scrypt$..."}``): the charger's Basic auth password hash. Admin API,
  credentials file, password rotation. Never the password itself.
- ``<p>:{cid}:credproof`` (string, 32 bytes, TTL ``security.verification_cache.ttl_s``): the verification cache
  shared by every process and replica (only with ``security.verification_cache`` configured): HMAC-SHA256, keyed with
  the configured secret, of (charger id, the stored scrypt hash, the password) from the last successful Basic auth
  check. Never the password, nor anything that lets one recover it or test a guess without the secret. Read with the
  ``cred`` key in one pipeline at every check (``GETEX``: the TTL starts again), written after a check that ran
  scrypt, deleted with the ``cred`` key. A new hash (rotation, admin API) no longer matches it: it is stale, not
  wrong.
- ``<p>:{cid}:upcred:<backend>`` (string, JSON ``{"password": ...}``): the password the gateway presents for this
  charger to that backend (profiles 1/2 upstream). In clear, because it must be sent: protect Redis (ACLs, TLS).
- ``<p>:{cid}:outbox:<mirror>`` (stream): copies waiting for a mirror, oldest first; entries are deleted when the
  mirror answered them; bounded by length and age (routes' outbox settings). ``<p>:{cid}:outbox:<mirror>:meta``
  (hash): ``total`` copies in the stream and ``skip``, how many of its oldest entry's are gone.
- ``<p>:mirror-spool:<mirror>:<instance>`` (stream, and ``:meta`` hash as above): while a mirror is down, the copies
  of every charger of one gateway process (``instance``: random per process start), one entry per write; moved into
  the chargers' outboxes, entry by entry and atomically, by whichever process sees the mirror back first (a
  process killed meanwhile leaves its spool to the others). Bounded by length and age.
- ``<p>:mirror-spools`` (set): the names of the spool streams above that may hold copies (added at every write,
  removed, atomically with a check that the spool is empty, by the process that emptied it).
- ``<p>:tap:<name>`` (stream): events waiting for a tap's sink (gateway/fanout/taps.py), oldest first, appended by every
  replica; entries are deleted when the sink accepted them; bounded by the tap's ``outbox`` settings.
- ``<p>:tap:<name>:lease`` (string, TTL): the node id of the one process delivering that tap's outbox (so that
  replicas do not deliver the same events twice or out of order). Taken with ``SET NX PX``, extended by its holder
  before every batch (compare-and-expire), deleted by its holder on shutdown (compare-and-delete).
- ``<p>:{cid}:route`` (string, JSON): a per-charger route override ({"primary", "mirrors"}) from the admin API.
- ``<p>:routes`` (set): charger ids with a route override.
- ``<p>:connected`` (set): charger ids with a live session on some node (a superset: members without an owner key
  are dropped when the fleet is listed; each node adds its chargers again at every refresh).
- ``<p>:site:{<site>}`` (hash): one site of the local controller (gateway/app/sites.py), field -> JSON:
  ``charger:<id>`` what the node holding the charger observed (connection, transactions per EVSE, measured draw),
  written behind on every change; ``ctl:<id>`` what the controller last did to that charger (the profile limits it
  sent, their validity, the connection it read back), written by the site's controller; ``event:<id>`` a
  demand-response event, written directly (awaited) by the admin API or the MQTT topic, deleted when it ended or
  was cancelled; ``summary`` the last allocation (for every replica's admin API). The braces make one site's keys
  one hash slot.
- ``<p>:site:{<site>}:lease`` (string, TTL): the node id of the one process controlling that site (a
  :class:`gateway.store.base.Lease`, as for taps).
- ``<p>:node:<node>`` (pub/sub channel, not a key): messages to one node, JSON: ``takeover`` (close your session of
  this charger with 1000), ``call`` (run an admin CALL on your charger) and their ``reply``.

- ``<p>:{cid}:journal:<backend>`` (stream): the outage ride-through's journal (gateway/app/ride.py): every CALL the
  charger sent while its primary was unreachable, in order, with what the gateway answered, as JSON entries
  ``{"u": unique id, "a": action, "p": payload, "r": the gateway's answer, "t": unix s}``; written (awaited) before
  the gateway answers, deleted entry by entry once the CSMS answered its replay; never trimmed (the route's
  ``offline.journal`` bounds refuse new transactions instead). An outbox stream (gateway/store/outbox.py).
- ``<p>:{cid}:ride`` (hash): the charger's ride-through state per backend: ``<backend>|boot`` (the interval of its
  last boot the backend accepted), ``<backend>|tx:<gateway id>`` (``{"csms": id}``: the backend's transactionId of
  a transaction the gateway answered; written, awaited, before the replayed StartTransaction is acknowledged).
- ``<p>:ride-auth:{<backend>}`` (hash): a backend's ride-through authorization cache, token (``idTag``,
  ``<type>:<idToken>``) -> ``{"info": idTagInfo/idTokenInfo, "at": unix s}``, learned from live answers (write
  behind), bounded by ``offline.auth_cache.max_entries``.

- ``<p>:compliance:models`` (hash): model id -> JSON ``[vendor, model, firmware]`` as chargers said them in their
  BootNotification; the id is 16 hex characters of the SHA-256 of that JSON. Every replica adds to the report
  (gateway/store/compliance.py), in batches written behind (``compliance.flush_interval_s``).
- ``<p>:compliance:<id>:chargers`` (set): the charger ids seen with that model.
- ``<p>:compliance:<id>:counts`` (hash): counter (JSON of a tuple: ``["messages"]``, ``["checked"]``, a violation
  ``["v", version, direction, message, action, path, kind, hint, value]``, a repair ``["r"|"f", version, profile,
  rule, direction, message, action, path, repair]``) -> count; at most ``compliance.max_fields`` counters (checked
  atomically by a script), further increments go to ``["other"]``. ``ocpp-gateway report compliance --reset``
  deletes these keys.

Only ``owner``, ``credproof`` and lease keys (taps, sites) have a TTL. ``credproof`` is the one cache of something else
(it saves a scrypt computation): losing it costs CPU, never correctness. Everything else is read back by a restart,
which loses nothing the next connection needs.
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

    def cred(self, cid: str) -> str:
        return f"{self.prefix}:{{{cid}}}:cred"

    def credproof(self, cid: str) -> str:
        """The shared verification cache entry of a charger's Basic auth password (an HMAC, TTL)."""
        return f"{self.prefix}:{{{cid}}}:credproof"

    def upcred(self, cid: str, backend: str) -> str:
        return f"{self.prefix}:{{{cid}}}:upcred:{backend}"

    def owner(self, cid: str) -> str:
        return f"{self.prefix}:{{{cid}}}:owner"

    def outbox(self, cid: str, mirror: str) -> str:
        """Redis Stream of copies waiting for a mirror backend (see gateway/store/outbox.py)."""
        return f"{self.prefix}:{{{cid}}}:outbox:{mirror}"

    def mirror_spool(self, mirror: str, instance: str = "") -> str:
        """Redis Stream of a down mirror's copies, of every charger of one gateway process (``instance``); without
        ``instance``, the prefix of every process's spool for that mirror (see gateway/fanout/spool.py)."""
        return f"{self.prefix}:mirror-spool:{mirror}:{instance}"

    def mirror_spools(self) -> str:
        """Set of the spool streams that may hold copies (so that a process finds those others left)."""
        return f"{self.prefix}:mirror-spools"

    def tap(self, name: str) -> str:
        """Redis Stream of events waiting for a tap's sink (see gateway/fanout/taps.py)."""
        return f"{self.prefix}:tap:{name}"

    def tap_lease(self, name: str) -> str:
        """Node id of the process delivering a tap's outbox (TTL)."""
        return f"{self.prefix}:tap:{name}:lease"

    def route(self, cid: str) -> str:
        """JSON route override of one charger ({"primary", "mirrors"}), set by the admin API."""
        return f"{self.prefix}:{{{cid}}}:route"

    def routes(self) -> str:
        """Set of charger ids that have a route override."""
        return f"{self.prefix}:routes"

    def ride(self, cid: str) -> str:
        """Hash of one charger's ride-through state (``<backend>|boot``, ``<backend>|tx:<gateway id>``)."""
        return f"{self.prefix}:{{{cid}}}:ride"

    def ride_auth(self, backend: str) -> str:
        """Hash of one backend's ride-through authorization cache: token -> {"info", "at"}."""
        return f"{self.prefix}:ride-auth:{{{backend}}}"

    def journal(self, cid: str, backend: str) -> str:
        """Redis Stream of the ride-through journal: what the charger sent while ``backend`` was unreachable."""
        return f"{self.prefix}:{{{cid}}}:journal:{backend}"

    def connected(self) -> str:
        return f"{self.prefix}:connected"

    def site(self, name: str) -> str:
        """Hash of one site of the local controller: observations, controller state, events, summary."""
        return f"{self.prefix}:site:{{{name}}}"

    def site_lease(self, name: str) -> str:
        """Node id of the process controlling one site (TTL)."""
        return f"{self.prefix}:site:{{{name}}}:lease"

    def node_channel(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    def compliance_models(self) -> str:
        """Hash of the models in the compliance report: id -> [vendor, model, firmware]."""
        return f"{self.prefix}:compliance:models"

    def compliance_chargers(self, model_id: str) -> str:
        return f"{self.prefix}:compliance:{model_id}:chargers"

    def compliance_counts(self, model_id: str) -> str:
        return f"{self.prefix}:compliance:{model_id}:counts"
