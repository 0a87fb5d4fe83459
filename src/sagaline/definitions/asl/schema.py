"""What the spec allows where: fields per state type and query language, exclusive
pairs, Lambda ARNs, and which states a machine can reach. Data for ``validate``."""

from __future__ import annotations

import re
from typing import Any

COMMON = {"Type", "Comment", "QueryLanguage"}
FLOW = {"Next", "End"}
IO = {"InputPath", "OutputPath"}
HANDLED = {"Retry", "Catch"}
FIELDS: dict[str, set[str]] = {
    "Pass": FLOW | IO | {"ResultPath", "Parameters", "Result", "Assign", "Output"},
    "Task": FLOW
    | IO
    | HANDLED
    | {
        "Resource",
        "ResultPath",
        "Parameters",
        "ResultSelector",
        "TimeoutSeconds",
        "TimeoutSecondsPath",
        "HeartbeatSeconds",
        "HeartbeatSecondsPath",
        "Credentials",
        "Assign",
        "Arguments",
        "Output",
    },
    "Choice": IO | {"Choices", "Default", "Assign", "Output"},
    "Wait": FLOW
    | IO
    | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath", "Assign", "Output"},
    "Succeed": IO | {"Output"},
    "Fail": {"Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": FLOW
    | IO
    | HANDLED
    | {
        "Branches",
        "ResultPath",
        "Parameters",
        "ResultSelector",
        "Assign",
        "Arguments",
        "Output",
    },
    "Map": FLOW
    | IO
    | HANDLED
    | {
        "Iterator",
        "ItemProcessor",
        "ItemsPath",
        "Items",
        "ItemSelector",
        "Parameters",
        "ItemReader",
        "ItemBatcher",
        "ResultWriter",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ToleratedFailureCount",
        "ToleratedFailureCountPath",
        "ToleratedFailurePercentage",
        "ToleratedFailurePercentagePath",
        "Label",
        "ResultPath",
        "ResultSelector",
        "Assign",
        "Output",
    },
}
JSONPATH_ONLY = {
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "ItemsPath",
    "SecondsPath",
    "TimestampPath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "ErrorPath",
    "CausePath",
    "MaxConcurrencyPath",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentagePath",
    "Result",
}
JSONATA_ONLY = {"Arguments", "Output", "Items"}
EXCLUSIVE = [
    ("Error", "ErrorPath"),
    ("Cause", "CausePath"),
    ("TimeoutSeconds", "TimeoutSecondsPath"),
    ("HeartbeatSeconds", "HeartbeatSecondsPath"),
    ("Items", "ItemsPath"),
    ("MaxConcurrency", "MaxConcurrencyPath"),
    ("ToleratedFailureCount", "ToleratedFailureCountPath"),
    ("ToleratedFailurePercentage", "ToleratedFailurePercentagePath"),
    ("Iterator", "ItemProcessor"),
    ("ItemSelector", "Parameters"),
]
LAMBDA = re.compile(r"^arn:[^:]+:lambda:[^:]*:\d*:function:[A-Za-z0-9_-]+(:[A-Za-z0-9_$-]+)?$")


def reachable(start: str, states: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in states or not isinstance(states[name], dict):
            continue
        seen.add(name)
        state = states[name]
        targets = [state.get("Next"), state.get("Default")]
        targets += [r.get("Next") for r in state.get("Choices") or [] if isinstance(r, dict)]
        targets += [c.get("Next") for c in state.get("Catch") or [] if isinstance(c, dict)]
        todo.extend(t for t in targets if isinstance(t, str))
    return seen
