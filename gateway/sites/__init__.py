"""Local load management, the pure half: site config, allocation, observations, profiles, events, meter readings.

Nothing here does I/O or reads a clock: the controller (:mod:`gateway.app.sites`) feeds it and carries out what it
computes. See README "Local load management".
"""

from __future__ import annotations

from gateway.sites.config import ChargerSpec, SiteConfig, parse_sites, site_of

__all__ = ["ChargerSpec", "SiteConfig", "parse_sites", "site_of"]
