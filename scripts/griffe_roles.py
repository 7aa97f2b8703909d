"""Griffe extension for the docs site: Sphinx roles in docstrings become cross-references.

The docstrings name other objects the Sphinx way (``:class:`fastcarto.Recorder```,
``:meth:`record```), which IDEs and ``help()`` show as they are; MkDocs does not read them. For
the API reference (mkdocs.yml loads this file as a mkdocstrings-python extension), each role is
rewritten, once the package is loaded, into an *optional* cross-reference of mkdocs-autorefs:
a link where the target is rendered in the reference, plain code where it is not (a private
helper, another library), never a warning. A name is looked up the way Sphinx looks it up: as
given, then in the enclosing class, module and package, then in ``fastcarto``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _exists(collection: Any, path: str) -> bool:
    try:
        collection.get_member(path)
    except (KeyError, ValueError, AttributeError, griffe.AliasResolutionError):
        return False
    return True


def _scopes(obj: griffe.Object) -> list[str]:
    scopes = []
    current: Any = obj
    while current is not None:
        scopes.append(current.path)
        current = current.parent
    return [*scopes, "fastcarto"]


def _resolve(obj: griffe.Object, name: str, collection: Any) -> str | None:
    if name.startswith("."):
        return None
    for scope in ["", *_scopes(obj)]:
        path = f"{scope}.{name}" if scope else name
        if _exists(collection, path):
            return path
    return None


def _rewrite(obj: griffe.Object, collection: Any) -> None:
    docstring = obj.docstring
    if docstring is None or ":" not in docstring.value:
        return

    def link(match: re.Match[str]) -> str:
        short, name = match.group(1), match.group(2).strip()
        title = name.rsplit(".", 1)[-1] if short else name
        target = _resolve(obj, name, collection)
        code = f"<code>{title}</code>"
        if target is None:
            return code
        return f'<autoref identifier="{target}" optional>{code}</autoref>'

    docstring.value = ROLE.sub(link, docstring.value)


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring of a loaded package (see the module)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **_: Any) -> None:
        collection = loader.modules_collection
        seen: set[int] = set()
        stack: list[Any] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or obj.is_alias:
                continue
            seen.add(id(obj))
            _rewrite(obj, collection)
            stack.extend(obj.members.values())
