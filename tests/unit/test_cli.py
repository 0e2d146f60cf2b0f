"""The command line: ``ocpp-gateway id-alias`` prints the translator's own alias for a long idToken."""

from __future__ import annotations

import pytest

from gateway.ops.cli import main
from gateway.translate.v201_v16.context import id_alias

LONG_TOKEN = "0123456789ABCDEF0123456789ABCDEF"  # 32 characters: over the 20 of a 1.6 idTag


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        ([LONG_TOKEN], "ISO14443"),
        ([LONG_TOKEN, "--type", "eMAID"], "eMAID"),
        ([LONG_TOKEN, "eMAID"], "eMAID"),
    ],
)
def test_id_alias_prints_the_translators_alias(argv: list[str], kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["id-alias", *argv]) == 0
    out = capsys.readouterr().out.strip()
    assert out == id_alias(LONG_TOKEN, kind)
    assert len(out) == 20 and out.startswith("#")


def test_id_alias_depends_on_the_type_and_refuses_unknown_types(capsys: pytest.CaptureFixture[str]) -> None:
    main(["id-alias", LONG_TOKEN])
    main(["id-alias", LONG_TOKEN, "--type", "eMAID"])
    default, emaid = capsys.readouterr().out.split()
    assert default != emaid
    with pytest.raises(SystemExit) as info:
        main(["id-alias", LONG_TOKEN, "--type", "Bogus"])
    assert info.value.code == 2
    assert main(["id-alias", LONG_TOKEN, "Local", "--type", "eMAID"]) == 2
