"""``python -m gateway`` is ``ocpp-gateway``."""

from __future__ import annotations

import sys

from gateway.ops.cli import main

sys.exit(main())
