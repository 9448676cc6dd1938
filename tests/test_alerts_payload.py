"""The alert engine's pure parts: reading health records, signatures, the retry policy."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from api.alerts.events import parse_health_change, parse_health_check, session_opening
from api.alerts.payload import retry_delay, retryable, signature, verify

PROJECT = str(uuid.uuid4())


def test_a_tag_change_reads_back_and_names_its_incident_by_session_and_tag():
    change = parse_health_change(orjson.dumps({"project_id": PROJECT, "session_id": "s-1", "version": 4,
                                               "health_tag": "timeout", "previous_tag": None, "at": "x"}))
    assert change is not None and change.health_tag == "timeout"
    opening = session_opening(change)
    assert opening.dedup_key == "session:s-1:timeout" and opening.source_event == "session:s-1@4"


@pytest.mark.parametrize("value", [
    b"", b"[]", b"\xff", b'{"project_id": "not-a-uuid", "session_id": "s", "version": 1, "health_tag": "t"}',
    orjson.dumps({"project_id": PROJECT, "session_id": "", "version": 1, "health_tag": "t"}),
    orjson.dumps({"project_id": PROJECT, "session_id": "s", "version": True, "health_tag": "t"}),
    orjson.dumps({"project_id": PROJECT, "session_id": "s", "version": "1", "health_tag": "t"}),
])
def test_unreadable_tag_changes_are_skipped(value):
    assert parse_health_change(value) is None


def test_a_check_without_zone_is_utc_and_bad_checks_are_skipped():
    check = parse_health_check(orjson.dumps({"project_id": PROJECT, "server_name": "jira", "status": "down",
                                             "checked_at": "2026-12-01T10:00:00"}))
    assert check.checked_at == datetime(2026, 12, 1, 10, tzinfo=UTC)
    for bad in ({"status": "sideways"}, {"checked_at": "yesterday"}, {"server_name": 3}):
        record = {"project_id": PROJECT, "server_name": "jira", "status": "up", "checked_at": "2026-12-01T10:00:00Z",
                  **bad}
        assert parse_health_check(orjson.dumps(record)) is None


def test_the_signature_is_hmac_sha256_over_timestamp_and_body():
    body, secret = b'{"event":"fired"}', "s" * 20
    header = signature(secret, "1700000000", body)
    assert header == "sha256=" + hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert verify(secret, "1700000000", body, header)
    assert not verify(secret, "1700000001", body, header)  # a replay with a new timestamp
    assert not verify("t" * 20, "1700000000", body, header)


def test_which_answers_are_retried_and_when():
    assert [retryable(status) for status in (None, 500, 503, 429, 400, 404, 410, 301)] == [
        True, True, True, True, False, False, False, False]
    assert [retry_delay(n, 10) for n in range(1, 6)] == [10, 20, 40, 80, 160]
    assert retry_delay(1, 10, retry_after=120) == 120  # the receiver asked for longer
    assert retry_delay(3, 10, retry_after=5) == 40
    assert retry_delay(1, 10, retry_after=10**6) == 600  # capped
