"""File names, file contents and consumer-name validation of the lock-file layout."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lance_offsets import (
    MAX_CONSUMER_ID,
    MAX_OFFSET,
    MAX_TOPIC_ID,
    CorruptOffsetError,
    InvalidConsumerNameError,
)
from lance_offsets._layout import (
    MAX_CONSUMER_NAME_BYTES,
    MAX_OFFSET_FILE_BYTES,
    check_consumer_name,
    decode_offset,
    encode_offset,
    lock_name,
    offset_name,
    parse_offset_name,
    tmp_name,
)

KEY = (1, 100)
PATH = "/d/topic-1-consumer-100.offset"
topics = st.integers(0, MAX_TOPIC_ID)
consumers = st.integers(0, MAX_CONSUMER_ID)
offsets = st.integers(0, MAX_OFFSET)


def test_names_are_the_rust_clients() -> None:
    assert offset_name(1, 100) == "topic-1-consumer-100.offset"
    assert lock_name(1, 100) == "topic-1-consumer-100.lock"
    assert tmp_name(1, 100) == "topic-1-consumer-100.offset.tmp"


@settings(deadline=None, max_examples=300)
@given(topics, consumers)
def test_offset_names_round_trip(topic_id: int, consumer_id: int) -> None:
    assert parse_offset_name(offset_name(topic_id, consumer_id)) == (topic_id, consumer_id)


@settings(deadline=None, max_examples=300)
@given(topics, consumers, topics, consumers)
def test_distinct_keys_get_distinct_names(t1: int, c1: int, t2: int, c2: int) -> None:
    assert (offset_name(t1, c1) == offset_name(t2, c2)) == ((t1, c1) == (t2, c2))


def test_decimal_spellings_that_collide_naively_stay_apart() -> None:
    assert offset_name(1, 23) != offset_name(12, 3)


@pytest.mark.parametrize(
    "name",
    [
        "topic-1-consumer-2.offset.tmp",  # a save in progress or killed
        "topic-1-consumer-2.lock",
        "notes.txt",
        "topic-01-consumer-2.offset",  # Rust reads it as (1, 2): it would alias the real file
        "topic-1-consumer-02.offset",
        "topic-+1-consumer-2.offset",
        "topic--1-consumer-2.offset",
        "topic-1-consumer-2-extra.offset",  # Rust's split('-') would accept it
        "topic-1-consumer-2.offset~",
        "Topic-1-consumer-2.offset",
        "topic-1-consumer-.offset",
        "topic-4294967296-consumer-0.offset",  # topic id out of the u32 range
        "topic-0-consumer-18446744073709551616.offset",  # consumer id out of the u64 range
        "topic-\u0661-consumer-2.offset",  # an Arabic-Indic digit: str.isdigit() would say yes
        " topic-1-consumer-2.offset",
    ],
)
def test_foreign_and_non_canonical_names_are_not_keys(name: str) -> None:
    assert parse_offset_name(name) is None


def test_encoding_is_what_writeln_writes() -> None:
    assert encode_offset(0) == b"0\n"
    assert encode_offset(12345) == b"12345\n"
    assert encode_offset(MAX_OFFSET) == b"18446744073709551615\n"


@settings(deadline=None, max_examples=300)
@given(offsets)
def test_offsets_round_trip(offset: int) -> None:
    assert decode_offset(encode_offset(offset), KEY, PATH) == offset


@pytest.mark.parametrize(
    ("content", "value"),
    [
        (b"123\n", 123),
        (b"  123 \r\n", 123),  # Rust trims surrounding whitespace
        (b"\t007\n", 7),  # Rust's u64 parser accepts leading zeros
        (b"+5\n", 5),  # and one leading '+'
        (b"18446744073709551615\n", MAX_OFFSET),
    ],
)
def test_decoding_accepts_what_the_rust_client_accepts(content: bytes, value: int) -> None:
    assert decode_offset(content, KEY, PATH) == value


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"\n", "only whitespace"),
        (b"12x\n", "not a decimal number"),
        (b"-1\n", "not a decimal number"),
        (b"1_000\n", "not a decimal number"),  # Python's int() would accept it; Rust does not
        (b"1 2\n", "not a decimal number"),
        (b"++1\n", "not a decimal number"),
        (b"\x00\x00\x00\x00", "not a decimal number"),  # a zero-filled block after a crash
        ("\u0661\u0662".encode(), "not a decimal number"),
        (b"0x10\n", "not a decimal number"),
        (b"18446744073709551616\n", "out of the u64 range"),
        (b"123", "no trailing newline"),  # "1234\n" cut short: must be loud (F1)
        (b"1" * (MAX_OFFSET_FILE_BYTES + 1), "larger than 4096 bytes"),
    ],
)
def test_damaged_contents_raise_naming_key_and_file(content: bytes, reason: str) -> None:
    with pytest.raises(CorruptOffsetError) as caught:
        decode_offset(content, KEY, PATH)
    assert caught.value.key == KEY
    assert caught.value.path == PATH
    assert caught.value.reason.startswith(reason)
    assert "topic_id=1 consumer_id=100" in str(caught.value)
    assert PATH in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        "billing",
        "my-consumer",
        "svc_1.v2",
        "a" * MAX_CONSUMER_NAME_BYTES,
        "caf\u00e9",
        ".hidden",
        "CONSOLE",  # starts like CON but is not a device name
        "com10",
        "lpt",
    ],
)
def test_portable_names_are_accepted(name: str) -> None:
    assert check_consumer_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        (".", "empty, '.' and '..'"),
        ("..", "empty, '.' and '..'"),
        ("a/b", "contains '/'"),
        ("../escape", "contains '/'"),
        ("a\\b", "contains '\\\\'"),
        ("C:evil", "contains ':'"),
        ("x:stream", "contains ':'"),
        ("a<b", "contains '<'"),
        ('a"b', "contains '\"'"),
        ("a|b", "contains '|'"),
        ("a?b", "contains '?'"),
        ("a*b", "contains '*'"),
        ("nul\x00byte", "contains NUL"),
        ("tab\there", "contains NUL or a control character"),
        ("bell\x07", "contains NUL or a control character"),
        ("del\x7f", "contains NUL or a control character"),
        ("trailing.", "ends with a dot"),
        ("trailing ", "ends with a dot or a space"),
        ("CON", "'CON' is a reserved device name"),
        ("con", "'CON' is a reserved device name"),
        ("con.txt", "'CON' is a reserved device name"),
        ("NUL.tar.gz", "'NUL' is a reserved device name"),
        ("Prn", "'PRN' is a reserved device name"),
        ("aux", "'AUX' is a reserved device name"),
        ("COM1", "'COM1' is a reserved device name"),
        ("com9.log", "'COM9' is a reserved device name"),
        ("LPT1", "'LPT1' is a reserved device name"),
        ("lpt9", "'LPT9' is a reserved device name"),
        ("COM\u00b9", "'COM\u00b9' is a reserved device name"),
        ("conin$", "'CONIN$' is a reserved device name"),
        ("con .txt", "'CON' is a reserved device name"),
        ("a" * (MAX_CONSUMER_NAME_BYTES + 1), "256 UTF-8 bytes"),
        ("\u00e9" * 128, "256 UTF-8 bytes"),
        ("bad\udc80", "contains a lone surrogate"),
    ],
)
def test_unsafe_or_unportable_names_are_rejected(name: str, reason: str) -> None:
    with pytest.raises(InvalidConsumerNameError) as caught:
        check_consumer_name(name)
    assert isinstance(caught.value, ValueError)
    assert caught.value.name == name
    assert caught.value.reason.startswith(reason), caught.value.reason
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", [None, b"billing", 3])
def test_non_str_names_raise_type_error(name: object) -> None:
    with pytest.raises(TypeError, match="consumer_name must be a str"):
        check_consumer_name(name)
