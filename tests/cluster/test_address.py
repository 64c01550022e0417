"""Tests for tuner.cluster.address: addresses, worker names and ports are checked before a
distributed search starts, as one-line errors."""

from __future__ import annotations

import socket

import pytest

from tuner.cluster import address
from tuner.errors import ConfigError


def test_addresses_and_worker_names_are_checked():
    assert address.parse_address("127.0.0.1:8470", "--chief") == ("127.0.0.1", 8470)
    assert address.parse_address("[::1]:9000", "--chief") == ("::1", 9000)
    for bad in ("127.0.0.1", ":80", "host:0", "host:http", "host:70000"):
        with pytest.raises(ConfigError, match="--chief must be HOST:PORT"):
            address.parse_address(bad, "--chief")
    assert address.check_worker_id(" w1 ") == "w1"
    for bad in ("", "my chief", "Chief-2", "a b"):
        with pytest.raises(ConfigError, match="--worker-id"):
            address.check_worker_id(bad)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--chief", "127.0.0.1:1234", "--worker", "127.0.0.1:1234"], "not both"),
        (["--worker", "127.0.0.1:1234"], "needs --worker-id"),
        (["--worker-id", "w1"], "pass it with --worker"),
        (["--worker", "127.0.0.1:1234", "--worker-id", "chief9"], "does not contain 'chief'"),
        (["--worker", "127.0.0.1:1234", "--worker-id", "w1", "--overwrite"], "Only the chief"),
        (["--chief", "nonsense"], "--chief must be HOST:PORT"),
    ],
)
def test_bad_cluster_flags_are_one_line_and_exit_2(tmp_path, capsys, flags, message):
    from tuner import search

    code = search.main(["--data", str(tmp_path), "--backbone", "tiny", *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError, match=f"Port {port} on 127.0.0.1 is already in use"):
            address.check_port("127.0.0.1", port)
