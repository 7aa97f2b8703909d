"""The built documentation site loads nothing from another host.

``python tests/docs_site.py SITE_DIR`` (run by ``scripts/test`` after ``mkdocs build``) lists
every asset a page, stylesheet or script of the built site would fetch from another host (a
font, a script, a stylesheet, an image, an iframe) and exits 1 if there is one. Links a reader
follows (``<a href="https://...">``) are not assets and are allowed. The site must work
offline: no CDN, no Google fonts (``theme.font: false`` in ``mkdocs.yml``).
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

# An address on another host: a scheme, or protocol-relative ``//host/...``.
REMOTE = re.compile(r"^\s*(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//")
# Attributes whose value a browser fetches by itself, per tag (``None``: any tag).
FETCHED = {
    "src": None,
    "srcset": None,
    "poster": None,
    "data": {"object"},
    "href": {"link"},
    "xlink:href": {"use", "image"},
}
# ``<link rel=...>`` that name a page rather than load a resource.
NOT_FETCHED_RELS = {"canonical", "alternate", "author", "license", "me", "next", "prev"}
# ``url(...)`` and ``@import "..."`` in CSS (stylesheets and style attributes).
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""")


def _remote(value: str) -> bool:
    return REMOTE.match(value) is not None and not value.lstrip().startswith("data:")


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._style = tag == "style"
        rel = (dict(attrs).get("rel") or "").lower().split()
        if tag == "link" and set(rel) & NOT_FETCHED_RELS:
            return
        for name, value in attrs:
            if value is None:
                continue
            if name == "style":
                self.found += [u for u in css_urls(value) if _remote(u)]
                continue
            tags = FETCHED.get(name, ())
            if tags is not None and tag not in tags:
                continue
            candidates = value.split(",") if name == "srcset" else [value]
            for candidate in candidates:
                url = candidate.strip().split(" ")[0]
                if _remote(url):
                    self.found.append(f"<{tag} {name}={url}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._style = False

    def handle_data(self, data: str) -> None:
        if self._style:
            self.found += [u for u in css_urls(data) if _remote(u)]


def css_urls(css: str) -> list[str]:
    """Every address a piece of CSS fetches (``url(...)``, ``@import``)."""
    return [a or b for a, b in CSS_URL.findall(css)]


def remote_assets_in_html(html: str) -> list[str]:
    """The assets an HTML page fetches from another host."""
    parser = _Assets()
    parser.feed(html)
    parser.close()
    return parser.found


def remote_assets(site: Path) -> list[str]:
    """``file: asset`` for every asset of the built site that is fetched from another host."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix == ".html":
            assets = remote_assets_in_html(path.read_text(encoding="utf-8"))
        elif path.suffix == ".css":
            assets = [u for u in css_urls(path.read_text(encoding="utf-8")) if _remote(u)]
        else:
            continue
        found += [f"{path.relative_to(site)}: {asset}" for asset in assets]
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python tests/docs_site.py SITE_DIR (a built mkdocs site)", file=sys.stderr)
        return 2
    site = Path(argv[0])
    if not (site / "index.html").is_file():
        print(f"{site} holds no index.html: build the site first", file=sys.stderr)
        return 2
    found = remote_assets(site)
    for line in found:
        print(f"remote asset: {line}", file=sys.stderr)
    if found:
        print(
            f"the site fetches {len(found)} asset(s) from other hosts; it must work offline",
            file=sys.stderr,
        )
        return 1
    pages = sum(1 for _ in site.rglob("*.html"))
    print(f"{site}: {pages} pages, no asset from another host")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
