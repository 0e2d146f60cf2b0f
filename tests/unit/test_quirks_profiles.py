"""Quirk profiles as the config reads them: every problem at its YAML path (``check-config``), the shipped
profiles valid and installed with the package, and which profile a charger gets."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from gateway.quirks import Identity, choose, identity_of, parse_quirks
from gateway.quirks.profile import shipped_names
from gateway.quirks.select import version_key

ROOT = Path(__file__).resolve().parents[2]


def rule(**kw: Any) -> dict[str, Any]:
    return {"action": "StatusNotification", "direction": "from_charger", "message": "call", "path": "$.status",
            "repair": "enum_case", **kw}  # fmt: skip


def problems(*rules: dict[str, Any], ocpp: str = "1.6", match: Any = None) -> list[tuple[str, str]]:
    profile = {"name": "p", "ocpp": ocpp, "match": {"vendor": "ACME"} if match is None else match, "rules": list(rules)}
    return parse_quirks({"profiles": [profile]})[1]


P = "quirks.profiles[0]"


@pytest.mark.parametrize(
    ("bad", "where", "says"),
    [
        (rule(action="NoSuchAction"), f"{P}.rules[0].action", "OCPP 1.6 has no request schema for 'NoSuchAction'"),
        (rule(path="$.nope.x"), f"{P}.rules[0].path", "the schema has no field 'nope' at $"),
        (rule(path="status"), f"{P}.rules[0].path", "a path starts with $"),
        (rule(path="$.status[*].x"), f"{P}.rules[0].path", "$.status is not an array in the schema"),
        (rule(path="$.status[*]"), f"{P}.rules[0].path", "ends in a field name"),
        (rule(path="$.connectorId"), f"{P}.rules[0].repair", "enum_case needs an enumeration of strings"),
        (rule(path="$.status", repair="truncate"), f"{P}.rules[0].repair", "truncate needs a string with a maxLength"),
        (rule(path="$.info", repair="alias"), f"{P}.rules[0].repair", "alias needs an idTag or idToken"),
        (rule(path="$.status", repair="timestamp"), f"{P}.rules[0].repair", "timestamp needs a date-time"),
        (rule(path="$.connectorId", repair="drop"), f"{P}.rules[0].repair", "'connectorId' is required"),
        (rule(path="$.status", repair="drop", element=True), f"{P}.rules[0].element", "goes through no array"),
        (rule(repair="map", values={"Error": "Broken"}), f"{P}.rules[0].values.Error", "'Broken' is not valid"),
        (rule(repair="map"), f"{P}.rules[0].values", "is required for repair map"),
        (rule(repair="default", value=3), f"{P}.rules[0].value", "3 is not valid at $.status"),
        (rule(repair="rename", to="nope"), f"{P}.rules[0].to", "must be a field of the object"),
        (rule(repair="enum_case", to="x"), f"{P}.rules[0].to", "is not an option of repair enum_case"),
        (rule(repair="fix_it"), f"{P}.rules[0].repair", "must be one of enum_case, coerce"),
        (rule(direction="up"), f"{P}.rules[0].direction", "must be from_charger or from_backend"),
        (rule(message="answer"), f"{P}.rules[0].message", "must be call or callresult"),
        (rule(bogus=1), f"{P}.rules[0].bogus", "unknown key"),
        (rule(path="$.timestamp", repair="timestamp", zone="Mars/Olympus"), f"{P}.rules[0].zone", "is not Z"),
        (
            rule(action="StartTransaction", path="$.timestamp", repair="timestamp", impossible="drop"),
            f"{P}.rules[0].impossible",
            "'timestamp' is required",
        ),
    ],
)
def test_a_bad_rule_is_named_by_its_yaml_path(bad: dict[str, Any], where: str, says: str) -> None:
    found = problems(bad)
    assert any(w == where and says in m for w, m in found), found


def test_profile_level_problems_are_named_too() -> None:
    assert (f"{P}.ocpp", "must be one of 1.6, 2.0.1, 2.1 (OCPP 2.0 has no schemas in the gateway); got '2.0'") in (
        problems(rule(), ocpp="2.0")
    )
    assert any(w == f"{P}.match.firmware" for w, _ in problems(rule(), match={"firmware": ">=1.2, ~2"}))
    assert any(w == f"{P}.match" for w, _ in problems(rule(), match={}))
    dup = parse_quirks({"profiles": [{"name": "p", "ocpp": "1.6", "match": {"vendor": "A"}, "rules": [rule()]}] * 2})
    assert any("used twice" in m for _, m in dup[1])


def test_the_config_reports_quirk_problems_with_the_rest() -> None:
    raw = {"backends": {"b": {"url": "ws://x/ocpp"}}, "routes": [{"match": "*", "primary": "b"}],
           "quirks": {"profiles": [{"name": "p", "ocpp": "1.6", "match": {"vendor": "A"},
                                    "rules": [rule(path="$.nope")]}], "shipped": ["no-such"]},
           "compliance": {"sample_rate": 2}}  # fmt: skip
    with pytest.raises(ConfigError) as e:
        parse_config(raw, env={})
    where = [w for w, _ in e.value.problems]
    assert where == [f"{P}.rules[0].path", "quirks.shipped[0]", "compliance.sample_rate"]


def test_profile_files_are_read_and_named_by_file(tmp_path: Path) -> None:
    good = tmp_path / "acme.yaml"
    good.write_text("ocpp: '1.6'\nmatch: {vendor: ACME}\nrules:\n  - {action: StatusNotification, direction: "
                    "from_charger, message: call, path: $.status, repair: enum_case}\n")  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text("ocpp: '1.6'\nmatch: {vendor: ACME}\nrules:\n  - {action: Heartbeat, direction: from_charger, "
                   "message: call, path: $.x, repair: enum_case}\n")  # fmt: skip
    config, found = parse_quirks({"files": [str(good)]})
    assert found == [] and [p.name for p in config.profiles] == ["acme"]
    _, found = parse_quirks({"files": [str(tmp_path / "*.yaml")]})
    assert [w for w, _ in found] == [f"{bad}.rules[0].path"]
    _, found = parse_quirks({"files": [str(tmp_path / "none-*.yaml")]})
    assert [w for w, _ in found] == ["quirks.files[0]"]


def test_every_shipped_profile_is_valid_and_cites_its_report() -> None:
    config, found = parse_quirks({"shipped": "all"})
    assert found == []
    assert [p.name for p in config.profiles] == shipped_names() and len(shipped_names()) >= 3
    for name in shipped_names():
        text = (ROOT / "gateway" / "quirks" / "profiles" / f"{name}.yaml").read_text()
        assert "https://github.com/" in text, f"{name}: cite the public report in a comment"


def test_shipped_profiles_are_package_data() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "profiles/*.yaml" in meta["tool"]["setuptools"]["package-data"]["gateway.quirks"]


@pytest.mark.slow
def test_a_built_wheel_holds_the_shipped_profiles(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
         str(ROOT)], capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {done.stderr[-300:]}")
    import zipfile

    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in shipped_names():
        assert f"gateway/quirks/profiles/{name}.yaml" in names


def test_the_identity_is_read_from_either_version_of_boot() -> None:
    assert identity_of({"chargePointVendor": "ACME", "chargePointModel": "X1", "firmwareVersion": "1.2"}) == (
        Identity("ACME", "X1", "1.2")
    )
    assert identity_of({"reason": "PowerUp", "chargingStation": {"vendorName": "ACME", "model": "X2"}}) == (
        Identity("ACME", "X2", "")
    )
    assert identity_of(None) is None and identity_of({"reason": "PowerUp"}) is None


def test_firmware_versions_compare_by_their_parts() -> None:
    assert version_key("1.10") > version_key("1.9")
    assert version_key("1.2") == version_key("1.2.0")
    assert version_key("3.4.0.9") > version_key("3.4.0.2")


def chosen(match: dict[str, Any], cid: str = "CP-1", identity: Identity | None = None, version: str = "1.6") -> bool:
    config, found = parse_quirks({"profiles": [{"name": "p", "ocpp": "1.6", "match": match, "rules": [rule()]}]})
    assert found == []
    return choose(config.profiles, cid, version, identity) is not None


def test_a_profile_is_chosen_by_what_the_charger_says_and_its_id() -> None:
    acme = Identity("ACME Corp", "X1", "1.3.7")
    assert chosen({"vendor": "acme*"}, identity=acme)  # globs on vendor and model ignore case
    assert not chosen({"vendor": "acme*"}, identity=None)  # no boot known yet: vendor cannot match
    assert not chosen({"vendor": "acme*"}, identity=acme, version="2.0.1")  # a profile is for one version
    assert chosen({"charger_id": "CP-*"}) and not chosen({"charger_id": "cp-*"})  # ids: case-sensitive, as routes
    assert chosen({"vendor": "ACME*", "firmware": ">=1.2, <1.4"}, identity=acme)
    assert not chosen({"vendor": "ACME*", "firmware": ">=1.4"}, identity=acme)
    assert chosen({"firmware": "1.3.*"}, identity=acme)
    assert not chosen({"charger_id": "CP-*", "model": "X2"}, identity=acme)


def test_the_first_matching_profile_wins() -> None:
    config, _ = parse_quirks({"profiles": [
        {"name": "one", "ocpp": "1.6", "match": {"charger_id": "CP-*"}, "rules": [rule()]},
        {"name": "two", "ocpp": "1.6", "match": {"charger_id": "*"}, "rules": [rule()]},
    ]})  # fmt: skip
    picked = choose(config.profiles, "CP-1", "1.6", None)
    assert picked is not None and picked.name == "one"
    other = choose(config.profiles, "XX", "1.6", None)
    assert other is not None and other.name == "two"


def test_check_config_names_a_bad_rule_by_its_yaml_path(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(
        "backends: {csms: {url: 'ws://127.0.0.1:9100/ocpp'}}\nroutes: [{match: '*', primary: csms}]\n"
        "quirks:\n  profiles:\n    - name: acme\n      ocpp: '2.0.1'\n      match: {vendor: ACME}\n      rules:\n"
        "        - {action: StatusNotification, direction: from_charger, message: call, path: $.status,"
        " repair: enum_case}\n"
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(config)], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 2
    assert (
        "quirks.profiles[0].rules[0].path: the schema has no field 'status' there (StatusNotification request, "
        "OCPP 2.0.1; fields: connectorId, connectorStatus, customData, evseId, timestamp)" in done.stderr
    )
