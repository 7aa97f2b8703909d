"""README.md stays true: its Python blocks run when pasted in order, its commands exist.

The Python blocks run one after the other in one namespace, in an empty working directory, as a
user pasting them into one session would (each block gets its data from the blocks before it).
Then every ``fastcarto ...`` command of the README is parsed by the real argument parser, and
the quick ones are run on the files the Python blocks wrote. The long commands (the install, the
demo, the test suite) are checked for what they rely on, not run.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastcarto
import pytest
from fastcarto import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [
        body for lang, body in FENCE.findall(README.read_text(encoding="utf-8")) if lang == language
    ]


def commands(language: str = "bash") -> Iterator[list[str]]:
    """Each command of the README's shell blocks as an argv (comments dropped, ``&&`` split)."""
    for body in blocks(language):
        for line in body.splitlines():
            for command in line.split("&&"):
                argv = shlex.split(command, comments=True)
                if argv:
                    yield argv


@pytest.fixture(scope="module")
def pasted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Runs every Python block of the README in order in a fresh directory; yields it."""
    workdir = tmp_path_factory.mktemp("readme")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        mp.setenv("MPLBACKEND", "Agg")
        namespace: dict[str, Any] = {"__name__": "__readme__"}
        for number, code in enumerate(blocks("python"), start=1):
            exec(compile(code, f"README.md python block {number}", "exec"), namespace)
        yield workdir


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; it is for users: move reference to docs/"


def test_python_blocks_run_in_order(pasted: Path) -> None:
    written = {p.relative_to(pasted).as_posix() for p in pasted.rglob("*") if p.is_file()}
    assert {"out/logits.npy", "out/labels.npy", "out/dynamics.parquet", "out/map.png"} <= written
    assert any(name.startswith("out/run/") and name.endswith(".arrows") for name in written)


def test_readme_writes_only_into_out(pasted: Path) -> None:
    assert {p.name for p in pasted.iterdir()} == {"out"}


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_what_the_readme_writes_is_ignored_by_git() -> None:
    demo_default = cli.build_parser().parse_args(["demo"]).out
    for written in ("out/metrics.parquet", f"{demo_default}/datamap.png"):
        check = subprocess.run(["git", "check-ignore", "-q", written], cwd=ROOT, check=False)
        assert check.returncode == 0, f"{written} is not in .gitignore"


def cli_commands() -> list[list[str]]:
    return [argv[1:] for argv in commands() if argv[0] == "fastcarto"]


def test_every_cli_command_parses() -> None:
    found = cli_commands()
    assert {argv[0] for argv in found} == {"map", "select", "issues", "audit", "demo"}
    parser = cli.build_parser()
    for argv in found:
        parser.parse_args(argv)  # exits (a test failure) on an unknown option or bad value


def test_quick_cli_commands_run(pasted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(pasted)
    ran = 0
    for argv in cli_commands():
        if argv[0] == "demo":  # trains a network: tests/test_demo.py covers it
            continue
        assert cli.main([*argv, "--quiet"]) == 0, argv
        out = argv[argv.index("-o") + 1]
        assert (pasted / out).stat().st_size > 0, argv
        ran += 1
    assert ran >= 4


def test_install_and_test_commands_exist() -> None:
    argvs = list(commands())
    extras = importlib.metadata.metadata("fastcarto").get_all("Provides-Extra") or []
    installs = [argv for argv in argvs if argv[:4] == ["python", "-m", "pip", "install"]]
    assert installs, "the README shows how to install"
    for argv in installs:
        for spec in argv[4:]:
            match = re.fullmatch(r"\.\[([\w,]+)\]", spec)
            assert match, spec
            assert set(match[1].split(",")) <= set(extras), spec
    assert ["scripts/test"] in argvs
    # CI runs exactly the README's test command.
    assert "\nscripts/test\n" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for script in ("scripts/test", "scripts/build-wheel"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_links_point_at_files_and_headings() -> None:
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if target.startswith("http"):
            continue
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), target
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(encoding="utf-8"), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, target


def reachable_text() -> str:
    """The README and every docs page it links to."""
    text = README.read_text(encoding="utf-8")
    pages = set(re.findall(r"\]\((docs/[\w.]+\.md)", text))
    return text + "".join((ROOT / page).read_text(encoding="utf-8") for page in sorted(pages))


def public_names(cls: type) -> list[str]:
    return [name for name in vars(cls) if not name.startswith("_")]


def test_everything_public_is_reachable_from_the_readme() -> None:
    text = reachable_text()
    names = list(fastcarto.__all__)
    for cls in (fastcarto.DataMap, fastcarto.Accumulator, fastcarto.Recorder):
        names += public_names(cls)
    missing = sorted({name for name in names if not re.search(rf"\b{re.escape(name)}\b", text)})
    assert not missing, f"not in README.md nor the docs it links: {missing}"


def test_every_cli_option_is_reachable_from_the_readme() -> None:
    text = reachable_text()
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.choices and a.dest == "command")
    missing = []
    for name, sub in subparsers.choices.items():
        if f"fastcarto {name}" not in text:
            missing.append(name)
        for action in sub._actions:
            missing += [o for o in action.option_strings if o.startswith("--") and o not in text]
    assert not sorted(set(missing) - {"--help"}), f"not documented: {missing}"
