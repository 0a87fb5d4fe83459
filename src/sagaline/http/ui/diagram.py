"""A run drawn as its workflow: the steps in the order they ran, each coloured by its outcome,
with its compensation beside it (and that one's outcome), the pivot marked.

A workflow is Python code, so its steps are known only as a run reaches them: the drawing
comes from the run's step records, completed by the registry (a step's declared
compensation, drawn as not run yet). Server-side SVG, styled by classes from the UI's
stylesheet (the pages' CSP allows no inline style) and escaped like every other text.
:func:`run_diagram` is the one entry point, so ``sagaline.diagrams`` can replace it whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from sagaline.engine.registry import get_step
from sagaline.model.errors import SagalineError
from sagaline.model.records import StepRecord
from sagaline.model.status import StepKind, StepStatus

DRAWN = (StepKind.STEP, StepKind.CHILD, StepKind.SLEEP, StepKind.SIGNAL)
ROW, BOX_W, BOX_H, GAP_X, LEFT = 64, 250, 40, 70, 10
OUTCOME = {
    StepStatus.SUCCEEDED: "ok",
    StepStatus.FAILED: "failed",
    StepStatus.RUNNING: "running",
    StepStatus.WAITING: "waiting",
    StepStatus.SKIPPED: "skipped",
}
LABEL = {
    "ok": "succeeded",
    "failed": "failed",
    "running": "running",
    "waiting": "waiting",
    "skipped": "skipped by hand",
    "pending": "not run",
}


def declared_compensation(name: str) -> str | None:
    """The compensation the registry knows for a step, if this process imported it."""
    try:
        compensation = get_step(name).compensation
    except SagalineError:
        return None
    return None if compensation is None else compensation.name


def clip(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def box(x: int, y: int, name: str, outcome: str, extra: str = "", note: str = "") -> str:
    label = f"{name}: {LABEL[outcome]}" + (f" ({note})" if note else "")
    return (
        f'<g class="node {outcome}{extra}"><title>{escape(label)}</title>'
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
        f'<text x="{x + 10}" y="{y + 17}" class="name">{escape(clip(name))}</text>'
        f'<text x="{x + 10}" y="{y + 33}" class="outcome">'
        f"{escape(LABEL[outcome] + (f' · {note}' if note else ''))}</text></g>"
    )


def run_diagram(workflow: str, steps: Sequence[StepRecord]) -> str:
    """SVG markup (safe to embed as is) of ``workflow``'s run with these step records."""
    forward = [rec for rec in steps if rec.kind in DRAWN]
    undo = {
        rec.compensates_seq: rec
        for rec in steps
        if rec.kind is StepKind.COMPENSATION and rec.compensates_seq is not None
    }
    parts: list[str] = []
    for row, rec in enumerate(forward):
        y = 10 + row * ROW
        outcome = OUTCOME.get(rec.status, "pending")
        kind = "" if rec.kind is StepKind.STEP else rec.kind.value
        attempts = f"{rec.attempts} attempts" if rec.attempts > 1 else ""
        note = ", ".join(text for text in (kind, "pivot" if rec.pivot else "", attempts) if text)
        pivot = " pivot" if rec.pivot else ""
        parts.append(box(LEFT, y, rec.name, outcome, pivot, note))
        if row:
            parts.append(
                f'<line class="flow" x1="{LEFT + BOX_W // 2}" y1="{y - ROW + BOX_H}" '
                f'x2="{LEFT + BOX_W // 2}" y2="{y}" marker-end="url(#arrow)"/>'
            )
        comp = undo.get(rec.seq)
        name = comp.name if comp is not None else None
        if name is None and rec.compensable:
            name = declared_compensation(rec.name)
        if name is None:
            continue
        x = LEFT + BOX_W + GAP_X
        done = "pending" if comp is None else OUTCOME.get(comp.status, "pending")
        tries = f"{comp.attempts} attempts" if comp is not None and comp.attempts > 1 else ""
        parts.append(
            f'<line class="undo" x1="{LEFT + BOX_W}" y1="{y + BOX_H // 2}" '
            f'x2="{x}" y2="{y + BOX_H // 2}"/>'
        )
        parts.append(box(x, y, name, done, " compensation", tries))
    width = LEFT * 2 + BOX_W * 2 + GAP_X
    height = max(ROW, 20 + len(forward) * ROW - (ROW - BOX_H))
    title = f"workflow {workflow}: {len(forward)} steps"
    return Markup(
        f'<svg class="diagram" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"<title>{escape(title)}</title>"
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
        f"{''.join(parts)}</svg>"
    )
