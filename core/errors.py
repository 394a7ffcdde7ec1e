"""Errors that cross layers: raised below, handled above, named by both."""

from __future__ import annotations


class EnqueueError(RuntimeError):
    """The broker could not take the message."""
