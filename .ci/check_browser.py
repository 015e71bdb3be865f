"""Open the report in headless Chromium (Debian's): every image loads, no console errors, save a screenshot."""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

html, shot = Path(sys.argv[1]).resolve(), sys.argv[2]
errors: list[str] = []
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--disable-quic"],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"external request {r.url}") if not r.url.startswith(("file:", "data:")) else None)
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    n_img = page.evaluate("document.images.length")
    broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
    page.screenshot(path=shot, full_page=True)
    browser.close()
assert n_img > 0, "report has no images"
assert broken == 0, f"{broken} of {n_img} images did not load"
assert not errors, f"console errors / external requests: {errors}"
print(f"browser ok: {n_img} images loaded, no console errors; screenshot {shot}")
