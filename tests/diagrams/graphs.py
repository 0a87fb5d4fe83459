"""The graphs every format is checked on: a saga, a branch with odd names, an ASL machine."""

from __future__ import annotations

from sagaline.demo.order import order_saga
from sagaline.diagrams import Graph, asl_graph, workflow_graph
from tests.diagrams import flows


def all_graphs() -> dict[str, Graph]:
    return {
        "order-saga": workflow_graph(order_saga),
        "branching": workflow_graph(flows.branching),
        "asl-saga": asl_graph(flows.asl_saga()),
        "asl-odd": asl_graph(
            {
                "StartAt": flows.ODD,
                "States": {
                    flows.ODD: {"Type": "Pass", "Next": "tab\there\x07"},
                    "tab\there\x07": {"Type": "Succeed"},
                },
            },
            name="<script>alert(1)</script>",
        ),
    }
