"""core.metrics must load before prometheus_client (it turns on multiprocess mode)."""

import core.metrics  # noqa: F401
