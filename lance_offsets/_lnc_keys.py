"""How lnc-client's offset keys map to ours, without collisions (docs/async.md, "lnc-client").

lnc-client keys an offset by ``(consumer_name, topic)`` where the topic is its name when one is
given and its numeric id otherwise. Our stores key by a consumer name (a directory, a column) and
``(topic_id, consumer_id)``. The mapping:

* by topic id:   ``lnc.<C>.id``             key ``(topic_id, 0)``
* by topic name: ``lnc.<C>.topic.<T>``      key ``(0, 0)``

where ``<C>`` and ``<T>`` are the consumer and topic names, escaped: ASCII letters, digits, ``-``
and ``_`` stand for themselves, every other character becomes ``~`` and the upper-case hex of each
of its UTF-8 bytes (``.`` is ``~2E``, ``/`` is ``~2F``, ``~`` is ``~7E``), and an empty name is a
lone ``~``. No escaped name holds a ``.``, so the parts split back unambiguously: two different
lnc keys never share one of ours, by construction, with no hash and no registry to keep. (The
lnc-client file store itself maps ``a/b`` and ``a_b`` to one file.) The result is always a valid
consumer name on every platform (the ``lnc.`` prefix keeps Windows device names such as ``CON``
out); a name whose escaped form is longer than 255 UTF-8 bytes is refused, never truncated.
"""

from __future__ import annotations

import re
from typing import Final

from ._errors import InvalidConsumerNameError
from ._layout import MAX_CONSUMER_NAME_BYTES

__all__ = ["PREFIX", "escape", "lnc_key", "unescape"]

#: The first part of every consumer name the mapping makes.
PREFIX: Final = "lnc"
_PLAIN: Final = re.compile(r"[A-Za-z0-9_-]")


def escape(name: str) -> str:
    """Escape ``name`` into ``[A-Za-z0-9_~-]+`` (see the module documentation); injective."""
    if name == "":
        return "~"
    out = []
    for ch in name:
        if _PLAIN.fullmatch(ch):
            out.append(ch)
        else:
            # surrogatepass: a lone surrogate still has exactly one encoding, so no collision.
            out.extend(f"~{byte:02X}" for byte in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def unescape(text: str) -> str:
    """Invert :func:`escape` (a test of its injectivity, and a reader of mapped names)."""
    if text == "~":
        return ""
    out = bytearray()
    at = 0
    while at < len(text):
        if text[at] == "~":
            out.append(int(text[at + 1 : at + 3], 16))
            at += 3
        else:
            out += text[at].encode("ascii")
            at += 1
    return out.decode("utf-8", "surrogatepass")


def lnc_key(
    consumer_name: object, topic_id: object, topic_name: object = None
) -> tuple[str, tuple[int, int]]:
    """Return ``(our consumer name, (topic_id, consumer_id))`` for an lnc-client key.

    :raises TypeError: a name is not a str, or the topic id is not an int (when it is used).
    :raises InvalidConsumerNameError: the mapped name is longer than our stores accept.
    """
    if not isinstance(consumer_name, str):
        raise TypeError(f"consumer_name must be a str, not {type(consumer_name).__name__}")
    if topic_name is not None and not isinstance(topic_name, str):
        raise TypeError(f"topic_name must be a str or None, not {type(topic_name).__name__}")
    if topic_name:  # as lnc-client does: a name, when given and not empty, is the topic
        ours = f"{PREFIX}.{escape(consumer_name)}.topic.{escape(topic_name)}"
        key = (0, 0)
    else:
        if isinstance(topic_id, bool) or not isinstance(topic_id, int):
            raise TypeError(f"topic_id must be an int, not {type(topic_id).__name__}")
        ours = f"{PREFIX}.{escape(consumer_name)}.id"
        key = (topic_id, 0)  # its range is checked by the store, before any effect
    if len(ours.encode("utf-8")) > MAX_CONSUMER_NAME_BYTES:
        raise InvalidConsumerNameError(
            ours,
            f"lnc key (consumer {consumer_name!r}, topic {topic_name or topic_id!r}) maps to "
            f"{len(ours)} bytes, longer than {MAX_CONSUMER_NAME_BYTES}; use shorter names",
        )
    return ours, key
