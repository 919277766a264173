"""A terminal as a person sees it: the lines a byte stream leaves on the screen.

Enough of a terminal for the check's output: printable text, ``\\r`` (back to the start of the
line), ``\\n`` (next line), ``\\b``, and the erase-line escapes (``ESC [ K``, ``ESC [ 2K``).
Anything else is an error, so a test learns when the output starts using what this does not
model.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\x1b\[([0-9]*)K")


def screen(text: str) -> list[str]:
    """The lines ``text`` leaves on a terminal, trailing blanks dropped."""
    lines: list[list[str]] = [[]]
    column = 0
    at = 0
    while at < len(text):
        char = text[at]
        erase = _ESCAPE.match(text, at)
        if erase:
            line = lines[-1]
            if erase.group(1) == "2":
                line[:] = [" "] * len(line)
            else:
                del line[column:]
            at = erase.end()
            continue
        if char == "\x1b":
            raise ValueError(f"escape sequence not modelled: {text[at : at + 8]!r}")
        if char == "\r":
            column = 0
        elif char == "\n":
            lines.append([])
            column = 0
        elif char == "\b":
            column = max(0, column - 1)
        else:
            line = lines[-1]
            if column < len(line):
                line[column] = char
            else:
                line.extend(" " * (column - len(line)))
                line.append(char)
            column += 1
        at += 1
    return ["".join(line).rstrip() for line in lines]
