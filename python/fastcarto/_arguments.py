"""Errors that name an argument, written the way each front end spells it.

Such an exception carries ``argument`` (the API's argument name), ``value`` and ``template``:
its message with ``{arg}`` where ``argument=value`` goes and ``{value}`` where the value alone
goes. The API's message spells them as Python does (``epochs=7``, ``nan_policy="omit"``); the
CLI formats the template with its own options (``--epochs 7``), so no message is rewritten.
The engine's exceptions carry the same three attributes where the binding adds a hint.
"""

from __future__ import annotations

from typing import Any, TypeVar

E = TypeVar("E", bound=BaseException)


def python_value(value: Any) -> str:
    """``value`` as Python code writes it (strings in double quotes, as the engine's hints)."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def argument_error(cls: type[E], template: str, argument: str, value: Any) -> E:
    """An exception of type ``cls`` whose message is ``template`` with the argument filled in
    Python's spelling.

    >>> err = argument_error(ValueError, "{arg} selects no epochs", "epochs", 0)
    >>> str(err), err.template.format(arg="--epochs 0", value="0")
    ('epochs=0 selects no epochs', '--epochs 0 selects no epochs')
    """
    text = template.format(arg=f"{argument}={python_value(value)}", value=python_value(value))
    exc = cls(text)
    exc.template = template  # type: ignore[attr-defined]
    exc.argument = argument  # type: ignore[attr-defined]
    exc.value = value  # type: ignore[attr-defined]
    return exc


def spelled(exc: BaseException, spell: Any) -> str | None:
    """The message of ``exc`` with its argument written by ``spell(argument, value)`` (a pair
    of strings: the argument with its value, and the value alone), or None when ``exc`` names
    no argument or ``spell`` returns None for it."""
    template = getattr(exc, "template", None)
    argument = getattr(exc, "argument", None)
    if not isinstance(template, str) or not isinstance(argument, str):
        return None
    written = spell(argument, getattr(exc, "value", None))
    if written is None:
        return None
    arg, value = written
    return template.format(arg=arg, value=value)
