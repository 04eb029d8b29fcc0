"""The read-only web dashboard of a running controller (``--ui-addr``)."""

from .server import Dashboard, check_address, start_dashboard

__all__ = ["Dashboard", "check_address", "start_dashboard"]
