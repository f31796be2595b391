"""Screenshots of the report of ``nldisco run``, taken in headless Chromium.

Runs the README's quick start (``nldisco run`` on the built-in simulated
session, default settings) into a temporary folder, or uses the run folder
given with ``--run``, opens its ``report.html`` in headless Chromium with
playwright and saves two images:

- ``docs/images/report.png``: the top of the page, with what each model
  found, the summary tables and the ground truth of the simulation;
- ``docs/images/report_card.png``: the latent-condition table filtered to
  the first seed's selective latents, with the card of the first row open.

Needs ``pip install playwright`` and a Chromium: ``chromium`` on the PATH,
``--chromium PATH``, or playwright's own (``playwright install chromium``).

Run: ``python scripts/screenshot_report.py [--run DIR] [--images DIR]``
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1400, 1000


def make_run(folder):
    """The quick start's run into ``folder``; returns the run folder."""
    from sklearn_nldisco.cli import main

    out = Path(folder) / "nldisco-results"
    main(["run", "--out", str(out)])
    return out


def screenshots(report, images, chromium=None):
    """Save ``report.png`` and ``report_card.png`` of ``report`` into ``images``."""
    from playwright.sync_api import sync_playwright

    images.mkdir(parents=True, exist_ok=True)
    executable = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.resolve().as_uri())
        page.wait_for_selector("#mappings tbody tr")

        # the top: findings, summary tables and, on simulated data, the ground truth
        last = "#ground-truth" if page.locator("#ground-truth").count() else "#summary"
        bottom = page.locator(last).evaluate(
            "section => section.getBoundingClientRect().bottom + window.scrollY")
        page.screenshot(path=str(images / "report.png"), full_page=True,
                        clip={"x": 0, "y": 0, "width": WIDTH, "height": bottom + 8})

        # the table of the first seed's selective latents, one card open
        first = page.locator("#f-model option").nth(1).get_attribute("value")
        page.select_option("#f-model", first)
        page.check("#f-selective")
        if page.locator("#mappings tbody tr").count() == 0:  # none selective: every row
            page.uncheck("#f-selective")
        page.locator('#mappings th[data-col="selectivity"]').click()
        page.locator("#mappings tbody tr").first.click()
        page.locator("#latents").scroll_into_view_if_needed()
        top = page.locator("#latents").evaluate(
            "section => section.getBoundingClientRect().top + window.scrollY")
        page.screenshot(path=str(images / "report_card.png"), full_page=True,
                        clip={"x": 0, "y": top, "width": WIDTH, "height": HEIGHT})
        browser.close()
    if errors:
        raise RuntimeError(f"the report raised script errors: {errors}")
    return images / "report.png", images / "report_card.png"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None,
                        help="an output folder of nldisco run (default: run the quick start)")
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images",
                        help="folder of the images (default: docs/images)")
    parser.add_argument("--chromium", default=None, help="path of a Chromium executable")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        run = args.run if args.run is not None else make_run(folder)
        for path in screenshots(run / "report.html", args.images, args.chromium):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
