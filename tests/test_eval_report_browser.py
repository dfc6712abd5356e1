"""The HTML report in a real headless Chromium, offline: opened from a file:// URL with the
network switched off, it fetches nothing, shows the failures first, and its plots render (SVG
elements laid out with a size, pixels that are not blank). A screenshot goes to tmp."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from selenium.common.exceptions import WebDriverException
from test_eval_report_runs import baseline_run, current_run
from web_browser import chromium, wait_for, write_wav

from voicekit.eval._report import write_report


@contextlib.contextmanager
def http_server(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """A plain HTTP server for ``folder`` on 127.0.0.1, in a thread; its URL and the paths
    requested from it."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def offline(driver) -> None:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})


def test_the_report_opens_offline_with_failures_first_and_plots_drawn(tmp_path):
    from PIL import Image

    report = write_report(current_run(), tmp_path / "report.html", baseline=baseline_run(),
                          names=("smart turn", "timeout"))
    silence = write_wav(tmp_path / "mic.wav", np.zeros(1600, np.int16), 16000)
    with chromium(silence) as driver:
        offline(driver)
        # offline really is offline: the same report from a real local HTTP server fails
        with http_server(tmp_path) as (url, requests):
            with pytest.raises(WebDriverException, match="ERR_INTERNET_DISCONNECTED"):
                driver.get(f"{url}/report.html")
            assert requests == []
        driver.get(report.as_uri())
        wait_for(driver, "return document.readyState === 'complete'")
        assert driver.title == "voicekit eval"
        # nothing was fetched: no resource entry at all, not even a failed one
        assert driver.execute_script(
            "return performance.getEntriesByType('resource').length") == 0
        # the failures come first: above the comparison, the plots and the table
        tops = driver.execute_script("""
            const top = id => document.getElementById(id).getBoundingClientRect().top;
            return ['failures', 'comparison', 'latency', 'results'].map(top);""")
        assert tops == sorted(tops), tops
        first = driver.execute_script("""
            return [...document.querySelectorAll('#failures article h3')]
                   .map(h => h.textContent.trim());""")
        assert first[0].startswith("error long question")
        assert [t.split()[1] for t in first[1:]] == ["spell", "weather"]
        shown = driver.execute_script(
            "return document.querySelector('#r1').innerText")
        assert "ProviderTimeout" in shown
        transcript = driver.execute_script(
            "return document.querySelector('#r2 table.transcript').innerText")
        assert "Question about spell a name?" in transcript
        assert "Sorry, I did not get that." in transcript
        rows = driver.execute_script("""
            return [...document.querySelectorAll('table.results tbody tr')]
                   .map(r => r.className);""")
        assert rows[:3] == ["error", "failed", "failed"] and len(rows) == 14
        # the plots: three SVGs laid out with a real size and drawn marks
        plots = driver.execute_script("""
            return [...document.querySelectorAll('svg.plot')].map(svg => {
              const box = svg.getBoundingClientRect();
              const marks = svg.querySelectorAll('circle, rect, path');
              let drawn = 0;
              for (const m of marks) { const b = m.getBBox(); if (b.width > 0 || b.height > 0)
                drawn++; }
              return [svg.dataset.plot, box.width, box.height, marks.length, drawn];
            });""")
        assert [p[0] for p in plots] == ["distributions", "breakdown", "histogram"]
        for name, width, height, marks, drawn in plots:
            assert width > 500 and height > 60, (name, width, height)
            assert marks > 10 and drawn > 10, (name, marks, drawn)
        for element in driver.find_elements("css selector", "svg.plot"):
            image = Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB")
            colours = image.getcolors(maxcolors=1 << 20)
            assert colours is not None and len(colours) > 20  # not blank, not one flat colour
            # some pixels carry the plot's blue (this run's marks)
            pixels = np.asarray(image, dtype=int)
            blue = (abs(pixels[..., 0] - 0x4E) < 40) & (abs(pixels[..., 2] - 0xA7) < 40) & (
                pixels[..., 2] > pixels[..., 0] + 40)
            assert blue.sum() > 20
        driver.set_window_size(1200, 1600)
        shot = tmp_path / "eval-report.png"
        assert driver.save_screenshot(str(shot))
        assert Image.open(shot).size[0] >= 1000
