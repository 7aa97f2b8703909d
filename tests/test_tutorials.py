"""The tutorials in docs/tutorials run here as they run at ``mkdocs build``: every block fenced as
```` ```python exec="on" ... ```` of a page, in order, in one namespace per ``session``, so a
tutorial broken by a change fails the tests even without the docs toolchain installed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "docs" / "tutorials"
PAGES = ("datamaps.md", "audit.md", "datamodels.md", "online.md")

# A fence at the start of a line, its info string, the code, the closing fence.
_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_OPTION = re.compile(r'(\w+)="([^"]*)"')


def exec_blocks(text: str) -> list[tuple[str, str]]:
    """``(session, code)`` of every executed Python block of a page, in page order."""
    blocks = []
    for fence in _FENCE.finditer(text):
        words = fence["info"].split()
        options = dict(_OPTION.findall(fence["info"]))
        if words and words[0] == "python" and options.get("exec") in ("on", "true", "1"):
            blocks.append((options.get("session", ""), fence["code"]))
    return blocks


def test_exec_blocks_are_found() -> None:
    page = '# t\n```python exec="on" session="a"\nx = 1\n```\n```python\nnot run\n```\n'
    page += '```python exec="on" session="a" html="true"\nprint(x)\n```\n'
    assert exec_blocks(page) == [("a", "x = 1\n"), ("a", "print(x)\n")]


def test_every_tutorial_with_code_is_run() -> None:
    pages = {p.name for p in TUTORIALS.glob("*.md") if exec_blocks(p.read_text(encoding="utf-8"))}
    assert pages == set(PAGES)


@pytest.mark.parametrize("name", PAGES)
def test_page_has_one_session_of_its_own(name: str) -> None:
    # markdown-exec keeps a session's namespace for the whole build: a session shared between
    # pages would let one page depend on another's variables.
    sessions = {s for s, _ in exec_blocks((TUTORIALS / name).read_text(encoding="utf-8"))}
    assert sessions == {Path(name).stem}


@pytest.mark.parametrize("name", PAGES)
def test_tutorial_runs(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import matplotlib
    from threadpoolctl import threadpool_limits

    matplotlib.use("Agg")
    # The build runs in the repository root; a page must not depend on it or write there.
    monkeypatch.chdir(tmp_path)
    blocks = exec_blocks((TUTORIALS / name).read_text(encoding="utf-8"))
    namespace: dict[str, object] = {"__name__": f"tutorial_{Path(name).stem}"}
    # One BLAS thread: the pages' small fits gain nothing from more, and lose much to
    # oversubscription when the tests run beside other work.
    with threadpool_limits(1):
        for i, (_, code) in enumerate(blocks):
            exec(compile(code, f"{name} block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert list(tmp_path.iterdir()) == []
