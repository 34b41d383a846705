"""Check in real headless Chromium, with the network blocked, that every vega view of a `dvc plots` page renders.

    python bench/check_plots_browser.py [dvc_plots/index.html] [--screenshot dvc_plots/screenshot.png]

Make the page first (`dvc repro plots_template && dvc plots show`, or `dvc plots diff ...`). The check loads an
instrumented copy of the page: it wraps `vegaEmbed` to record, per plot div, whether the view rendered and how many
scene-graph mark items it drew, and collects console errors and warnings; then `--dump-dom` is parsed here.
A screenshot of the page itself is written for a person to look at. Exit 0 when every view rendered, 1 when one did
not, and 0 with a SKIP line when no Chromium is installed (Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
OFFLINE = ("--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--virtual-time-budget=10000", *OFFLINE)

# Runs before DVC's plot divs: records each vegaEmbed call's outcome on its div as data-check-* attributes.
PROBE = """<script>
(function () {
  const log = [];
  for (const level of ["error", "warn"]) {
    const original = console[level];
    console[level] = function (...args) { log.push(level + ": " + args.join(" ")); original.apply(console, args); };
  }
  window.addEventListener("error", (e) => log.push("uncaught: " + e.message));
  function marks(scene) {
    let n = 0;
    if (scene.marktype && scene.marktype !== "group" && scene.role === "mark") n += scene.items.length;
    for (const item of scene.items || []) n += marks(item);
    return n;
  }
  const embed = window.vegaEmbed;
  if (!embed) { log.push("uncaught: vegaEmbed is not defined (the vega bundle did not load)"); }
  window.vegaEmbed = function (selector, spec, options) {
    const div = document.querySelector(selector);
    div.dataset.checkStatus = "pending";
    return embed(selector, spec, options).then((result) => {
      div.dataset.checkStatus = "ok";
      div.dataset.checkMarks = String(marks(result.view.scenegraph().root));
      return result;
    }, (err) => { div.dataset.checkStatus = "error: " + err; throw err; });
  };
  document.addEventListener("DOMContentLoaded", () => setTimeout(() => {
    const pre = document.createElement("pre");
    pre.id = "check-log";
    pre.textContent = log.join("\\n");
    document.body.append(pre);
  }, 5000));
})();
</script>
"""


class Views(HTMLParser):
    """Per plot div of the dumped DOM: its data-check-* attributes and whether a canvas or svg lies inside."""

    def __init__(self, ids):
        super().__init__()
        self.ids, self.stack, self.views, self.log, self._in_log = set(ids), [], {}, "", False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("canvas", "svg"):
            for open_id in filter(None, self.stack):
                self.views[open_id]["drawn"] = True
        if tag == "pre" and attrs.get("id") == "check-log":
            self._in_log = True
        if tag == "div":
            div_id = attrs.get("id")
            if div_id in self.ids:
                self.views[div_id] = {"status": attrs.get("data-check-status", "never embedded"),
                                      "marks": int(attrs.get("data-check-marks", 0)), "drawn": False}
            self.stack.append(div_id if div_id in self.ids else None)

    def handle_endtag(self, tag):
        if tag == "div" and self.stack:
            self.stack.pop()
        if tag == "pre":
            self._in_log = False

    def handle_data(self, data):
        if self._in_log:
            self.log += data

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "div":
            self.handle_endtag(tag)


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def chromium(browser: str, *args, timeout: int = 120) -> str:
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                             timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{browser} exited {out.returncode}: {out.stderr[-2000:]}")
    return out.stdout


def check(html: Path, screenshot: Path | None, browser: str) -> tuple[dict, str]:
    """{div id: {status, marks, drawn}} for every vega div of ``html``, and the console errors and warnings."""
    page = html.read_text(encoding="utf-8")
    divs = list(re.finditer(r'<div id = "([^"]+)">\s*<script', page))  # dvc-render's vega divs
    ids = [div[1] for div in divs]
    first = divs[0].start() if divs else len(page)  # the probe goes right before the first vegaEmbed call
    probe = html.with_name(f".{html.stem}.check.html")  # beside it, so relative image paths still resolve
    try:
        probe.write_text(page[:first] + PROBE + page[first:], encoding="utf-8")
        views = Views(ids)
        views.feed(chromium(browser, "--dump-dom", probe.resolve().as_uri()))
    finally:
        probe.unlink(missing_ok=True)
    if screenshot is not None:
        height = 900 + 700 * len(ids) + 450 * page.count("<img ")
        chromium(browser, f"--screenshot={screenshot.resolve()}", f"--window-size=1400,{min(height, 16000)}",
                 html.resolve().as_uri())
    missing = {"status": "missing from the DOM", "marks": 0, "drawn": False}
    return {i: views.views.get(i, missing) for i in ids}, views.log


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("html", nargs="?", default="dvc_plots/index.html", type=Path)
    parser.add_argument("--screenshot", type=Path, help="default: screenshot.png beside the page")
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        print(f"SKIP: no Chromium found (looked for {', '.join(BROWSERS)}); Debian: apt-get install -y chromium")
        return 0
    if not args.html.is_file():
        print(f"error: {args.html} does not exist; run `dvc plots show` first", file=sys.stderr)
        return 2
    screenshot = args.screenshot or args.html.with_name("screenshot.png")
    views, log = check(args.html, screenshot, browser)
    remote = re.findall(r'<script[^>]+src="(https?://[^"]+)"', args.html.read_text(encoding="utf-8"))
    for div_id, view in views.items():
        drawn = "present" if view["drawn"] else "MISSING"
        print(f"{div_id}: {view['status']}, {view['marks']} mark items, canvas/svg {drawn}")
    if log.strip():
        print("console:\n  " + log.strip().replace("\n", "\n  "))
    print(f"screenshot: {screenshot}")
    bad = [i for i, v in views.items() if v["status"] != "ok" or not v["drawn"] or v["marks"] == 0]
    if remote:
        print(f"FAIL: the page loads remote scripts: {', '.join(remote)}")
    if not views:
        print("FAIL: no vega plot divs in the page")
    if bad:
        print(f"FAIL: {len(bad)} of {len(views)} vega views did not render: {', '.join(bad)}")
    if remote or bad or not views:
        return 1
    print(f"OK: {len(views)} vega views rendered offline in {Path(browser).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
