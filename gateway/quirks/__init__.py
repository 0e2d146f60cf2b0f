"""Quirk profiles of non-conforming chargers: declarative repairs, checked against the official schemas, and the
compliance report. Pure (no I/O but reading profile files): the repair engine that applies them is
:mod:`gateway.core.repair`, the session calls it through its optional hook, the app layer chooses the profile."""

from __future__ import annotations

from gateway.quirks.profile import ComplianceConfig, Match, Profile, QuirksConfig, Rule, parse_compliance, parse_quirks
from gateway.quirks.select import Identity, choose, identity_of

__all__ = [
    "ComplianceConfig",
    "Identity",
    "Match",
    "Profile",
    "QuirksConfig",
    "Rule",
    "choose",
    "identity_of",
    "parse_compliance",
    "parse_quirks",
]
