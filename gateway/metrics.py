"""Every Prometheus collector of the gateway, in one place.

One :class:`Metrics` object per process owns its own ``CollectorRegistry`` (no module globals, so tests can run
several gateways side by side). Labels are bounded: version, direction, message type, action, backend, kind.
Never a charger id.

Hot path: :meth:`Metrics.count_message` and :meth:`Metrics.observe_rtt` count into plain Python numbers, one per
label tuple (a dict lookup and an addition), which are moved into their pre-bound label children whenever the
registry is collected (``/metrics``, :meth:`Metrics.render`, ``get_sample_value``): a collector registered before
every other one does it (:class:`_Flush`). Counting a frame straight into the child's value took its lock
(prometheus_client's ``MutexValue``): 420 ns per message and 830 ns per round-trip observation against 300 and
~350 ns now (timeit), ~5 % of a translated round trip's samples (py-spy). The children are incremented directly, as
``Counter.inc`` and ``Histogram.observe`` do after their per-call checks (observability, sign, exemplars);
``tests/unit/test_metrics.py`` holds the exposition to what the client's own methods produce, so that a
prometheus_client upgrade that changes its internals is caught. Everything runs on the process's one event loop
thread: the counts and the collection never race.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gateway.ocpp.actions import action_label

__all__ = ["Metrics"]

_RTT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The gateway's collectors. Names follow ``ocppgw_<noun>_<unit>``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        #: per cached label tuple: the count not yet in the child, and the child's increment
        self._message_counts: dict[tuple[str, str, str, str], int] = {}
        self._message_incs: dict[tuple[str, str, str, str], Callable[[float], None]] = {}
        #: per cached label tuple: [sum, count per bucket...] not yet in the child, and the child
        self._rtt_cells: dict[tuple[str, str, str], list[float]] = {}
        self._rtt_observers: dict[tuple[str, str, str], Histogram] = {}
        r.register(_Flush(self))  # first: collected before the collectors it feeds
        self.chargers_connected = Gauge(
            "ocppgw_chargers_connected",
            "Chargers connected now, by negotiated OCPP version",
            ["ocpp_version"],
            registry=r,
        )
        self.connections = Counter(
            "ocppgw_connections_total",
            "Charger WebSocket handshakes by outcome (accepted, bad_path, bad_charger_id, no_subprotocol, "
            "no_route, backend_unavailable, paced, draining, unauthorized, forbidden, rate_limited, store_unavailable)",
            ["outcome"],
            registry=r,
        )
        self.chargers_replaced = Counter(
            "ocppgw_chargers_replaced_total", "Sessions closed because the same charger id connected again", registry=r
        )
        self.disconnects = Counter(
            "ocppgw_disconnects_total", "Charger sessions ended, by reason", ["reason"], registry=r
        )
        self.messages = Counter(
            "ocppgw_messages_total",
            "OCPP frames relayed, by direction (from_charger, from_backend), message type, action and backend",
            ["direction", "message_type", "action", "backend"],
            registry=r,
        )
        self.call_duration = Histogram(
            "ocppgw_call_duration_seconds",
            "Round trip of a CALL through the gateway until its answer came back, by direction, action and backend",
            ["direction", "action", "backend"],
            buckets=_RTT_BUCKETS,
            registry=r,
        )
        self.call_timeouts = Counter(
            "ocppgw_call_timeouts_total", "CALLs that got no answer in time", ["direction", "backend"], registry=r
        )
        self.dropped_results = Counter(
            "ocppgw_dropped_results_total",
            "Answers dropped: no pending CALL matched (late or unknown id; a CALLRESULTERROR that no answered CALL "
            "matches), or the link they were for was down (also SEND frames)",
            ["direction", "reason"],
            registry=r,
        )
        self.frame_errors = Counter(
            "ocppgw_frame_errors_total", "Malformed frames refused, by side and kind", ["side", "kind"], registry=r
        )
        self.queued_calls = Gauge(
            "ocppgw_queued_calls", "CALLs waiting behind an outstanding CALL, by direction", ["direction"], registry=r
        )
        self.queue_overflows = Counter(
            "ocppgw_queue_overflows_total",
            "CALLs refused because the per-session queue was full",
            ["direction"],
            registry=r,
        )
        self.backend_links = Gauge(
            "ocppgw_backend_links_open", "Upstream WebSocket links open, by backend", ["backend"], registry=r
        )
        self.backend_connects = Counter(
            "ocppgw_backend_connects_total",
            "Upstream connection attempts by backend and outcome (ok, error, timeout, no_fd: this process had no "
            "file descriptor left)",
            ["backend", "outcome"],
            registry=r,
        )
        self.backend_connect_wait = Histogram(
            "ocppgw_backend_connect_wait_seconds",
            "Admission pacing (max_connects_per_s): how long an admitted charger waited for its turn to open its "
            'primary link, by backend (the refused are counted in ocppgw_connections_total{outcome="paced"})',
            ["backend"],
            buckets=(0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
            registry=r,
        )
        self.backend_reconnects = Counter(
            "ocppgw_backend_reconnects_total", "Upstream links re-established after a drop", ["backend"], registry=r
        )
        self.backend_link_lost = Counter(
            "ocppgw_backend_link_lost_total", "Upstream links that dropped mid-session", ["backend"], registry=r
        )
        self.store_up = Gauge("ocppgw_store_up", "1 when the store answered its last operation", registry=r)
        self.store_errors = Counter("ocppgw_store_errors_total", "Store operations that failed", ["op"], registry=r)
        self.store_pending_writes = Gauge(
            "ocppgw_store_pending_writes", "State writes queued for the store (write-behind)", registry=r
        )
        self.store_dropped_writes = Counter(
            "ocppgw_store_dropped_writes_total",
            "State writes dropped because the write-behind queue was full",
            registry=r,
        )
        self.admin_calls = Counter(
            "ocppgw_admin_calls_total",
            "CALLs sent to chargers through the admin API, by outcome (ok, callerror, timeout, queue_full, "
            "disconnected on the node holding the charger; forwarded, forward_failed on the node that forwarded it)",
            ["outcome"],
            registry=r,
        )
        self.internal_errors = Counter(
            "ocppgw_internal_errors_total",
            "Unexpected exceptions (bugs) caught: a session closed, or a feed started again",
            ["where"],
            registry=r,
        )
        self.translation_local_answers = Counter(
            "ocppgw_translation_local_answers_total",
            "CALLs the translator answered itself (refusals, acknowledgements by policy), by action and reason",
            ["action", "reason"],
            registry=r,
        )
        self.translation_dropped = Counter(
            "ocppgw_translation_dropped_total",
            "Fields, samples or messages with meaning that the target version cannot carry, by action and what",
            ["action", "what"],
            registry=r,
        )
        self.translation_errors = Counter(
            "ocppgw_translation_errors_total",
            "Translations refused because the result failed the target schema (bugs) or carries a number out of "
            "range, by action and kind",
            ["action", "kind"],
            registry=r,
        )
        self.auth_failures = Counter(
            "ocppgw_auth_failures_total",
            "Charger authentication failures by reason (missing_credentials, malformed, wrong_username, "
            "wrong_password, rate_limited, no_client_cert, cert_cn_mismatch, weaker_profile, not_allowed)",
            ["reason"],
            registry=r,
        )
        self.auth_cache = Counter(
            "ocppgw_auth_cache_total",
            "Basic auth password checks by verification cache result (hit: no scrypt; joined: the result of the "
            "same check already running; miss: a scrypt hash was computed: no proof yet, a stale one, a wrong "
            "password or an unknown charger id)",
            ["result"],
            registry=r,
        )
        self.tls_handshakes = Counter(
            "ocppgw_tls_handshakes_total",
            "TLS handshakes on charger listeners by listener and outcome (ok, protocol_version, untrusted_cert, "
            "expired_cert, revoked_cert, no_client_cert, no_shared_cipher, timeout, abandoned, error)",
            ["listener", "outcome"],
            registry=r,
        )
        self.tls_handshakes_waiting = Gauge(
            "ocppgw_tls_handshakes_waiting",
            "Accepted connections of a TLS charger listener waiting for their handshake's turn",
            ["listener"],
            registry=r,
        )
        self.tls_handshake_turns = Gauge(
            "ocppgw_tls_handshake_turns",
            "TLS handshakes a charger listener runs at once now (fewer while the event loop lags, up to "
            "listen.max_tls_handshakes)",
            ["listener"],
            registry=r,
        )
        self.certificate_expiry = Gauge(
            "ocppgw_certificate_expiry_seconds",
            "Seconds until the first certificate of a configured file expires (negative: expired), by config path",
            ["name"],
            registry=r,
        )
        self.password_rotations = Counter(
            "ocppgw_password_rotations_total",
            "Basic auth passwords set by a backend, by backend, policy and outcome (applied, failed, rejected)",
            ["backend", "policy", "outcome"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "ocppgw_outbox_depth",
            "Copies waiting in mirror outboxes (this process's chargers), by mirror",
            ["backend"],
            registry=r,
        )
        self.outbox_age = Gauge(
            "ocppgw_outbox_age_seconds",
            "Age of the oldest copy waiting for a mirror, by mirror",
            ["backend"],
            registry=r,
        )
        self.mirror_copies = Counter(
            "ocppgw_mirror_copies_total",
            "Copies of charger CALLs for mirrors, by mirror and result (delivered, trimmed: dropped unsent by the "
            "outbox bounds)",
            ["backend", "result"],
            registry=r,
        )
        self.mirror_calls = Counter(
            "ocppgw_mirror_calls_total",
            "CALLs a mirror sent toward a charger, by mirror and result (denied, forwarded)",
            ["backend", "result"],
            registry=r,
        )
        self.tap_events = Counter(
            "ocppgw_tap_events_total",
            "Events of message taps, by tap and result (offered: selected by the tap's filters; delivered: accepted "
            "by the sink; failed: in a delivery attempt that failed, kept and retried; trimmed: dropped unsent by "
            "the outbox bounds)",
            ["tap", "result"],
            registry=r,
        )
        self.tap_outbox_depth = Gauge(
            "ocppgw_tap_outbox_depth", "Events waiting in a tap's outbox (all replicas), by tap", ["tap"], registry=r
        )
        self.ride_chargers = Gauge(
            "ocppgw_ride_through_chargers",
            "Chargers of this process riding through an outage of their primary (answered by the gateway, riding "
            "or replaying), by backend",
            ["backend"],
            registry=r,
        )
        self.ride_journal_depth = Gauge(
            "ocppgw_ride_through_journal_depth",
            "CALLs waiting in the ride-through journals of this process's chargers, by backend",
            ["backend"],
            registry=r,
        )
        self.ride_journal_age = Gauge(
            "ocppgw_ride_through_journal_age_seconds",
            "Age of the oldest CALL waiting in a ride-through journal of this process's chargers, by backend",
            ["backend"],
            registry=r,
        )
        self.ride_messages = Counter(
            "ocppgw_ride_through_messages_total",
            "Charger CALLs while riding through, by backend and outcome (journalled: written, then answered by the "
            "gateway; answered: answered, not journalled (a DataTransfer refused by policy); refused: not "
            "answerable (CALLERROR of the gateway's own); journal_full: refused past the journal's bounds; "
            "store_unavailable: not written, so not answered; replayed: delivered to the CSMS and answered by it; "
            "replay_retried: sent again (no answer in time); repeat_skipped: an entry the CSMS had answered already, "
            "acknowledged without sending it again; dropped: removed by the admin API unreplayed)",
            ["backend", "outcome"],
            registry=r,
        )
        self.ride_divergences = Counter(
            "ocppgw_ride_through_divergences_total",
            "Replayed CALLs the CSMS answered differently from the gateway, by backend and kind (authorization, "
            "boot, data_transfer, callerror)",
            ["backend", "kind"],
            registry=r,
        )
        self.ride_stops = Counter(
            "ocppgw_ride_through_stops_total",
            "Transactions the gateway asked a charger to stop (RemoteStopTransaction / RequestStopTransaction), by "
            "backend and reason (divergence: the CSMS refused the token; limit: an unknown token's energy or "
            "duration limit)",
            ["backend", "reason"],
            registry=r,
        )
        self.shadow_divergences = Counter(
            "ocppgw_shadow_divergences_total",
            "Mirrored CALLs whose mirror answer decided differently from the primary's, by action and backend pair",
            ["action", "primary", "mirror"],
            registry=r,
        )
        self.cutovers = Counter(
            "ocppgw_cutovers_total",
            "Route changes of connected chargers (live cutover), by result",
            ["result"],
            registry=r,
        )
        self.reloads = Counter(
            "ocppgw_config_reloads_total",
            "Config reloads (SIGHUP, POST /api/reload) by result (applied, invalid)",
            ["result"],
            registry=r,
        )
        self.loop_lag = Histogram(
            "ocppgw_event_loop_lag_seconds",
            "How late the event loop ran a timer that was due (sampled every 250 ms)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.fleet_events = Counter(
            "ocppgw_fleet_events_total",
            "Charger ownership between nodes (takeover_sent, takeover_unanswered, takeover_received, ownership_lost) "
            "and node messages dropped (message_dropped)",
            ["event"],
            registry=r,
        )
        self.workers = Gauge(
            "ocppgw_workers", "Worker processes alive (main process of workers > 1; 0 otherwise)", registry=r
        )
        self.worker_restarts = Counter(
            "ocppgw_worker_restarts_total",
            "Worker processes that died and were started again by the main process, by exit (code or signal)",
            ["exit"],
            registry=r,
        )
        # quirk profiles and the compliance report (gateway/quirks/, gateway/core/quirks.py)
        self.quirk_repairs = Counter(
            "ocppgw_quirk_repairs_total", "Values repaired by quirk profile rules, by profile and rule",
            ["profile", "rule"], registry=r,
        )  # fmt: skip
        self.schema_violations = Counter(
            "ocppgw_schema_violations_total",
            "Schema violations in chargers' frames, by model (an allow-listed vendor/model, profile:<name>, or other),"
            " action and outcome (repaired by a profile rule; unrepaired: the frame still failed its schema)",
            ["model", "action", "outcome"], registry=r,
        )  # fmt: skip
        self._sites(r)

    def _sites(self, r: CollectorRegistry) -> None:
        """Local load management (gateway/app/sites.py). Labelled by site, never by charger (per-charger figures are
        in the admin API). The gauges are set by the node controlling the site and removed on the others, so that
        ``max by (site)`` over replicas reads the controller's figures. A sites are in amperes per phase, kW sites
        in watts: each site has the family of its unit."""
        self.site_controller = Gauge(
            "ocppgw_site_controller", "1 on the node controlling the site (it holds the site's lease)", ["site"],
            registry=r,
        )  # fmt: skip
        limit_help = "The site's limit ({}): kind=connection as configured, kind=effective after demand-response events"
        draw_help = "The site's measured draw ({}): its meter, else the sum of the EVs' own meter values"
        alloc_help = (
            "What the site's chargers are allowed together ({}), offline ones at the most they may draw on their own"
        )
        self.site_limit_amperes = Gauge(
            "ocppgw_site_limit_amperes", limit_help.format("A per phase"), ["site", "kind"], registry=r
        )
        self.site_limit_watts = Gauge("ocppgw_site_limit_watts", limit_help.format("W"), ["site", "kind"], registry=r)
        self.site_draw_amperes = Gauge(
            "ocppgw_site_draw_amperes", draw_help.format("A per phase"), ["site", "phase"], registry=r
        )
        self.site_draw_watts = Gauge("ocppgw_site_draw_watts", draw_help.format("W"), ["site"], registry=r)
        self.site_allocated_amperes = Gauge(
            "ocppgw_site_allocated_amperes", alloc_help.format("A per phase"), ["site", "phase"], registry=r
        )
        self.site_allocated_watts = Gauge("ocppgw_site_allocated_watts", alloc_help.format("W"), ["site"], registry=r)
        self.site_transactions = Gauge(
            "ocppgw_site_transactions", "Transactions in progress at the site: state=charging, or paused (no room "
            "for their minimum current)", ["site", "state"], registry=r,
        )  # fmt: skip
        self.site_events = Gauge(
            "ocppgw_site_events", "Demand-response events of the site by state (active, scheduled)", ["site", "state"],
            registry=r,
        )  # fmt: skip
        self.site_event_changes = Counter(
            "ocppgw_site_event_changes_total",
            "Demand-response events by change (created, cancelled, ended, refused) and source (api, mqtt)",
            ["site", "change", "source"], registry=r,
        )  # fmt: skip
        self.site_profiles = Counter(
            "ocppgw_site_profiles_total",
            "SetChargingProfile CALLs of the controller by result (accepted, rejected, failed: no answer)",
            ["site", "result"], registry=r,
        )  # fmt: skip
        self.site_allocations = Counter(
            "ocppgw_site_allocations_total",
            "Allocations computed, by what started them (period, transaction, meter, event, charger)",
            ["site", "trigger"], registry=r,
        )  # fmt: skip
        self.site_meter_age = Gauge(
            "ocppgw_site_meter_age_seconds", "Age of the site meter's last reading (sites with a meter; -1: none yet)",
            ["site"],
            registry=r,
        )  # fmt: skip
        self.site_meter_messages = Counter(
            "ocppgw_site_meter_messages_total", "Site meter messages by result (ok, invalid)", ["site", "result"],
            registry=r,
        )  # fmt: skip

    def count_message(self, direction: str, message_type: str, action: str, backend: str) -> None:
        """One frame in ``ocppgw_messages_total``; ``action`` as received (one that is not an OCPP action is counted
        as ``other``, and not cached: the cache stays bounded)."""
        key = (direction, message_type, action, backend)
        counts = self._message_counts
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
            return
        label = action_label(action)
        inc = self.messages.labels(direction, message_type, label, backend)._value.inc
        if label == action:
            self._message_incs[key] = inc
            counts[key] = 1
        else:
            inc(1)

    def observe_rtt(self, direction: str, action: str, backend: str, seconds: float) -> None:
        """One round trip in ``ocppgw_call_duration_seconds`` (``action`` as in :meth:`count_message`)."""
        key = (direction, action, backend)
        cell = self._rtt_cells.get(key)
        if cell is None:
            label = action_label(action)
            child = self.call_duration.labels(direction, label, backend)
            cell = [0.0] * (1 + len(_BOUNDS))
            if label == action:
                self._rtt_cells[key] = cell
                self._rtt_observers[key] = child
            else:
                cell[0] += seconds
                cell[1 + bisect_left(_BOUNDS, seconds)] += 1
                _add_to(child, cell)
                return
        cell[0] += seconds
        cell[1 + bisect_left(_BOUNDS, seconds)] += 1

    def flush(self) -> None:
        """Move the hot path's counts into their children (the registry's collection calls it first)."""
        counts, incs = self._message_counts, self._message_incs
        for key, n in counts.items():
            if n:
                incs[key](n)
                counts[key] = 0
        children = self._rtt_observers
        for rtt_key, cell in self._rtt_cells.items():
            if any(cell):
                _add_to(children[rtt_key], cell)

    def register(self, collector: Collector) -> None:
        """Add a collector owned by another module (kept in this registry)."""
        self.registry.register(collector)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


#: the upper bounds of ocppgw_call_duration_seconds' buckets, +Inf last: every value has a bucket
_BOUNDS = (*_RTT_BUCKETS, float("inf"))


def _add_to(child: Histogram, cell: list[float]) -> None:
    """Add ``cell`` ([sum, count per bucket...]) to a histogram child and zero it: what ``child.observe`` does after
    its per-call checks, for each value (buckets hold counts per bucket; the exposition makes them cumulative)."""
    child._sum.inc(cell[0])
    buckets = child._buckets
    for i in range(1, len(cell)):
        if cell[i]:
            buckets[i - 1].inc(cell[i])
    cell[:] = [0.0] * len(cell)


class _Flush(Collector):
    """Collects nothing; collecting it moves the hot path's counts into their children (see the module docstring)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = weakref.ref(metrics)

    def collect(self) -> Iterable[Metric]:
        m = self._metrics()
        if m is not None:
            m.flush()
        return ()
