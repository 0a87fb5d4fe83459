"""Amazon States Language: state machines that run as durable sagaline workflows.

``load(definition, name=...)`` returns a workflow to start with ``engine.start``;
``validate(definition)`` lists what is wrong with a document, each problem with a JSON
pointer; ``execute`` runs a machine without the engine (a test, the conformance corpus),
through the same interpreter.
"""

try:
    import jsonata  # type: ignore[import-untyped]  # noqa: F401
    import jsonpath_ng  # noqa: F401
except ModuleNotFoundError as exc:  # an optional extra: say how to get it, not a traceback
    from sagaline.model.errors import SagalineError

    raise SagalineError(
        f"Amazon States Language support needs {exc.name!r}: reinstall sagaline "
        f"(pip install sagaline) to get its dependencies"
    ) from None

from sagaline.definitions.asl.durable import load
from sagaline.definitions.asl.errors import AslError, ExecutionFailed
from sagaline.definitions.asl.host import Host, PureHost, TaskRequest
from sagaline.definitions.asl.machine import Outcome, execute
from sagaline.definitions.asl.resources import register_resource, unregister_resource
from sagaline.definitions.asl.validate import Problem, validate

__all__ = [
    "AslError",
    "ExecutionFailed",
    "Host",
    "Outcome",
    "Problem",
    "PureHost",
    "TaskRequest",
    "execute",
    "load",
    "register_resource",
    "unregister_resource",
    "validate",
]
