"""report.html renders in headless Chromium: the summary and every chip image are there and decode."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT
from sohae_watch.cli.main import cli

CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).map(i => i.alt);
  const el = document.createElement('pre');
  el.id = 'probe';
  el.textContent = JSON.stringify({images: imgs.length, decoded: ok});
  document.body.appendChild(el);
});
</script></body>"""


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian package 'chromium'); .ci/run installs it",
)
def test_report_renders_in_chromium(samples: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli,
        [
            "diff",
            "2019-02-16",
            "2019-03-02",
            "--site",
            str(ROOT / "configs" / "sohae.yaml"),
            "--imagery",
            str(samples / "imagery"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    page = tmp_path / "probe.html"
    page.write_text((out / "report.html").read_text().replace("</body>", PROBE))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *flags,
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000
    if os.environ.get("SOHAE_SCREENSHOT"):  # to look at the page: SOHAE_SCREENSHOT=/tmp/report.png
        shutil.copy(shot, os.environ["SOHAE_SCREENSHOT"])
    for sentence in report["summary"]:
        assert html.escape(sentence, quote=False) in dom
    probe = json.loads(
        re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"')
    )
    # before / after / change per structure and per new-activity area, and the map
    n_chips = 3 * len(report["structures"]) + 3 * len(report["new_activity"]) + 1
    assert probe["images"] == n_chips
    assert len(probe["decoded"]) == n_chips
    for s in report["structures"]:
        for kind in ("before", "after", "change"):
            assert f"{s['name']} {kind}" in probe["decoded"]
    for n in range(len(report["new_activity"])):
        for kind in ("before", "after", "change"):
            assert f"new activity {n + 1} {kind}" in probe["decoded"]


def test_html_escapes_site_strings(tmp_path: Path) -> None:
    from sohae_watch.report import render_html

    report = {
        "site": {"id": "x", "name": "<script>alert(1)</script>"},
        "before": {"date": "2019-01-01", "sources": ["a<b>.tif"]},
        "after": {"date": "2019-01-02", "sources": ["c.tif"]},
        "coregistration": {
            "method": "m",
            "status": "ok",
            "reliability": 1.0,
            "shift_x_px": 0.0,
            "shift_y_px": 0.0,
        },
        "structures": [
            {
                "id": 's"1',
                "name": "<img src=x onerror=alert(1)>",
                "status": "unchanged",
                "event": None,
                "confidence": 0.9,
                "changed_fraction": 0.0,
                "observed_fraction": 1.0,
                "summary": "No change at <b>x</b>.",
                "evidence": {},
            }
        ],
        "change": {"areas": 0, "changed_fraction": 0.0, "not_observable_fraction": 0.0},
        "summary": ["No change at <b>x</b>."],
        "generator": "sohae-watch",
    }
    page = render_html(
        report,
        {
            's"1': {
                "before": "data:image/png;base64,",
                "after": "data:image/png;base64,",
                "change": "data:image/png;base64,",
            }
        },
    )
    assert "<script>" not in page and "<img src=x" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
