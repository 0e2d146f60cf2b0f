"""Taps without sockets: the config (defaults, every problem by its YAML path) and which messages a tap selects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.config import ConfigError, TapConfig, load_config, parse_config
from gateway.fanout.taps import Taps, tap_event
from gateway.metrics import Metrics
from gateway.store.keys import Keys
from gateway.store.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = {"a": {"url": "ws://127.0.0.1:9100/ocpp"}}
ROUTES = [{"match": "ABB-*", "primary": "a"}, {"match": "*", "primary": "a"}]
HTTP = {"url": "http://127.0.0.1:8080/ingest"}


def config(taps: Any, store: str = "redis://127.0.0.1:6379/0") -> tuple[TapConfig, ...]:
    raw = {"backends": BACKENDS, "routes": ROUTES, "store": {"url": store}, "taps": taps}
    return parse_config(raw, env={"TOKEN": "t0k"}).taps


def problems(taps: Any, store: str = "redis://127.0.0.1:6379/0") -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        config(taps, store)
    return dict(info.value.problems)


def offered(metrics: Metrics, tap: str) -> float:
    return metrics.registry.get_sample_value("ocppgw_tap_events_total", {"tap": tap, "result": "offered"}) or 0.0


class TestConfig:
    def test_a_tap_gets_documented_defaults(self) -> None:
        (t,) = config([{"name": "all", "http": HTTP}])
        assert t.actions is None and t.routes is None
        assert t.directions == {"from_charger", "from_backend"}
        assert t.message_types == {"call", "callresult", "callerror", "send", "callresulterror"}
        assert t.outbox_max_len == 100_000 and t.outbox_max_age_s == 7 * 86400
        assert t.http is not None and t.http.batch == 100 and t.http.flush_interval_s == 1.0
        assert t.http.timeout_s == 10 and t.http.retry_initial_s == 0.5 and t.http.retry_max_s == 30
        assert t.redis_stream is None

    def test_no_taps_is_an_empty_tuple(self) -> None:
        raw = {"backends": BACKENDS, "routes": ROUTES}
        assert parse_config(raw, env={}).taps == ()

    def test_headers_take_env_vars_and_stay_out_of_repr(self) -> None:
        (t,) = config([{"name": "h", "http": {**HTTP, "headers": {"Authorization": "Bearer ${TOKEN}"}}}])
        assert t.http is not None and t.http.headers == {"Authorization": "Bearer t0k"}
        assert "t0k" not in repr(t)

    def test_routes_are_resolved_to_route_origins(self) -> None:
        (t,) = config([{"name": "r", "http": HTTP, "routes": ["*", "config:routes[0]", "override"]}])
        assert t.routes == {"config:routes[1]", "config:routes[0]", "override"}

    def test_redis_stream_sink(self) -> None:
        (t,) = config([{"name": "b", "redis_stream": {"key": "billing-events", "max_len": 500}}])
        assert t.redis_stream is not None and t.redis_stream.key == "billing-events"
        assert t.redis_stream.max_len == 500 and t.http is None

    def test_redis_stream_needs_a_redis_store(self) -> None:
        got = problems([{"name": "b", "redis_stream": {"key": "k"}}], store="memory://")
        assert got == {"taps[0].redis_stream": got["taps[0].redis_stream"]}
        assert "needs a Redis store" in got["taps[0].redis_stream"]

    def test_every_problem_is_reported_with_its_yaml_path(self) -> None:
        got = problems(
            [
                {"name": "bad name!", "http": HTTP, "directions": ["sideways"], "surprise": 1},
                {"name": "x", "http": {"url": "ftp://nope", "batch": 0, "timeout_s": -1, "headers": {"A": 1}}},
                {"name": "x", "routes": ["nope", "config:routes[7]"], "actions": "StartTransaction"},
                {"name": "y", "http": HTTP, "redis_stream": {"key": "k"}, "outbox": {"max_len": 0}},
                {"name": "z", "redis_stream": {"key": "ocppgw:tap:z"}, "message_types": ["call", "result"]},
                {"http": {"url": HTTP["url"], "retry_initial_s": 5, "retry_max_s": 1}},
            ]
        )
        assert {
            "taps[0].name",
            "taps[0].directions[0]",
            "taps[0].surprise",
            "taps[1].http.url",
            "taps[1].http.batch",
            "taps[1].http.timeout_s",
            "taps[1].http.headers",
            "taps[2].name",
            "taps[2].routes[0]",
            "taps[2].routes[1]",
            "taps[2].actions",
            "taps[2]",
            "taps[3]",
            "taps[3].outbox.max_len",
            "taps[4].redis_stream.key",
            "taps[4].message_types[1]",
            "taps[5].name",
            "taps[5].http.retry_max_s",
        } == set(got)
        assert "duplicate tap name" in got["taps[2].name"]
        assert "exactly one sink" in got["taps[2]"] and "exactly one sink" in got["taps[3]"]

    def test_taps_must_be_a_list(self) -> None:
        assert "taps" in problems({"name": "x"})

    def test_shipped_example_and_gateway_yaml_are_valid(self) -> None:
        example = load_config(str(ROOT / "config/examples/taps.yaml"), env={"REDIS_URL": "redis://r:6379/0"})
        assert [t.name for t in example.taps] == ["billing", "analytics"]
        load_config(str(ROOT / "config/gateway.yaml"), env={})


class TestSelection:
    def taps(self, *raw: dict[str, Any]) -> tuple[Taps, Metrics]:
        metrics = Metrics()
        taps = Taps(config(list(raw)), MemoryStore(), Keys(), metrics, structlog.get_logger(), node="n")
        return taps, metrics

    def offer_each_kind(self, taps: Taps, route: str = "config:routes[0]") -> None:
        for direction in ("from_charger", "from_backend"):
            for mtype in ("call", "callresult", "callerror"):
                for action in ("StartTransaction", "Heartbeat"):
                    taps.offer("CP1", route, direction, mtype, action, "1", {})

    def test_a_tap_without_filters_takes_every_message(self) -> None:
        taps, metrics = self.taps({"name": "all", "http": HTTP})
        self.offer_each_kind(taps)
        assert offered(metrics, "all") == 12

    def test_actions_directions_and_message_types_filter(self) -> None:
        taps, metrics = self.taps(
            {"name": "act", "http": HTTP, "actions": ["StartTransaction"]},
            {"name": "dir", "http": HTTP, "directions": ["from_backend"]},
            {"name": "typ", "http": HTTP, "message_types": ["callerror"], "actions": ["Heartbeat"]},
        )
        self.offer_each_kind(taps)
        assert (offered(metrics, "act"), offered(metrics, "dir"), offered(metrics, "typ")) == (6, 6, 2)

    def test_routes_filter_and_wants(self) -> None:
        taps, metrics = self.taps({"name": "abb", "http": HTTP, "routes": ["ABB-*"]})
        assert taps.wants("config:routes[0]")
        assert not taps.wants("config:routes[1]") and not taps.wants("override")
        self.offer_each_kind(taps, "config:routes[1]")
        assert offered(metrics, "abb") == 0
        self.offer_each_kind(taps, "config:routes[0]")
        assert offered(metrics, "abb") == 12

    def test_a_tap_without_routes_wants_every_route(self) -> None:
        taps, _ = self.taps({"name": "abb", "http": HTTP, "routes": ["ABB-*"]}, {"name": "all", "http": HTTP})
        assert taps.wants("override") and taps.wants("config:routes[1]")

    def test_no_taps_want_nothing(self) -> None:
        taps = Taps((), MemoryStore(), Keys(), Metrics(), structlog.get_logger(), node="n")
        assert not taps.wants("config:routes[0]")
        taps.offer("CP1", "config:routes[0]", "from_charger", "call", "Heartbeat", "1", {})

    def test_the_buffer_is_bounded_and_drops_are_counted(self) -> None:
        taps, metrics = self.taps({"name": "small", "http": HTTP, "outbox": {"max_len": 3}})
        for i in range(5):
            taps.offer("CP1", "config:routes[0]", "from_charger", "call", "Heartbeat", str(i), {})
        sample = metrics.registry.get_sample_value
        assert sample("ocppgw_tap_events_total", {"tap": "small", "result": "trimmed"}) == 2
        assert offered(metrics, "small") == 5


def test_event_shape() -> None:
    e = tap_event("CP1", "from_charger", "call", "Heartbeat", "u1", {"a": 1})
    assert list(e) == ["ts", "charger_id", "direction", "message_type", "action", "unique_id", "payload"]
    assert e["ts"].endswith("Z") and e["ts"][10] == "T" and e["payload"] == {"a": 1}


def test_tap_keys() -> None:
    assert Keys("p").tap("billing") == "p:tap:billing"
    assert Keys("p").tap_lease("billing") == "p:tap:billing:lease"
