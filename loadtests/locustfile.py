"""Load tests with Locust: the user classes live in ``loadtests/scenarios/``; this exports them.

    ME_LOCUST_KEYS=key1,key2 ME_LOCUST_SYMBOL=BTC-USD \\
        locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 60s \\
        --host http://127.0.0.1:8000 --csv out

Configuration and thresholds (the exit code) are described in :mod:`loadtests.scenarios.trader`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Locust puts this file's folder on the path, not the repository's root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from loadtests.scenarios.trader import Trader  # noqa: E402

__all__ = ["Trader"]
