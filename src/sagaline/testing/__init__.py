"""Test kit for sagaline users and for sagaline itself."""

from sagaline.testing.clock import FakeClock
from sagaline.testing.faults import CrashingStore

__all__ = ["CrashingStore", "FakeClock"]
