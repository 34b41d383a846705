"""Stage plots_template: the HTML page `dvc plots show/diff` fill, with vega, vega-lite and vega-embed inline.

DVC's default page loads the three libraries from a CDN, so offline its interactive plots stay blank. This page
carries them inside (vl-convert-python's bundle, generated from the installed package, never copied by hand) and
keeps dvc-render's `{plot_divs}` placeholder; `.dvc/config` `[plots] html_template` points DVC at it.
"""

import argparse
import sys
from pathlib import Path

import vl_convert

from common import atomic_path

VEGA_LITE_MAJOR = "5"  # the major version of the `$schema` in DVC's built-in templates and ours in .dvc/plots/

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <script type="text/javascript">
/* vega {vega}, vega-lite {vega_lite}, vega-embed {vega_embed}: bundled by vl-convert-python {vl_convert} */
(function () {
BUNDLE
})();
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
        .vega-embed { vertical-align: top; margin: 0 24px 24px 0; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def vega_lite_version(major: str) -> str:
    """The newest Vega-Lite `major.minor` that vl-convert bundles, e.g. '5.21'."""
    versions = [v for v in vl_convert.get_vegalite_versions() if v.split(".")[0] == major]
    if not versions:
        sys.exit(f"error: vl-convert-python {vl_convert.__version__} bundles no Vega-Lite {major}.x "
                 f"(it has {', '.join(vl_convert.get_vegalite_versions())})")
    return max(versions, key=lambda v: tuple(map(int, v.split("."))))


def page(bundle: str, versions: dict) -> str:
    """The page around ``bundle``. dvc-render fills `{plot_divs}` and `{refresh_tag}` by plain string replacement
    (and `{scripts}`, its CDN tags, which this page leaves out), so the bundle must hold none of them."""
    for forbidden in ("{plot_divs}", "{scripts}", "{refresh_tag}", "</script"):
        if forbidden in bundle:
            sys.exit(f"error: the vl-convert JavaScript bundle contains {forbidden!r}; it cannot be inlined as is")
    html = PAGE
    for key, value in versions.items():
        html = html.replace("{" + key + "}", value)
    return html.replace("BUNDLE", bundle, 1)  # last, so nothing inside the bundle is ever replaced


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the HTML template (.html)")
    args = parser.parse_args()
    vl_version = vega_lite_version(VEGA_LITE_MAJOR)
    bundle = vl_convert.javascript_bundle(vl_version=vl_version)
    versions = {"vega": vl_convert.get_vega_version(), "vega_lite": vl_version,
                "vega_embed": vl_convert.get_vega_embed_version(), "vl_convert": vl_convert.__version__}
    with atomic_path(args.out) as tmp:
        tmp.write_text(page(bundle, versions), encoding="utf-8")
    print(f"wrote {args.out}: {len(bundle) / 1e6:.2f} MB of JavaScript inline (vega {versions['vega']}, "
          f"vega-lite {vl_version}, vega-embed {versions['vega_embed']})")


if __name__ == "__main__":
    main()
