"""Security primitives without sockets: Basic auth parsing, password hashes, the failure limiter, achieved profiles,
password-rotation interception, TLS failure labels, the security config keys and ``check-config`` file checks."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from gateway.config import ConfigError, parse_config
from gateway.core.rotation import intercept_csms_call, rotation_accepted, rotation_offer
from gateway.edge.http import http_error
from gateway.ops.cli import main
from gateway.security import (
    OCPP_TLS12_CIPHERS,
    FailureLimiter,
    HandshakeAbandoned,
    SecurityProfile,
    achieved_profile,
    client_context,
    hash_password,
    parse_basic_auth,
    server_context,
    tls_failure,
    valid_password,
    verify_password,
)

MINIMAL: dict[str, Any] = {
    "backends": {"a": {"url": "ws://127.0.0.1:9100/ocpp"}},
    "routes": [{"match": "*", "primary": "a"}],
}


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


# ---------------------------------------------------------------------------------------------------------------
# Basic auth


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Basic {b64('CP-1:secret:with:colons')}", ("CP-1", "secret:with:colons")),
        (f"basic   {b64('CP-1:')}", ("CP-1", "")),
        (f"Basic {b64('CP é:pw')}", ("CP é", "pw")),
        (None, None),
        ("", None),
        ("Bearer abc", None),
        ("Basic", None),
        ("Basic !!!", None),
        (f"Basic {b64('no-colon')}", None),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), None),
    ],
)
def test_basic_auth_header_is_parsed_or_refused(header: str | None, expected: tuple[str, str] | None) -> None:
    got = parse_basic_auth(header)
    assert (None if got is None else (got.username, got.password)) == expected


def test_credentials_repr_hides_the_password() -> None:
    creds = parse_basic_auth(f"Basic {b64('CP-1:hunter2-hunter2')}")
    assert "hunter2" not in repr(creds)


@pytest.mark.parametrize(
    ("password", "ok"),
    [("a" * 15, False), ("a" * 16, True), ("a" * 40, True), ("a" * 41, False), ("é" * 20, False), ("a\n" * 8, False)],
)
def test_password_rules_follow_ocpp(password: str, ok: bool) -> None:
    assert (valid_password(password) is None) is ok


def test_hash_is_salted_and_verifies_only_the_password() -> None:
    h1, h2 = hash_password("correct-horse-battery"), hash_password("correct-horse-battery")
    assert h1 != h2 and h1.startswith("scrypt$16384$8$1$") and "correct" not in h1
    assert verify_password("correct-horse-battery", h1)
    assert not verify_password("correct-horse-batterx", h1)
    for broken in ("", "scrypt$1$8$1$x$y", "md5$1$2$3$4$5", "scrypt$16384$8$1$!!$!!", h1[:-4]):
        assert not verify_password("correct-horse-battery", broken)


# ---------------------------------------------------------------------------------------------------------------
# rate limiting and profiles


def test_limiter_blocks_at_the_limit_until_the_window_ends() -> None:
    lim = FailureLimiter(limit=3, window_s=60)
    for t in (0.0, 1.0, 2.0):
        assert not lim.blocked("CP-1", t)
        lim.fail("CP-1", t)
    assert lim.blocked("CP-1", 3.0)
    assert not lim.blocked("CP-2", 3.0)
    assert not lim.blocked("CP-1", 60.5)  # window over: forgotten


def test_limiter_memory_is_bounded() -> None:
    lim = FailureLimiter(limit=1, window_s=60, max_keys=100)
    for i in range(10_000):
        lim.fail(f"id-{i}", 0.0)
    assert len(lim) == 100
    assert lim.blocked("id-9999", 1.0) and not lim.blocked("id-0", 1.0)


@pytest.mark.parametrize(
    ("tls", "basic_ok", "cert_ok", "profile"),
    [
        (False, False, False, 0),
        (False, True, False, 1),
        (True, True, False, 2),
        (True, False, True, 3),
        (True, True, True, 3),
        (True, False, False, 0),
    ],
)
def test_achieved_profile(tls: bool, basic_ok: bool, cert_ok: bool, profile: int) -> None:
    assert achieved_profile(tls, basic_ok, cert_ok) == SecurityProfile(profile)


# ---------------------------------------------------------------------------------------------------------------
# rotation

SV = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}


def test_16_authorization_key_is_intercepted() -> None:
    payload = {"key": "AuthorizationKey", "value": "0123456789abcdef0123"}
    assert intercept_csms_call("ChangeConfiguration", payload, "1.6") == ({"status": "Accepted"}, payload["value"])
    assert intercept_csms_call("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}, "1.6") == (
        None,
        None,
    )
    assert intercept_csms_call("SetVariables", {"setVariableData": [{**SV, "attributeValue": "x"}]}, "1.6") == (
        None,
        None,
    )


def test_201_basic_auth_password_is_intercepted_and_other_variables_rejected() -> None:
    other = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "9"}
    payload = {"setVariableData": [{**SV, "attributeValue": "new-password-123456", "attributeType": "Actual"}, other]}
    answer, pw = intercept_csms_call("SetVariables", payload, "2.0.1")
    assert pw == "new-password-123456"
    assert answer == {
        "setVariableResult": [
            {**SV, "attributeStatus": "Accepted", "attributeType": "Actual"},
            {"component": other["component"], "variable": other["variable"], "attributeStatus": "Rejected"},
        ]
    }
    assert intercept_csms_call("SetVariables", {"setVariableData": [other]}, "2.0.1") == (None, None)
    assert rotation_offer("ChangeConfiguration", {"key": "AuthorizationKey", "value": "x"}, "2.0.1") is None


@pytest.mark.parametrize(
    ("payload", "version", "accepted"),
    [
        ({"status": "Accepted"}, "1.6", True),
        ({"status": "RebootRequired"}, "1.6", True),
        ({"status": "Rejected"}, "1.6", False),
        ({"setVariableResult": [{**SV, "attributeStatus": "Accepted"}]}, "2.0.1", True),
        ({"setVariableResult": [{**SV, "attributeStatus": "Rejected"}]}, "2.0.1", False),
        ({"setVariableResult": "junk"}, "2.0.1", False),
    ],
)
def test_charger_acceptance_of_a_new_password(payload: dict[str, Any], version: str, accepted: bool) -> None:
    assert rotation_accepted(payload, version) is accepted


# ---------------------------------------------------------------------------------------------------------------
# TLS


@pytest.fixture
def server_files(tmp_path: Path) -> tuple[str, str, str]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key, root = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    root.write_bytes(ca.cert_pem.bytes())
    return str(cert), str(key), str(root)


def test_contexts_refuse_below_tls12_and_use_the_ocpp_suites(server_files: tuple[str, str, str]) -> None:
    cert, key, root = server_files
    s = server_context(cert, key, client_ca=root)
    assert s.minimum_version == ssl.TLSVersion.TLSv1_2 and s.verify_mode == ssl.CERT_OPTIONAL
    tls12 = {c["name"] for c in s.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == set(OCPP_TLS12_CIPHERS.split(":"))
    assert server_context(cert, key, client_ca=root, require_client_cert=True).verify_mode == ssl.CERT_REQUIRED
    c = client_context(ca=root)
    assert c.verify_mode == ssl.CERT_REQUIRED and c.check_hostname and c.minimum_version == ssl.TLSVersion.TLSv1_2
    off = client_context(verify=False)
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname
    assert server_context(cert, key, min_version="1.3").minimum_version == ssl.TLSVersion.TLSv1_3


def test_tls_failures_get_bounded_labels() -> None:
    expired = ssl.SSLCertVerificationError(1, "certificate verify failed")
    expired.verify_code = 10
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_code = 20
    version = ssl.SSLError(1, "x")
    version.reason = "UNSUPPORTED_PROTOCOL"
    assert tls_failure(expired) == "expired_cert"
    assert tls_failure(untrusted) == "untrusted_cert"
    assert tls_failure(version) == "protocol_version"
    assert tls_failure(TimeoutError()) == "timeout"
    assert tls_failure(ConnectionResetError()) == "error"
    assert tls_failure(HandshakeAbandoned("closed while it waited")) == "abandoned"


def test_401_carries_the_basic_challenge() -> None:
    raw = http_error(401, "Basic authentication required", {"WWW-Authenticate": 'Basic realm="ocpp"'})
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 401 Unauthorized") and 'WWW-Authenticate: Basic realm="ocpp"' in head


# ---------------------------------------------------------------------------------------------------------------
# config


def test_listen_may_be_a_list_of_listeners_with_their_own_profiles() -> None:
    raw = {
        **MINIMAL,
        "listen": [
            {"name": "legacy", "port": 9000, "security_profile": 1},
            {"port": 9443, "security_profile": 3, "tls": {"cert": "c.pem", "key": "k.pem", "client_ca": "ca.pem"}},
        ],
    }
    c = parse_config(raw, env={})
    assert [(x.name, x.port, x.security_profile) for x in c.all_listeners()] == [
        ("legacy", 9000, 1),
        ("listen[1]", 9443, 3),
    ]
    assert c.listen.name == "legacy" and c.listeners[1].tls is not None


def test_single_listen_mapping_stays_valid() -> None:
    c = parse_config({**MINIMAL, "listen": {"port": 9100}}, env={})
    assert c.all_listeners() == (c.listen,) and c.listen.port == 9100 and c.listen.security_profile == 0


def test_security_problems_are_reported_with_their_yaml_paths() -> None:
    raw = {
        "listen": [{"security_profile": 2}, {"security_profile": 3, "tls": {"cert": "c", "key": "k"}}],
        "admin": {"host": "0.0.0.0"},
        "backends": {
            "a": {"url": "ws://csms/ocpp", "security_profile": 2},
            "b": {"url": "wss://csms/ocpp", "security_profile": 3},
            "c": {"url": "wss://csms/ocpp", "security_profile": 0, "auth": {"password_from": "store"}},
            "d": {"url": "wss://x/o", "security_profile": 1, "auth": {"password_from": "template"}},
            "e": {"url": "wss://x/o", "security_profile": 1, "auth": {"password_rotation": "ignore"}},
        },
        "routes": [{"match": "*", "primary": "a", "security_profile": 4, "allowlist": "CP-1"}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    paths = {p for p, _ in info.value.problems}
    assert {
        "listen[0].security_profile",
        "listen[1].tls.client_ca",
        "admin.token",
        "backends.a.url",
        "backends.b.tls",
        "backends.c.auth",
        "backends.d.auth.password_template",
        "backends.e.auth.password_rotation",
        "routes[0].security_profile",
        "routes[0].allowlist",
    } <= paths, info.value.problems


def test_admin_token_is_optional_on_loopback_only() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        assert parse_config({**MINIMAL, "admin": {"host": host}}, env={}).admin.token is None
    assert parse_config({**MINIMAL, "admin": {"host": "0.0.0.0", "token": "t"}}, env={}).admin.token == "t"


# ---------------------------------------------------------------------------------------------------------------
# check-config


def write_config(tmp_path: Path, listen: dict[str, Any], backend_tls: dict[str, Any] | None = None) -> str:
    import yaml

    b: dict[str, Any] = {"url": "wss://127.0.0.1:9100/ocpp"}
    if backend_tls:
        b["tls"] = backend_tls
    doc = {"listen": listen, "backends": {"a": b}, "routes": [{"match": "*", "primary": "a"}]}
    p = tmp_path / "gw.yaml"
    p.write_text(yaml.safe_dump(doc))
    return str(p)


def issue(tmp_path: Path, name: str, days: float, ca: trustme.CA | None = None) -> tuple[str, str]:
    ca = ca or trustme.CA()
    now = dt.datetime.now(dt.UTC)
    leaf = ca.issue_cert("localhost", not_before=now - dt.timedelta(days=2), not_after=now + dt.timedelta(days=days))
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return str(cert), str(key)


def test_check_config_accepts_good_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = issue(tmp_path, "gw", 365)
    path = write_config(tmp_path, {"security_profile": 2, "tls": {"cert": cert, "key": key}})
    assert main(["check-config", path]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_config_warns_about_certificates_expiring_within_30_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = issue(tmp_path, "gw", 10)
    path = write_config(tmp_path, {"security_profile": 2, "tls": {"cert": cert, "key": key}})
    assert main(["check-config", path]) == 0
    err = capsys.readouterr().err
    assert "warning: listen.tls.cert" in err and "expires in" in err


def test_check_config_refuses_missing_files_mismatched_keys_and_expired_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, _ = issue(tmp_path, "gw", 365)
    _, other_key = issue(tmp_path, "other", 365)
    path = write_config(
        tmp_path,
        {"security_profile": 3, "tls": {"cert": cert, "key": other_key, "client_ca": str(tmp_path / "nope.pem")}},
        {"verify": False},
    )
    assert main(["check-config", path]) == 2
    err = capsys.readouterr().err
    assert "listen.tls.cert: private key" in err and "does not match" in err
    assert "listen.tls.client_ca: no such file" in err
    assert "warning: backends.a.tls.verify" in err

    old_cert, old_key = issue(tmp_path, "old", -1)
    path = write_config(tmp_path, {"security_profile": 2, "tls": {"cert": old_cert, "key": old_key}})
    assert main(["check-config", path]) == 2
    assert "expired" in capsys.readouterr().err


def test_check_config_refuses_a_chain_in_the_wrong_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = trustme.CA()
    leaf = root.create_child_ca().issue_cert("localhost")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    leaf_pem, intermediate_pem = (b.bytes() for b in leaf.cert_chain_pems)
    cert.write_bytes(leaf_pem + root.cert_pem.bytes())  # the intermediate is missing: leaf then root
    key.write_bytes(leaf.private_key_pem.bytes())
    path = write_config(tmp_path, {"security_profile": 2, "tls": {"cert": str(cert), "key": str(key)}})
    assert main(["check-config", path]) == 2
    assert "chain broken" in capsys.readouterr().err
    cert.write_bytes(leaf_pem + intermediate_pem)
    assert main(["check-config", path]) == 0


@pytest.mark.parametrize("profile", [1, 2, 3])
def test_example_configs_for_each_profile_are_valid(profile: int) -> None:
    from gateway.config import load_config

    root = Path(__file__).resolve().parents[2]
    c = load_config(str(root / f"config/examples/security-profile-{profile}.yaml"), env={"OCPPGW_ADMIN_TOKEN": "t"})
    assert max(x.security_profile for x in c.all_listeners()) == profile
