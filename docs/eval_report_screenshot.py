"""Make ``docs/eval-report.png``: the HTML report of an evaluation run, compared with a baseline
run, as headless Chromium shows it offline.

    voicekit eval evals/sample --jsonl new.jsonl ...        # two runs, e.g. two turn settings
    python docs/eval_report_screenshot.py new.jsonl --baseline old.jsonl \\
        --names "speech timeout 0.3 s" "speech timeout 0.6 s" --out docs/eval-report.png

Needs Debian's chromium and chromium-driver and Selenium (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from voicekit.eval import read_jsonl, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the run's JSONL results")
    parser.add_argument("--baseline", type=Path, help="an earlier run's JSONL results")
    parser.add_argument("--names", nargs=2, default=("this run", "baseline"),
                        metavar=("RUN", "BASELINE"), help="what to call the two runs")
    parser.add_argument("--title", default="voicekit eval: the sample suite")
    parser.add_argument("--out", type=Path, default=Path("docs/eval-report.png"))
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1900)
    args = parser.parse_args(argv)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    results = read_jsonl(args.results)
    baseline = read_jsonl(args.baseline) if args.baseline else None
    work = Path(tempfile.mkdtemp(prefix="voicekit-report-"))
    try:
        report = write_report(results, work / "report.html", baseline=baseline,
                              title=args.title, names=tuple(args.names))
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--hide-scrollbars",
                     f"--user-data-dir={work / 'profile'}",
                     f"--window-size={args.width},{args.height}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(
            executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"))
        try:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
                "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
            driver.get(report.as_uri())
            fetched = driver.execute_script(
                "return performance.getEntriesByType('resource').length")
            if fetched:
                print(f"the report fetched {fetched} resources", file=sys.stderr)
                return 1
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
