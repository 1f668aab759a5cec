"""The manifest trailer: written after the dump, split off on restore, and checked against the dump."""

from __future__ import annotations

import hashlib
import os

import pytest

from opsctl.errors import IntegrityError
from opsctl.manifest import MAX_TRAILER, DumpFacts, Manifest, TableStats, TrailerSplitter, encode_trailer


def manifest_for(dump: bytes) -> Manifest:
    facts = DumpFacts(engine="sqlite", database="crm", dump_format="test", server_version="3",
                      tables=(TableStats("customers", 3), TableStats("odd \"name\" ✓", 0)))
    return Manifest(policy="p", opsctl_version="0", started_at="s", finished_at="f", dump_bytes=len(dump),
                    dump_sha256=hashlib.sha256(dump).hexdigest(), facts=facts)


def split(stored: bytes, chunk: int) -> tuple[bytes, TrailerSplitter]:
    splitter = TrailerSplitter(stored[i:i + chunk] for i in range(0, len(stored), chunk))
    return b"".join(splitter), splitter


SIZES_AND_CHUNKS = [(0, 7), (1, 7), (4096, 7), (0, 1 << 20), (4096, 1 << 20), (MAX_TRAILER - 10, 1 << 20),
                    (MAX_TRAILER + 12345, 1 << 20), (3 * MAX_TRAILER, 1 << 20), (3 * MAX_TRAILER, 999_983)]


@pytest.mark.parametrize(("size", "chunk"), SIZES_AND_CHUNKS)
def test_dump_and_manifest_come_back_apart(size, chunk):
    dump = os.urandom(size)
    manifest = manifest_for(dump)
    restored, splitter = split(dump + encode_trailer(manifest), chunk)
    assert restored == dump
    assert splitter.manifest == manifest
    assert splitter.manifest.sha256 == manifest.sha256


def test_a_changed_byte_is_caught_before_the_last_bytes_are_released():
    dump = os.urandom(3 * MAX_TRAILER)
    stored = bytearray(dump + encode_trailer(manifest_for(dump)))
    stored[100] ^= 1
    received = []
    pieces = TrailerSplitter([bytes(stored)[i:i + (1 << 20)] for i in range(0, len(stored), 1 << 20)])
    with pytest.raises(IntegrityError, match="does not match its manifest"):
        received.extend(pieces)
    assert sum(map(len, received)) < len(dump)


def test_a_stream_without_trailer_is_not_a_good_backup():
    with pytest.raises(IntegrityError, match="no opsctl manifest"):
        list(TrailerSplitter([os.urandom(1000)]))


def test_a_truncated_stream_is_not_a_good_backup():
    dump = os.urandom(5000)
    stored = dump + encode_trailer(manifest_for(dump))
    with pytest.raises(IntegrityError):
        list(TrailerSplitter([stored[:-3]]))
