"""Test kit for sagaline users and for sagaline itself."""

from sagaline.testing.clock import FakeClock
from sagaline.testing.faults import CrashingStore
from sagaline.testing.waits import wait_for_status

__all__ = ["CrashingStore", "FakeClock", "wait_for_status"]
