"""A local Google Calendar API v3 emulator (dev tool, demo and test double)."""

from emulator.control import EmulatorControl, EmulatorControlError
from emulator.server import EmulatorServer, serve

__all__ = ["EmulatorControl", "EmulatorControlError", "EmulatorServer", "serve"]
