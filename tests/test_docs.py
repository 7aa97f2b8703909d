"""The documentation site's configuration stays whole.

``scripts/test`` builds the site with ``mkdocs build --strict`` (broken links, anchors and API
references fail there) and checks the built pages with ``tests/docs_site.py``; these tests
check what the build alone does not: that every page in ``docs/`` is reachable from the nav,
that the site is configured to build offline, and the offline check itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from docs_site import css_urls, remote_assets, remote_assets_in_html

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


class _Loader(yaml.SafeLoader):
    """Reads mkdocs.yml, whose ``!ENV`` / ``!!python/name:`` tags need MkDocs to resolve."""


_Loader.add_multi_constructor("", lambda loader, suffix, node: None)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    with open(ROOT / "mkdocs.yml", encoding="utf-8") as f:
        loaded: dict[str, Any] = yaml.load(f, Loader=_Loader)  # a SafeLoader
    return loaded


def nav_pages(nav: Any) -> list[str]:
    """Every page the nav lists, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    raise TypeError(f"unexpected nav entry {nav!r}")


def test_every_page_is_in_the_nav(config: dict[str, Any]) -> None:
    listed = nav_pages(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(set(listed)) == sorted(listed), "a page is listed twice in the nav"
    orphans = sorted(set(pages) - set(listed))
    assert not orphans, f"pages in docs/ that the nav of mkdocs.yml does not list: {orphans}"
    missing = sorted(set(listed) - set(pages))
    assert not missing, f"the nav lists pages that docs/ does not hold: {missing}"


def test_the_nav_starts_at_home_and_ends_with_the_changelog(config: dict[str, Any]) -> None:
    pages = nav_pages(config["nav"])
    assert pages[0] == "index.md"
    assert pages[-1] == "changelog.md"


def test_the_build_is_strict_and_offline(config: dict[str, Any]) -> None:
    assert config["strict"] is True
    assert config["docs_dir"] == "docs"
    assert config["theme"]["font"] is False, "Material would load Google fonts"
    validation = config["validation"]
    for group in ("nav", "links"):
        assert set(validation[group].values()) == {"warn"}, "strict turns these into errors"
    plugins = {next(iter(p)) if isinstance(p, dict) else p: p for p in config["plugins"]}
    exec_plugin = plugins["markdown-exec"]
    languages = exec_plugin["markdown-exec"]["languages"]
    assert "python" in languages
    assert "pyodide" not in languages, "its stylesheet loads highlight.js themes from a CDN"
    python = plugins["mkdocstrings"]["mkdocstrings"]["handlers"]["python"]
    assert python["inventories"] == [], "no other project's inventory is downloaded"


def test_the_built_site_is_ignored_by_git(config: dict[str, Any]) -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert f"/{config['site_dir']}/" in ignored


@pytest.mark.parametrize(
    "html",
    [
        '<script src="https://cdn.example.org/x.js"></script>',
        '<link rel="stylesheet" href="//fonts.googleapis.com/css?family=Roboto">',
        '<link rel="preconnect" href="https://fonts.gstatic.com" crossorigin>',
        '<img src="HTTP://example.org/a.png">',
        '<img srcset="a.png 1x, https://example.org/b.png 2x">',
        '<iframe src="https://example.org/embed"></iframe>',
        '<div style="background: url(https://example.org/bg.png)"></div>',
        "<style>@import 'https://example.org/theme.css';</style>",
        "<style>body { font-family: x; src: url('https://example.org/f.woff2') }</style>",
    ],
)
def test_the_offline_check_finds_remote_assets(html: str) -> None:
    assert len(remote_assets_in_html(html)) == 1, html


@pytest.mark.parametrize(
    "html",
    [
        '<a href="https://arxiv.org/abs/2009.10795">the paper</a>',
        '<script src="assets/javascripts/bundle.js"></script>',
        '<link rel="stylesheet" href="../assets/stylesheets/main.css">',
        '<link rel="canonical" href="https://example.org/page/">',
        "<p>https://example.org</p>",
        '<img src="data:image/png;base64,AAAA">',
        '<img src="datamap.png" alt="https://example.org">',
    ],
)
def test_the_offline_check_allows_links_and_local_assets(html: str) -> None:
    assert remote_assets_in_html(html) == [], html


def test_the_offline_check_reads_stylesheets(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text('<link rel="stylesheet" href="a.css">', encoding="utf-8")
    (tmp_path / "a.css").write_text(
        '@import "https://cdn.example.org/t.css"; .x { background: url(img/local.png) }',
        encoding="utf-8",
    )
    assert css_urls((tmp_path / "a.css").read_text(encoding="utf-8")) == [
        "https://cdn.example.org/t.css",
        "img/local.png",
    ]
    assert remote_assets(tmp_path) == ["a.css: https://cdn.example.org/t.css"]


def test_the_api_reference_covers_every_public_name() -> None:
    import fastcarto

    directives = "".join(
        page.read_text(encoding="utf-8") for page in sorted((DOCS / "reference").glob("*.md"))
    )
    documented = set(re.findall(r"^::: ([\w.]+)", directives, re.MULTILINE))
    missing = sorted(name for name in fastcarto.__all__ if f"fastcarto.{name}" not in documented)
    assert not missing, f"public names without a `::: fastcarto.NAME` in docs/reference/: {missing}"
    # The public modules imported on their own (each integration imports its framework).
    modules = {
        f"fastcarto.{name}"
        for name in (
            "datamodels",
            "sklearn",
            "xgboost",
            "lightgbm",
            "catboost",
            "torch",
            "hf",
            "lightning",
            "keras",
            "dask",
        )
    }
    assert modules <= documented, sorted(modules - documented)
