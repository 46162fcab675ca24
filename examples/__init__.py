"""Runnable examples of the platform; ``make demo`` runs the use cases in order.

A busy two-core machine can take more than Prefect's default 20 s to start the
temporary API server the examples use, so they allow two minutes.
"""

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
