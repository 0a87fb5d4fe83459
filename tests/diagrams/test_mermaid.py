"""Mermaid output, parsed and rendered by the real Mermaid in Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagaline.demo.order import order_saga
from sagaline.diagrams import mermaid, workflow_graph
from tests.diagrams import flows
from tests.diagrams.conftest import MermaidTool
from tests.diagrams.graphs import all_graphs

DOC = Path(__file__).parents[2] / "docs" / "order-saga.mmd"


@pytest.mark.parametrize("name", sorted(all_graphs()))
def test_mermaid_parses_and_renders_every_graph(mermaid_tool: MermaidTool, name: str) -> None:
    mermaid_tool.check(mermaid(all_graphs()[name]))


def test_names_are_shown_literally_never_as_syntax_or_markup(mermaid_tool: MermaidTool) -> None:
    text = mermaid(workflow_graph(flows.branching))
    assert flows.ODD not in text  # written with entity codes only
    rendered = mermaid_tool.check(text)
    assert "<b>" not in rendered  # shown as text, not made bold
    assert "&lt;b&gt;|[x]{y}&lt;/b&gt;" in rendered


def test_compensations_are_dashed_back_edges_and_the_pivot_is_marked() -> None:
    text = mermaid(workflow_graph(order_saga))
    assert '-.->|"undo"|' in text
    assert "class n7 pivot" in text and "(pivot)" in text
    assert text.count("-.->") == 6  # three undo edges, three unwinding back-edges


def test_the_readme_diagram_is_the_order_saga_as_drawn_now() -> None:
    """``docs/order-saga.mmd`` is generated: ``sagaline diagram demo.order_saga --import
    sagaline.demo.order --format mermaid > docs/order-saga.mmd``."""
    assert DOC.read_text("utf-8") == mermaid(workflow_graph(order_saga))
