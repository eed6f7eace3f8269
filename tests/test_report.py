"""The HTML report, checked in a real headless browser (Debian's chromium through playwright)."""

import numpy as np
import pytest

from cli import main

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SECTIONS = ["findings", "configuration", "training", "atom", "agreement", "sanity", "stills", "video", "data"]


@pytest.fixture(scope="module")
def report(analysed_run):
    assert main(["report", str(analysed_run), "--video-frames", "12"]) == 0
    return analysed_run / "report.html"


def test_report_is_self_contained_with_every_section(report):
    page = report.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert "data:video/mp4;base64," in page and 'download="tsf_atom.csv"' in page
    assert 'src="http' not in page and "class=\"missing\"" not in page  # nothing fetched, nothing left out


def test_report_loads_plays_and_renders_in_chromium(report, tmp_path):
    import cv2
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        page.evaluate("document.querySelector('video').play()")
        # a loaded 2-core machine can take seconds to decode the first frames: wait for them (or an error), up to 30 s
        page.wait_for_function("""() => { const video = document.querySelector('video');
            return video.error || (video.currentTime > 0 && video.videoWidth > 0); }""", timeout=30_000)
        played = page.evaluate("""() => { const video = document.querySelector('video');
            return {time: video.currentTime, error: video.error && video.error.code, width: video.videoWidth}; }""")
        headings = page.eval_on_selector_all("section h2", "nodes => nodes.map(n => n.textContent)")
        images = page.eval_on_selector_all("img", "nodes => nodes.map(n => n.naturalWidth)")
        screenshot = tmp_path / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert errors == []
    assert played["error"] is None and played["time"] > 0 and played["width"] > 0
    assert headings == ["Findings", "Configuration", "Training", "ATOM across training", "Attention against saliency",
                        "Sanity checks", "Network health", "Attention stills", "Overlay video", "Data behind the plots"]
    assert len(images) >= 8 and min(images) > 0  # every embedded picture decodes
    shot = cv2.imread(str(screenshot))
    assert shot.shape[0] > 2000 and shot.shape[1] >= 1200
    assert shot.std() > 20 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 1000  # not blank: plots, stills, video


def test_findings_open_the_page_and_every_link_reaches_its_figure(report, tmp_path):
    """On the first screen of a 1200x900 window, before any scrolling: the findings, with the warning that this
    640-step run did not learn; each finding's link scrolls to an element that exists and holds a figure or table."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        box = page.locator("#findings").bounding_box()
        warnings = page.locator("#findings li.warning").all_inner_texts()
        page.screenshot(path=str(tmp_path / "first_screen.png"))
        targets = page.eval_on_selector_all("#findings a", "links => links.map(a => a.getAttribute('href'))")
        reached = []
        for target in targets:
            page.click(f'#findings a[href="{target}"]')
            reached.append(page.evaluate("""(id) => {
                const element = document.getElementById(id.slice(1));
                if (!element) return null;
                const section = element.closest('section');
                const top = element.getBoundingClientRect().top;
                return {visible: top >= -1 && top < window.innerHeight,
                        content: section.querySelectorAll('img, table').length};
            }""", target))
        browser.close()
    assert box["y"] < 900 and box["y"] + min(box["height"], 300) <= 900  # on the first screen
    assert any("Did not learn" in text for text in warnings)
    assert len(targets) >= 3 and all(r is not None and r["visible"] and r["content"] > 0 for r in reached), reached


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path), str(tmp_path)]) == 2
