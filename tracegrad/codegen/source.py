"""A small source writer: lines and an indentation context manager (as Inductor's
IndentedBuffer), so generated code is built structurally, never by hand-rolled indentation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class SourceWriter:
    def __init__(self, indent: str = "    ", level: int = 0) -> None:
        """`level`: the indentation of the first lines (a function body written on its own
        and put into a module with `extend`)."""
        self._lines: list[str] = []
        self._level = level
        self._indent = indent

    @property
    def indent(self) -> str:
        return self._indent

    def line(self, text: str = "") -> None:
        self._lines.append(self._indent * self._level + text if text else "")

    def comment(self, text: str) -> None:
        self.line("# " + text)

    @contextlib.contextmanager
    def block(self, header: str) -> Iterator[None]:
        """`with w.block("for i in range(n):"):` writes the header and indents its body."""
        self.line(header)
        self._level += 1
        try:
            yield
        finally:
            self._level -= 1

    @contextlib.contextmanager
    def captured(self) -> Iterator[list[str]]:
        """Lines written inside the `with` are taken out, indented one level deeper than the
        current one, into the yielded list (to be written, possibly twice, with `lines`)."""
        start = len(self._lines)
        taken: list[str] = []
        self._level += 1
        try:
            yield taken
        finally:
            self._level -= 1
            taken.extend(self._lines[start:])
            del self._lines[start:]

    def lines(self, lines: list[str]) -> None:
        """Append already indented lines (from `captured`)."""
        self._lines.extend(lines)

    def extend(self, other: SourceWriter) -> None:
        """Append another writer's lines as they are (their own indentation)."""
        self._lines.extend(other._lines)

    def getvalue(self) -> str:
        return "\n".join(self._lines) + "\n"
