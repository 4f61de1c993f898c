"""The keys file: stored digests only, atomic rewrites, the CLI, and live re-reading."""

from __future__ import annotations

import hashlib
import logging
import os
import time

import orjson
import pytest
from click.testing import CliRunner

from ml_app.core import apikeys
from ml_app.core.apikeys import KeyRing, KeysFileError
from ml_app.ops.cli import main


def _cli(path, *args):
    return CliRunner().invoke(main, ["keys", "--file", str(path), *args])


def test_add_prints_the_key_once_and_stores_only_its_sha256(tmp_path):
    path = tmp_path / "keys.json"
    result = _cli(path, "add", "alice", "--models", "iris, diabetes", "--limit", "5/second")
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    assert len(key) >= 43  # 32 random bytes, URL-safe base64
    stored = path.read_text()
    assert key not in stored
    assert orjson.loads(stored) == {
        "keys": [
            {
                "id": "alice",
                "sha256": hashlib.sha256(key.encode()).hexdigest(),
                "models": ["diabetes", "iris"],
                "rate_limit": "5/second",
            }
        ]
    }
    assert oct(path.stat().st_mode & 0o777) == "0o644"  # the server may run as another user
    path.chmod(0o640)
    _cli(path, "add", "bob")
    assert oct(path.stat().st_mode & 0o777) == "0o640"  # a rewrite keeps the operator's choice


def test_list_shows_ids_models_and_limits_but_no_digest(tmp_path):
    path = tmp_path / "keys.json"
    _cli(path, "add", "alice", "--models", "iris")
    _cli(path, "add", "bob")
    result = _cli(path, "list")
    assert result.exit_code == 0
    assert orjson.loads(result.output) == [{"id": "alice", "models": ["iris"]}, {"id": "bob"}]


def test_revoke_removes_one_key_and_names_a_missing_one(tmp_path):
    path = tmp_path / "keys.json"
    _cli(path, "add", "alice")
    _cli(path, "add", "bob")
    assert _cli(path, "revoke", "alice").output == "revoked alice\n"
    assert [key.id for key in apikeys.read_keys(path)] == ["bob"]
    again = _cli(path, "revoke", "alice")
    assert (again.exit_code, again.output.strip()) == (1, "Error: no key alice")


def test_add_refuses_a_duplicate_or_unsafe_id_and_a_missing_file_setting(tmp_path):
    path = tmp_path / "keys.json"
    _cli(path, "add", "alice")
    assert "exists" in _cli(path, "add", "alice").output
    assert "bad key id" in _cli(path, "add", "al ice").output
    unset = CliRunner().invoke(main, ["keys", "list"])
    assert (unset.exit_code, "ML_APP_API_KEYS_FILE" in unset.output) == (1, True)


def test_add_refuses_a_limit_it_cannot_read(tmp_path):
    path = tmp_path / "keys.json"
    result = _cli(path, "add", "alice", "--limit", "ten a second")
    assert result.exit_code == 1
    assert result.output.startswith("Error: key alice: rate_limit")  # no key printed
    assert "ten a second" in result.output
    assert not path.exists()  # nothing written


def test_the_env_setting_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "keys.json"
    monkeypatch.setenv("ML_APP_API_KEYS_FILE", str(path))
    assert CliRunner().invoke(main, ["keys", "add", "carol"]).exit_code == 0
    assert [key.id for key in apikeys.read_keys(path)] == ["carol"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "expected"),
        (b'{"keys": [{"id": "a", "sha256": "zz"}]}', "sha256"),
        (b'{"keys": [{"id": "a", "sha256": "' + b"0" * 64 + b'", "models": "iris"}]}', "models"),
        (b'{"keys": [{"id": "a", "sha256": "' + b"0" * 64 + b'", "rate_limit": 5}]}', "rate_limit"),
        (
            b'{"keys": [{"id": "a", "sha256": "' + b"0" * 64 + b'", "rate_limit": "lots"}]}',
            "rate_limit",
        ),
        (
            b'{"keys": [{"id": "a", "sha256": "'
            + b"0" * 64
            + b'"}, {"id": "a", "sha256": "'
            + b"1" * 64
            + b'"}]}',
            "twice",
        ),
    ],
)
def test_a_bad_keys_file_is_refused_with_the_reason(content, message):
    with pytest.raises(KeysFileError, match=message):
        apikeys.parse_keys(content)


def test_several_keys_are_valid_at_once_and_a_wrong_one_is_not(tmp_path):
    path = tmp_path / "keys.json"
    first, second = apikeys.add_key(path, "old"), apikeys.add_key(path, "new", ("iris",))
    ring = KeyRing(path, interval=0)
    assert ring.find(first).id == "old"
    assert (ring.find(second).id, ring.find(second).allows("diabetes")) == ("new", False)
    assert ring.find(second).allows("iris")
    assert ring.find(first[:-1]) is None
    assert ring.find("") is None


def _age(path, seconds=5):
    # Two writes within one mtime tick still differ by inode (os.replace), but be explicit.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 10**9))


def test_the_ring_follows_the_file_after_the_interval(tmp_path, monkeypatch):
    path = tmp_path / "keys.json"
    old = apikeys.add_key(path, "old")
    clock = [1000.0]
    monkeypatch.setattr(apikeys.time, "monotonic", lambda: clock[0])
    ring = KeyRing(path, interval=2)
    _age(path)
    new = apikeys.add_key(path, "new")
    apikeys.revoke_key(path, "old")
    assert (ring.find(old).id, ring.find(new)) == ("old", None)  # within the interval
    clock[0] += 2
    assert (ring.find(old), ring.find(new).id) == (None, "new")


def test_a_broken_file_keeps_the_last_good_keys_and_is_logged(tmp_path, monkeypatch, caplog):
    path = tmp_path / "keys.json"
    key = apikeys.add_key(path, "alice")
    clock = [1000.0]
    monkeypatch.setattr(apikeys.time, "monotonic", lambda: clock[0])
    ring = KeyRing(path, interval=1)
    path.write_bytes(b'{"keys": [{"id": "alice", "sha')  # a non-atomic editor, mid-write
    clock[0] += 1
    with caplog.at_level(logging.ERROR, logger="ml_app.apikeys"):
        assert ring.find(key).id == "alice"
    assert "keeping the last good API keys" in caplog.text
    assert key not in caplog.text


def test_a_missing_file_accepts_no_key_until_it_appears(tmp_path, monkeypatch):
    path = tmp_path / "keys.json"
    clock = [1000.0]
    monkeypatch.setattr(apikeys.time, "monotonic", lambda: clock[0])
    ring = KeyRing(path, interval=1)
    key = apikeys.add_key(path, "alice")
    assert ring.find(key) is None
    clock[0] += 1
    assert ring.find(key).id == "alice"


def test_a_missing_file_is_explained_in_the_log_once(tmp_path, caplog):
    path = tmp_path / "secret" / "keys.json"
    with caplog.at_level(logging.INFO, logger="ml_app.apikeys"):
        ring = KeyRing(path, interval=0.001)
        for _ in range(3):
            time.sleep(0.002)
            assert ring.find("some-key") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once, not once per request
    assert str(path) in warnings[0].getMessage()
    assert "401" in warnings[0].getMessage() and "mount" in warnings[0].getMessage()
