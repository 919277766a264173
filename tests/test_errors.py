"""The error hierarchy: builtin bases, messages naming key and file, str/repr/pickling pinned."""

from __future__ import annotations

import datetime
import pickle

import pytest

from lance_offsets import (
    CorruptOffsetError,
    HookError,
    InvalidConsumerNameError,
    LockTimeoutError,
    OffsetStoreError,
    StoreClosedError,
)
from lance_offsets._hooks import CommitInfo

KEY = (7, 2**64 - 1)
PATH = "/var/lib/lance/offsets/billing/topic-7-consumer-18446744073709551615.offset"
LOCK = "/var/lib/lance/offsets/billing/topic-7-consumer-18446744073709551615.lock"
INFO = CommitInfo(7, 9, 42, None, datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc))


def _samples() -> list[OffsetStoreError]:
    return [
        OffsetStoreError("plain", key=KEY, path=PATH),
        CorruptOffsetError(KEY, PATH, b"12x\n", "not a decimal number"),
        LockTimeoutError(KEY, LOCK, 2.5),
        InvalidConsumerNameError("../etc", "contains '/'"),
        StoreClosedError("<LockFileOffsetStore '/x' closed>"),
        HookError(INFO, [RuntimeError("hook 1 down"), ValueError("hook 2 down")]),
    ]


@pytest.mark.parametrize(
    ("error_type", "builtin"),
    [
        (CorruptOffsetError, ValueError),
        (LockTimeoutError, TimeoutError),
        (InvalidConsumerNameError, ValueError),
        (StoreClosedError, ValueError),
        (HookError, Exception),
    ],
)
def test_each_error_is_an_offset_store_error_and_its_builtin(
    error_type: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error_type, OffsetStoreError)
    assert issubclass(error_type, builtin)


def test_corrupt_offset_error_names_key_file_content_and_remedy() -> None:
    error = CorruptOffsetError(KEY, PATH, b"12x\n", "not a decimal number")
    assert str(error) == (
        f"corrupt offset for topic_id=7 consumer_id=18446744073709551615, file {PATH!r}: "
        "not a decimal number (content b'12x\\n'); restore the file from a backup or set the "
        "offset explicitly with 'lance-offsets set'"
    )
    assert repr(error) == f"CorruptOffsetError({error.message!r}, key={KEY!r}, path={PATH!r})"
    assert (error.key, error.path, error.content, error.reason) == (
        KEY,
        PATH,
        b"12x\n",
        "not a decimal number",
    )


def test_corrupt_offset_error_shows_at_most_40_bytes_of_content() -> None:
    error = CorruptOffsetError(KEY, PATH, b"9" * 100, "too long")
    assert f"(content {b'9' * 40!r}...)" in str(error)
    assert error.content == b"9" * 100  # the attribute keeps everything


def test_lock_timeout_error_names_the_lock_file_and_timeout() -> None:
    error = LockTimeoutError(KEY, LOCK, 2.5)
    assert str(error) == (
        f"could not lock topic_id=7 consumer_id=18446744073709551615, file {LOCK!r} within "
        "2.5 s; another process holds it (a stuck consumer, or the Rust client mid-save)"
    )
    assert (error.key, error.path, error.timeout) == (KEY, LOCK, 2.5)


def test_invalid_consumer_name_error_names_the_name_and_reason() -> None:
    error = InvalidConsumerNameError("../etc", "contains '/'")
    assert str(error) == "invalid consumer name '../etc': contains '/'"
    assert repr(error) == (
        "InvalidConsumerNameError(\"invalid consumer name '../etc': contains '/'\", "
        "key=None, path=None)"
    )
    assert (error.name, error.reason) == ("../etc", "contains '/'")


def test_store_closed_error_says_what_to_do() -> None:
    error = StoreClosedError("<store>")
    assert str(error) == "<store> is closed; open a new handle"


def test_hook_error_says_the_commit_happened() -> None:
    error = HookError(INFO, [RuntimeError("down")])
    assert str(error) == (
        "offset 42 for topic_id=7 consumer_id=9 was committed, but 1 post-commit hook(s) failed: "
        "RuntimeError: down"
    )
    assert error.key == (7, 9)
    assert error.info is INFO


@pytest.mark.parametrize("error", _samples(), ids=lambda e: type(e).__name__)
def test_every_error_pickles_with_its_attributes(error: OffsetStoreError) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert repr(clone) == repr(error)
    assert clone.args == error.args
    plain = {k: v for k, v in vars(error).items() if k != "errors"}
    assert {k: v for k, v in vars(clone).items() if k != "errors"} == plain
    if isinstance(error, HookError):
        assert isinstance(clone, HookError)
        assert [repr(e) for e in clone.errors] == [repr(e) for e in error.errors]
