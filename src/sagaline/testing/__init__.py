"""Test kit for sagaline users and for sagaline itself."""

from sagaline.testing.clock import FakeClock
from sagaline.testing.crash import crash_test, record_effect
from sagaline.testing.crash_report import BoundaryResult, CrashReport
from sagaline.testing.faults import CrashingStore
from sagaline.testing.waits import wait_for_status

__all__ = [
    "BoundaryResult",
    "CrashReport",
    "CrashingStore",
    "FakeClock",
    "crash_test",
    "record_effect",
    "wait_for_status",
]
