"""Diagrams of every workflow: Mermaid, BPMN 2.0 and SVG, from one graph model.

Build a :class:`Graph` — :func:`workflow_graph` for a Python workflow (its declared steps
merged with the paths its runs took), :func:`asl_graph` for an Amazon States Language
machine — then draw it: :func:`mermaid` (text for READMEs and wikis), :func:`bpmn` (BPMN
2.0 XML with diagram interchange, for bpmn-js and Camunda Modeler), :func:`svg` (drawn
here, with a run's :func:`outcomes_of` overlaid, for the web UI).

A layer above the engine: it reads the registry and step records, and never runs a step.
"""

from sagaline.diagrams.asl import asl_graph
from sagaline.diagrams.bpmn_xml import bpmn
from sagaline.diagrams.drawing import svg
from sagaline.diagrams.flowchart import mermaid
from sagaline.diagrams.graph import Edge, EdgeKind, Graph, Node, NodeKind
from sagaline.diagrams.outcomes import OUTCOMES, Outcome, outcomes_of
from sagaline.diagrams.workflows import declared_steps, workflow_graph

__all__ = [
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
    "outcomes_of",
    "svg",
    "workflow_graph",
]
