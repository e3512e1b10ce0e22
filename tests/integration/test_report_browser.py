"""The HTML run report in a real browser (headless Chromium, Debian's ``chromium``; scripts/test-servers.sh
installs it where missing): it loads without a console message (it has no script, so any message is an error or
a blocked load) and every plot renders with a size and drawn shapes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest
from report_figures import sample_figures

from enrich.report import CSP, render_report

if TYPE_CHECKING:
    from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (scripts/test-servers.sh installs Debian's chromium)"
)

PROBE = """<script>
const plots = [...document.querySelectorAll("svg.plot")].map((svg) => {
  const box = svg.getBoundingClientRect();
  const drawn = [...svg.querySelectorAll("polyline, rect, circle")].filter((shape) => {
    const b = shape.getBBox();
    return b.width > 0 || b.height > 0;
  }).length;
  return {width: box.width, height: box.height, drawn: drawn};
});
document.body.setAttribute("data-probe", JSON.stringify(plots));
</script>"""
"""Measures what the browser laid out and drew for each plot, and leaves it in the DOM for ``--dump-dom``."""


def load(path: Path) -> tuple[str, list[str]]:
    """The page's DOM after load, and the console messages Chromium logged."""
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr",
            "--v=0", f"--user-data-dir={path.parent / 'chromium-profile'}", "--dump-dom", path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def test_report_loads_without_console_messages(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_report(sample_figures(), title="Browser check"), encoding="utf-8")
    dom, console = load(page)
    assert console == []
    assert "<h1>Browser check</h1>" in dom


def test_a_blocked_load_would_show_in_the_console(tmp_path: Path) -> None:
    """The check above can fail: a report that tried to load anything would log a policy violation."""
    page = tmp_path / "report.html"
    html = render_report(sample_figures()).replace("</body>", "<img src='http://127.0.0.1:9/x.png'></body>")
    page.write_text(html, encoding="utf-8")
    _, console = load(page)
    assert any("Content Security Policy" in line for line in console)


def test_every_plot_renders(tmp_path: Path) -> None:
    html = render_report(sample_figures())
    expected = html.count("<svg")
    # the probe is the test's own script: allowed here only, by widening the report's policy for it
    html = html.replace(CSP, CSP + "; script-src 'unsafe-inline'").replace("</body>", PROBE + "</body>")
    page = tmp_path / "probed.html"
    page.write_text(html, encoding="utf-8")
    dom, console = load(page)
    assert console == []
    match = re.search(r'data-probe="([^"]*)"', dom)
    assert match is not None, "the probe did not run"
    plots = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(plots) == expected == 5
    for plot in plots:
        assert plot["width"] > 100
        assert plot["height"] > 20
        assert plot["drawn"] > 0
