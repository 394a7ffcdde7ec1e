"""calsync.metrics must load before prometheus_client (it turns on multiprocess mode)."""

import calsync.metrics  # noqa: F401
