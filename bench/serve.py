"""Serves the baseline or Greenlight with the very same uvicorn settings.

    python -m bench.serve baseline|greenlight PORT

Greenlight reads its configuration from the environment (GREENLIGHT_DATABASE_URL, ...)
like `greenlight serve` does; its migrations are already applied by the seeding step.
"""

from __future__ import annotations

import sys

import uvicorn

APPS = {
    "baseline": ("bench.baseline:app", False),
    "greenlight": ("greenlight.app:app_from_environment", True),
    "naive": ("bench.naive.app:app_from_environment", True),
}

# One worker, uvicorn's defaults (uvloop and httptools when installed), no access log:
# what `greenlight serve` does too.
UVICORN = {
    "host": "127.0.0.1",
    "workers": 1,
    "log_config": None,
    "access_log": False,
    "timeout_graceful_shutdown": 5,
}


def main(argv: list[str]) -> None:
    which, port = argv[0], int(argv[1])
    app, factory = APPS[which]
    uvicorn.run(app, factory=factory, port=port, **UVICORN)


if __name__ == "__main__":
    main(sys.argv[1:])
