"""Config: defaults, env substitution, and every problem named by its YAML path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import ConfigError, config_warnings, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"backends": {"a": {"url": "ws://127.0.0.1:9100/ocpp"}}, "routes": [{"match": "*", "primary": "a"}]}


def test_minimal_config_gets_documented_defaults() -> None:
    c = parse_config(MINIMAL, env={})
    assert c.listen.port == 9000 and c.listen.path_prefix == "/ocpp" and c.listen.max_frame_bytes == 65536
    assert c.store.url == "memory://" and c.admin.host == "127.0.0.1" and c.logging.format == "json"
    assert c.backends["a"].ocpp == "1.6"


def test_env_vars_are_substituted_in_any_string() -> None:
    raw = {**MINIMAL, "admin": {"token": "${TOKEN}"}, "store": {"url": "redis://${RHOST}:6379/0"}}
    c = parse_config(raw, env={"TOKEN": "s3cret", "RHOST": "redis.local"})
    assert c.admin.token == "s3cret" and c.store.url == "redis://redis.local:6379/0"
    assert "s3cret" not in repr(c.admin)


def test_missing_env_var_is_an_error_at_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**MINIMAL, "admin": {"token": "${NOPE}"}}, env={})
    assert ("admin.token", "environment variable NOPE is not set") in info.value.problems


def test_every_problem_is_reported_with_its_yaml_path() -> None:
    raw = {
        "listen": {"port": 70000, "surprise": True, "path_prefix": "ocpp"},
        "backends": {"a": {"url": "http://nope", "ocpp": "1.5", "extra": 1}, "b": "ws://x"},
        "routes": [{"match": "*", "primary": "zzz"}, {"primary": "a"}],
        "logging": {"level": "loud"},
        "whatever": {},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    paths = {p for p, _ in info.value.problems}
    assert {
        "listen.port",
        "listen.surprise",
        "listen.path_prefix",
        "backends.a.url",
        "backends.a.ocpp",
        "backends.a.extra",
        "backends.b",
        "routes[0].primary",
        "routes[1].match",
        "logging.level",
        "whatever",
    } <= paths


def test_shipped_configs_are_valid() -> None:
    for path in [ROOT / "config" / "gateway.yaml", *sorted((ROOT / "config" / "examples").glob("*.yaml"))]:
        load_config(str(path), env={"OCPPGW_ADMIN_TOKEN": "t", "REDIS_URL": "redis://127.0.0.1:6379/0"})


def test_check_config_cli_exits_2_and_prints_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends: {a: {url: 'ws://x/ocpp'}}\nroutes: [{match: '*', primary: b}]\n")
    out = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "routes[0].primary: unknown backend 'b'" in out.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(ROOT / "config" / "gateway.yaml")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends: {a: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad))
    assert "line" in info.value.problems[0][1]


@pytest.mark.parametrize("where", ["backend", "listener"])
def test_an_unquoted_2_0_is_named_rather_than_read_as_ocpp_2_0(where: str) -> None:
    raw = yaml.safe_load(
        "backends: {a: {url: 'ws://127.0.0.1:9100/ocpp', ocpp: 2.0}}\nroutes: [{match: '*', primary: a}]\n"
        if where == "backend"
        else "listen: {ocpp_versions: [1.6, 2.0]}\nbackends: {a: {url: 'ws://127.0.0.1:9100/ocpp'}}\n"
        "routes: [{match: '*', primary: a}]\n"
    )
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    path = "backends.a.ocpp" if where == "backend" else "listen.ocpp_versions[1]"
    assert [(p, m) for p, m in e.value.problems if p == path] == [
        (path, 'the YAML number 2.0: write "2.0.1" for OCPP 2.0.1, or "2.0" quoted for OCPP 2.0')
    ]


def test_unquoted_1_6_and_quoted_versions_are_accepted() -> None:
    raw = yaml.safe_load(
        "listen: {ocpp_versions: [1.6, '2.0.1', '2.0']}\nbackends: {a: {url: 'ws://127.0.0.1:9100/ocpp', ocpp: 1.6}}\n"
        "routes: [{match: '*', primary: a}]\n"
    )
    cfg = parse_config(raw)
    assert cfg.backends["a"].ocpp == "1.6" and cfg.listen.ocpp_versions == ("1.6", "2.0.1", "2.0")


def test_check_config_warns_that_ocpp_2_0_is_not_validated(tmp_path: Path) -> None:
    # 2.0 has no schemas (2.0.1's are not 2.0's): validate_schemas does not apply to it, and check-config says so
    raw = {**MINIMAL, "listen": {"ocpp_versions": ["2.0", "2.0.1", "2.1"]}, "session": {"validate_schemas": True}}
    c = parse_config({**raw, "backends": {"a": {"url": "ws://127.0.0.1:9100/ocpp", "ocpp": "2.0"}}}, env={})
    assert [p for p, _ in config_warnings(c)] == ["listen.ocpp_versions", "backends.a.ocpp"]
    assert config_warnings(parse_config({**raw, "session": {"validate_schemas": False}}, env={})) == []
    assert config_warnings(parse_config({**raw, "listen": {"ocpp_versions": ["2.1"]}}, env={})) == []
    f = tmp_path / "v20.yaml"
    f.write_text(
        "listen: {ocpp_versions: ['2.0', '2.1']}\nsession: {validate_schemas: true}\n"
        "backends: {a: {url: 'ws://127.0.0.1:9100/ocpp', ocpp: '2.1'}}\nroutes: [{match: '*', primary: a}]\n"
    )
    out = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "warning: listen.ocpp_versions: OCPP 2.0 has no schemas" in out.stderr and "1 warning(s)" in out.stdout


def test_offline_defaults_to_close_and_ride_through_is_parsed() -> None:
    c = parse_config(MINIMAL, env={})
    assert c.routes[0].offline.mode == "close" and not c.routes[0].offline.ride_through
    assert c.backends["a"].replay_per_s == 50.0
    raw = {
        "backends": {"a": {"url": "ws://127.0.0.1:9100/ocpp", "replay_per_s": 200}},
        "routes": [{"match": "*", "primary": "a", "offline": {
            "mode": "ride_through", "auth_cache": {"ttl_s": 3600, "max_entries": 10},
            "unknown_token": {"policy": "accept_limited", "max_energy_wh": 5000, "max_duration_s": 3600},
            "data_transfer": "accept", "journal": {"max_len": 100, "max_age_s": 600}}}],
    }  # fmt: skip
    c = parse_config(raw, env={})
    o = c.routes[0].offline
    assert o.ride_through and o.auth_cache_ttl_s == 3600 and o.auth_cache_max_entries == 10
    assert (o.unknown_token, o.max_energy_wh, o.max_duration_s) == ("accept_limited", 5000, 3600)
    assert (o.data_transfer, o.journal_max_len, o.journal_max_age_s) == ("accept", 100, 600)
    assert c.backends["a"].replay_per_s == 200


def test_invalid_offline_values_name_their_yaml_path() -> None:
    raw = {
        "backends": {"a": {"url": "ws://127.0.0.1:9100/ocpp", "replay_per_s": 0}},
        "routes": [
            {"match": "A*", "primary": "a", "offline": {
                "mode": "ride", "auth_cache": {"ttl_s": -1, "size": 3}, "unknown_token": {"policy": "accept_limited"},
                "data_transfer": "maybe", "journal": {"max_len": 0}, "extra": 1}},
            {"match": "*", "primary": "a", "offline": {"unknown_token": {"policy": "reject", "max_energy_wh": 10}}},
        ],
    }  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    paths = {p for p, _ in info.value.problems}
    assert {
        "backends.a.replay_per_s",
        "routes[0].offline.mode",
        "routes[0].offline.auth_cache.ttl_s",
        "routes[0].offline.auth_cache.size",
        "routes[0].offline.unknown_token",
        "routes[0].offline.data_transfer",
        "routes[0].offline.journal.max_len",
        "routes[0].offline.extra",
        "routes[1].offline.unknown_token",
    } <= paths
