"""Make the README's pictures of the report from the demo data: its first printed page and a county
map, as Chromium prints and draws them. Needs Debian's chromium and poppler-utils (pdftoppm):

    .venv/bin/python tools/readme_images.py

writes docs/report-page-1.png and docs/report-map.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BROWSER = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _run(*command: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}  # the demo's own settings
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=clean)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or shutil.which("pdftoppm") is None:
        raise SystemExit("needs chromium and pdftoppm: apt-get install chromium poppler-utils")
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _run(sys.executable, "-m", "outreach", "demo", "--data-dir", str(work / "demo"))
        report = work / "report.html"
        _run(
            *(sys.executable, "-m", "outreach", "report", "--db", str(work / "demo" / "outreach.duckdb")),
            *(
                "--out",
                str(report),
                "--lang",
                "en",
                "--organisation",
                "Office of the National Anti-Trafficking Coordinator",
            ),
        )
        profile = f"--user-data-dir={work / 'profile'}"
        pdf = work / "report.pdf"
        _run(chromium, *BROWSER, profile, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", report.as_uri())
        _run("pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(DOCS / "report-page-1"))

        html = report.read_text("utf-8")
        style = re.search(r"<style>.*?</style>", html, re.S).group(0)  # type: ignore[union-attr]
        maps = re.findall(r'<h3 id="map-heading-[A-Z]{2}">.*?</svg>', html, re.S)
        page = work / "maps.html"
        page.write_text(
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{style}</head><body>'
            f'<main style="display:flex;gap:1rem;align-items:flex-start;max-width:none">'
            + "".join(f'<div style="width:420px">{m}</div>' for m in maps)
            + "</main></body></html>",
            "utf-8",
        )
        shot = DOCS / "report-map.png"
        _run(
            chromium,
            *BROWSER,
            profile,
            "--hide-scrollbars",
            "--window-size=900,620",
            f"--screenshot={shot}",
            page.as_uri(),
        )
    for made in (DOCS / "report-page-1.png", DOCS / "report-map.png"):
        print(f"wrote {made} ({made.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
