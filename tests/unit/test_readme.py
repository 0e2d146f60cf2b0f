"""README.md stays true: the translation policy table is the code's, and the two top commands exist."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.translate.v16_to_v201 import POLICY

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_policy_table_matches_the_translator() -> None:
    for action, policy in POLICY.items():
        assert f"| {action} | {policy.replace('|', '/')} |" in README, action


def test_readme_top_commands_exist_and_ci_runs_the_test_command() -> None:
    head = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "scripts/demo.sh" in head and "scripts/test.sh" in head
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert os.access(ROOT / script, os.X_OK)
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
