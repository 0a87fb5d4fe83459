"""The real tools diagrams are checked with: Mermaid's parser and renderer and bpmn-js's
importer, both in Debian's Chromium through Playwright, and the OMG BPMN 2.0 schemas.

The JavaScript tools and the XSDs come from npm, pinned in ``node/package-lock.json``
(bpmn-moddle ships the OMG schema files): the first test that needs them runs ``npm ci``
when ``node/node_modules`` is missing. Where npm, Playwright or Chromium is missing, the
tests skip with the reason locally and fail under CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import missing_service

if TYPE_CHECKING:
    import xmlschema
    from playwright.sync_api import Browser, Page

NODE = Path(__file__).parent / "node"
MODULES = NODE / "node_modules"
XSD = MODULES / "bpmn-moddle" / "resources" / "bpmn" / "xsd" / "BPMN20.xsd"
MERMAID_JS = MODULES / "mermaid" / "dist" / "mermaid.min.js"
BPMN_JS = MODULES / "bpmn-js" / "dist" / "bpmn-viewer.production.min.js"
CHROMIUM = os.environ.get("SAGALINE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """``node/node_modules``, installed from the lock file on first use."""
    if not (MODULES / ".package-lock.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            missing_service("npm is not installed (apt-get install npm); the diagram tests need it")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            missing_service(f"npm ci in {NODE} failed: {done.stderr[-2000:]}")
    return MODULES


@pytest.fixture(scope="session")
def bpmn_schema(node_modules: Path) -> xmlschema.XMLSchema:
    """The OMG BPMN 2.0 schema (with BPMNDI, DC and DI, which it imports)."""
    try:
        import xmlschema
    except ImportError:
        missing_service("xmlschema is not installed: pip install -e '.[dev]'")
    return xmlschema.XMLSchema(str(XSD))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, per module: Playwright's sync API runs an event loop in this thread, so
    it must be gone before a later module's asyncio tests start."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("Playwright is not installed: pip install -e '.[dev]'")
    if not Path(CHROMIUM).exists():
        missing_service(f"Chromium is not at {CHROMIUM}: apt-get install chromium")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
    except Exception as exc:
        playwright.stop()
        missing_service(f"Chromium at {CHROMIUM} cannot start: {exc}")
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()


class MermaidTool:
    """Mermaid as a browser runs it: ``parse`` is its grammar, ``render`` its drawing."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.count = 0

    def check(self, text: str) -> str:
        """Parse and render ``text``; the rendered SVG, or AssertionError with Mermaid's
        message."""
        self.count += 1
        result: dict[str, Any] = self.page.evaluate(
            """async ([text, id]) => {
                try {
                    await mermaid.parse(text);
                    const { svg } = await mermaid.render(id, text);
                    return { svg };
                } catch (e) { return { error: String(e && e.message || e) }; }
            }""",
            [text, f"diagram{self.count}"],
        )
        assert "error" not in result, f"Mermaid rejected the diagram: {result['error']}\n{text}"
        return str(result["svg"])


class BpmnTool:
    """bpmn-js's viewer: ``load`` imports a document as the modeler would."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def load(self, xml: str) -> dict[str, Any]:
        """Import ``xml``: its warnings, and the ids of the elements drawn."""
        result: dict[str, Any] = self.page.evaluate(
            """async (xml) => {
                const viewer = new BpmnJS({ container: '#canvas' });
                try {
                    const { warnings } = await viewer.importXML(xml);
                    const ids = viewer.get('elementRegistry').getAll().map((e) => e.id);
                    return { warnings: warnings.map((w) => w.message), ids };
                } catch (e) {
                    const warnings = (e.warnings || []).map((w) => w.message);
                    return { error: String(e && e.message || e), warnings };
                } finally { viewer.destroy(); }
            }""",
            xml,
        )
        assert "error" not in result, f"bpmn-js could not import: {result}"
        return result

    def screenshot(self, xml: str, name: str) -> Path:
        """Draw ``xml`` and keep a screenshot as a test artifact, to look at."""
        self.page.evaluate(
            """async (xml) => {
                window.shown && window.shown.destroy();
                window.shown = new BpmnJS({ container: '#canvas' });
                await window.shown.importXML(xml);
                window.shown.get('canvas').zoom('fit-viewport');
            }""",
            xml,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture(scope="module")
def mermaid_tool(browser: Browser, node_modules: Path) -> Iterator[MermaidTool]:
    page = browser.new_page()
    page.set_content("<!doctype html><html><body></body></html>")
    page.add_script_tag(path=str(MERMAID_JS))
    page.evaluate("mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' })")
    yield MermaidTool(page)
    page.close()


@pytest.fixture(scope="module")
def bpmn_tool(browser: Browser, node_modules: Path) -> Iterator[BpmnTool]:
    page = browser.new_page(viewport={"width": 1400, "height": 700})
    page.set_content(
        "<!doctype html><html><body style='margin:0'>"
        "<div id='canvas' style='width:1400px;height:700px'></div></body></html>"
    )
    page.add_style_tag(path=str(node_modules / "bpmn-js" / "dist" / "assets" / "bpmn-js.css"))
    page.add_style_tag(path=str(node_modules / "bpmn-js" / "dist" / "assets" / "diagram-js.css"))
    page.add_script_tag(path=str(BPMN_JS))
    yield BpmnTool(page)
    page.close()
