"""Write the README's screenshot of an audit report: ``python3 -m tests.support.screenshot REPORT.html OUT.png``.

The report is opened in headless Chromium (see :mod:`tests.support.browser`) at 1280 px wide and the top of
the page (summary, treemap, removed bytes, the why-graph) is captured at 60 %.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.browser import Browser, distinct_colours


def main(argv: list[str]) -> int:
    report, out = Path(argv[0]).resolve(), Path(argv[1])
    with Browser(1280, 1000) as browser:
        browser.open(report.as_uri())
        errors = browser.errors()
        if errors:
            print("\n".join(errors), file=sys.stderr)
            return 1
        png = browser.screenshot(clip_height=2150, scale=0.6)
    if distinct_colours(png) < 20:
        print("the screenshot is blank", file=sys.stderr)
        return 1
    out.write_bytes(png)
    print(f"wrote {out}: {len(png)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
