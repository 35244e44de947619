"""Take the screenshots of the studio that docs/studio.md and the README show (docs/images/).

    .venv/bin/python docs/gen_studio_screenshots.py

It imports chitchat-dataset's conversations into a temporary dataset, starts ``chatloom studio``
on a free loopback port and photographs the main pages in Debian's chromium (Playwright)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "docs" / "images"


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    from chatloom.importing.run import import_paths
    from chatloom.store import Store
    from tests.studio.conftest import chromium_path, start_studio, stop_studio

    folder = Path(tempfile.mkdtemp(prefix="chatloom-screens-"))
    path = folder / "chitchat.db"
    import_paths(path, ["package"], fmt="chitchat", tags=["chitchat"])
    with Store(path) as store:
        store.tag(store.ids()[:40], add=["greeting"])
        store.set_setting("languages", ["en"])
    studio = start_studio(path, home=folder / "home")
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(studio.url + "dashboard")  # counts the tokens the list and the histogram show
            page.click("#count-all")
            page.wait_for_url("**/dashboard", wait_until="load")
            expect(page.locator(".hist")).to_be_visible(timeout=120_000)
            page.goto(studio.url + "dashboard?limit=1000")
            page.screenshot(path=OUT / "studio-dashboard.png", full_page=True)
            page.goto(studio.url + "?q=pizza+party")
            page.screenshot(path=OUT / "studio-list.png")
            page.locator("#chats tbody tr:first-child .title a").click()
            page.wait_for_selector("#messages .message")
            expect(page.locator("#token-total")).to_contain_text("tokens (")
            page.screenshot(path=OUT / "studio-editor.png")
            other = browser.new_page(viewport={"width": 1280, "height": 560})
            other.goto(page.url)
            other.wait_for_selector("#messages .message")
            page.locator("#messages .content").first.fill("Edited in the first tab")
            expect(page.locator("#save-state")).to_have_text("saved")
            other.locator("#messages .content").nth(1).fill("Edited in the second tab")
            expect(other.locator("#conflict")).to_be_visible()
            other.screenshot(path=OUT / "studio-conflict.png")
            browser.close()
    finally:
        stop_studio(studio)
        shutil.rmtree(folder, ignore_errors=True)
    for p in sorted(OUT.glob("studio-*.png")):
        print(p.relative_to(REPO), p.stat().st_size)


if __name__ == "__main__":
    main()
