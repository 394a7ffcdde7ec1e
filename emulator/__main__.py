"""`python -m emulator --port N --seed S --scenario F`."""

from __future__ import annotations

import argparse

from emulator.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="Local Google Calendar API v3 emulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", default=None, help="JSON scenario file to preload")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.seed, args.scenario)


if __name__ == "__main__":
    main()
