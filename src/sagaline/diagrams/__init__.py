"""Diagrams of every workflow: Mermaid, BPMN 2.0 and SVG, from one graph model.

Build a :class:`Graph` — :func:`workflow_graph` for a Python workflow (its declared steps
merged with the paths its runs took), :func:`run_graph` for one run of it (drawn even
where the workflow is not imported), :func:`asl_graph` for an Amazon States Language
machine — then draw it: :func:`mermaid` (text for READMEs and wikis), :func:`bpmn` (BPMN
2.0 XML with diagram interchange, for bpmn-js and Camunda Modeler), :func:`svg` (drawn
here, with a run's :func:`outcomes_of` and :func:`notes_of` overlaid, for the web UI).

A layer above the engine: it reads the registry and step records, and never runs a step.
"""

from sagaline.diagrams.asl import asl_graph
from sagaline.diagrams.bpmn_xml import bpmn
from sagaline.diagrams.drawing import svg
from sagaline.diagrams.flowchart import mermaid
from sagaline.diagrams.graph import Edge, EdgeKind, Graph, Node, NodeKind
from sagaline.diagrams.outcomes import LABELS, OUTCOMES, Outcome, notes_of, outcomes_of
from sagaline.diagrams.workflows import declared_steps, run_graph, workflow_graph

__all__ = [
    "LABELS",
    "OUTCOMES",
    "Edge",
    "EdgeKind",
    "Graph",
    "Node",
    "NodeKind",
    "Outcome",
    "asl_graph",
    "bpmn",
    "declared_steps",
    "mermaid",
    "notes_of",
    "outcomes_of",
    "run_graph",
    "svg",
    "workflow_graph",
]
