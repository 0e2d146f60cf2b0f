"""README.md stays true: the translation policy tables are the code's, and the two top commands exist."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.translate import v21_to_v201, v201_to_v16
from gateway.translate.v16_to_v201 import POLICY
from gateway.translate.v21_v201 import rules
from gateway.translate.v201_v16.charger_calls import CHARGER_POLICY
from gateway.translate.v201_v16.csms_calls import CSMS_POLICY

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _row(action: str, policy: str) -> str:
    return f"| {action} | {policy.replace('|', '/')} |"


def _table(header: str, second: str = "policy") -> list[str]:
    """The rows of the README table whose header row is ``| header | second |`` (the actions' rows only)."""
    lines = README.splitlines()
    start = lines.index(f"| {header} | {second} |") + 2  # header and |---|---|
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("| *"):  # *unknown action*, *action of the wrong direction*
            rows.append(line)
    return rows


def test_readme_policy_table_matches_the_translator() -> None:
    # set-up A: 1.6 charger, 2.0.1 CSMS (DataTransfer has one entry, shown in both tables)
    for action, policy in POLICY.items():
        assert _row(action, policy) in README, action
    # set-up B: 2.0.1 charger, 1.6 CSMS; DataTransfer is in both directions' dicts, with a policy each, so each
    # table is checked against its own dict, row for row and in order
    assert {**CHARGER_POLICY, **CSMS_POLICY} == v201_to_v16.POLICY
    assert _table("charger → CSMS (2.0.1 action)") == [_row(a, p) for a, p in CHARGER_POLICY.items()]
    assert _table("CSMS → charger (1.6 action)") == [_row(a, p) for a, p in CSMS_POLICY.items()]


def test_readme_set_up_c_tables_are_the_translators_and_the_generated_field_table() -> None:
    # set-up C: 2.1 charger, 2.0.1 CSMS; the fields and values tables come from the generated table and the rules
    assert {**v21_to_v201.CHARGER_POLICY, **v21_to_v201.CSMS_POLICY} == v21_to_v201.POLICY
    assert _table("2.1 charger → CSMS (2.1 action)") == [_row(a, p) for a, p in v21_to_v201.CHARGER_POLICY.items()]
    csms = [_row(a, p) for a, p in v21_to_v201.CSMS_POLICY.items() if not a.startswith("*")]
    assert _table("CSMS → 2.1 charger (2.0.1 action)") == csms
    fields = _table("message (charger → CSMS)", "fields 2.1 added, dropped")
    assert fields == [_row(m, f) for m, f in rules.field_rows()]
    assert "| TransactionEvent (request) | costDetails, preconditioningStatus, evseSleep; transactionInfo:" in README
    values = _table("message (charger → CSMS)", "2.1 values: mapped, or what is dropped")
    assert values == [_row(m, v) for m, v in rules.value_rows()]


def test_readme_top_commands_exist_and_ci_runs_the_test_command() -> None:
    head = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "scripts/demo.sh" in head and "scripts/test.sh" in head
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert os.access(ROOT / script, os.X_OK)
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
