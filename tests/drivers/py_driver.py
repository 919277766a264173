#!/usr/bin/env python3
"""A driver in Python (docs/drivers.md), for the tests of the protocol's plumbing.

It keeps offsets in our lock-file store (so it is correct), and misbehaves on request, each
flag one way a driver can break the protocol:

  --crash-at-start        exit 3 before reading anything (a message on stderr first)
  --hang OP               never answer OP
  --garbage OP            answer OP with a line that is not JSON
  --unknown-reply OP      answer OP with a JSON object that is neither ok nor error
  --exit-mid OP           exit 4 while answering OP
  --noise OP              print a log line on stdout before answering OP
  --wrong-id OP           answer OP with another request's id
  --unknown-kind OP       answer OP with an error of a kind the protocol does not have
  --linger-after-close    keep running after answering close
  --declare NAME=JSON     add a capability to the answer to open (JSON value)
  --lossy                 keep offsets through a float (a store defect, not a protocol one)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from lance_offsets import LockFileOffsetStore
from lance_offsets._errors import CorruptOffsetError, LockTimeoutError, StoreClosedError


def _error(kind: str, exc: BaseException) -> dict[str, object]:
    error: dict[str, object] = {"kind": kind, "message": str(exc)}
    path = getattr(exc, "path", None) or getattr(exc, "filename", None)
    if path:
        error["path"] = str(path)
    return error


def _number(text: object) -> int:
    """A request's decimal string; an int in the store's own domain is the store's to check."""
    if not isinstance(text, str) or not text.lstrip("-").isdigit():
        raise ValueError(f"not a decimal string: {text!r}")
    return int(text)


def main() -> int:  # noqa: PLR0912, PLR0915 - one branch per op and per flag, as a driver reads
    parser = argparse.ArgumentParser()
    for flag in (
        "hang",
        "garbage",
        "unknown_reply",
        "exit_mid",
        "noise",
        "wrong_id",
        "unknown_kind",
    ):
        parser.add_argument("--" + flag.replace("_", "-"), default=None)
    parser.add_argument("--crash-at-start", action="store_true")
    parser.add_argument("--linger-after-close", action="store_true")
    parser.add_argument("--lossy", action="store_true")
    parser.add_argument("--declare", action="append", default=[])
    args = parser.parse_args()
    if args.crash_at_start:
        print("py_driver: cannot start: told to crash", file=sys.stderr)
        return 3
    store: LockFileOffsetStore | None = None
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        op, rid = request["op"], request["id"]
        if op == args.hang:
            time.sleep(3600)
        if op == args.garbage:
            out.write("this is not json\n")
            out.flush()
            continue
        if op == args.unknown_reply:
            out.write(json.dumps({"id": rid, "maybe": 1}) + "\n")
            out.flush()
            continue
        if op == args.exit_mid:
            print("py_driver: leaving in the middle", file=sys.stderr)
            out.write('{"id": ')
            out.flush()
            os._exit(4)
        if op == args.noise:
            out.write("saving now...\n")
        if op == args.wrong_id:
            rid += 7
        if op == args.unknown_kind:
            out.write(json.dumps({"id": rid, "error": {"kind": "oops", "message": "?"}}) + "\n")
            out.flush()
            continue
        reply: dict[str, object] = {"id": rid}
        try:
            if op == "open":
                name = request.get("name", "conformance")
                store = LockFileOffsetStore.open(request["path"], name)
                caps: dict[str, object] = {"named": True, "save_many": True}
                for item in args.declare:
                    key, _, value = item.partition("=")
                    caps[key] = json.loads(value)
                reply["ok"] = {"protocol": 1, "driver": "py_driver", "capabilities": caps}
            elif store is None:
                raise StoreClosedError("py_driver store (not open)")  # noqa: TRY301
            elif op == "load":
                found = store.load(_number(request["topic_id"]), _number(request["consumer_id"]))
                reply["ok"] = None if found is None else str(found)
            elif op == "save":
                offset = _number(request["offset"])
                if args.lossy:
                    offset = min(int(float(offset)), 2**64 - 1)
                store.save(_number(request["topic_id"]), _number(request["consumer_id"]), offset)
                reply["ok"] = None
            elif op == "delete":
                store.delete(_number(request["topic_id"]), _number(request["consumer_id"]))
                reply["ok"] = None
            elif op == "list_all":
                listed = store.list_all()
                reply["ok"] = [[str(t), str(c), str(o)] for (t, c), o in sorted(listed.items())]
            elif op == "save_many":
                batch = {(_number(t), _number(c)): _number(o) for t, c, o in request["offsets"]}
                store.save_many(batch)
                reply["ok"] = None
            elif op == "close":
                store.close()
                reply["ok"] = None
                out.write(json.dumps(reply) + "\n")
                out.flush()
                if args.linger_after_close:
                    time.sleep(3600)
                return 0
            else:
                reply["error"] = {"kind": "invalid_argument", "message": f"unknown op {op!r}"}
        except CorruptOffsetError as exc:
            reply["error"] = _error("corrupt", exc)
        except LockTimeoutError as exc:
            reply["error"] = _error("lock_timeout", exc)
        except StoreClosedError as exc:
            reply["error"] = _error("closed", exc)
        except (ValueError, TypeError) as exc:
            reply["error"] = _error("invalid_argument", exc)
        except OSError as exc:
            reply["error"] = _error("io", exc)
            if exc.errno:
                import errno

                reply["error"]["errno"] = errno.errorcode.get(exc.errno, "EIO")  # type: ignore[index]
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
