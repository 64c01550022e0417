"""Where the chief of a distributed search listens, and how KerasTuner's processes find it.

A distributed search (`tuner.cluster.chief`, `tuner.cluster.client`) names its chief with
`--chief HOST:PORT` and each worker with `--worker HOST:PORT --worker-id NAME`. KerasTuner reads
the roles from its `KERASTUNER_*` environment variables (`set_environment`). Light to import: the
command line checks its flags with these before TensorFlow starts.
"""

from __future__ import annotations

import os
import socket

from tuner.errors import ConfigError

ENV_IP = "KERASTUNER_ORACLE_IP"
ENV_PORT = "KERASTUNER_ORACLE_PORT"
ENV_ID = "KERASTUNER_TUNER_ID"
CHIEF_ID = "chief"  # KerasTuner takes any tuner id containing "chief" for the chief
TUNER_ID_METADATA = "tuner-id"  # gRPC metadata naming the worker behind a heartbeat


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets) as (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{flag} must be HOST:PORT, for example 127.0.0.1:8470. Received: {text!r}"
        )
    return host, int(port)


def check_worker_id(name: str) -> str:
    """A worker's name, checked: KerasTuner would take any name holding "chief" for the chief."""
    name = name.strip()
    if not name or CHIEF_ID in name.lower() or any(c.isspace() for c in name):
        raise ConfigError(
            "--worker-id must be a name without spaces that does not contain 'chief' (KerasTuner "
            f"takes any such id for the chief). Received: {name!r}"
        )
    return name


def set_environment(role: str, host: str, port: int, worker_id: str | None = None) -> None:
    """Sets KerasTuner's `KERASTUNER_*` variables for `role` ("chief" or "worker")."""
    os.environ[ENV_IP] = host
    os.environ[ENV_PORT] = str(port)
    os.environ[ENV_ID] = CHIEF_ID if role == "chief" else str(worker_id)


def clear_environment() -> None:
    """Removes KerasTuner's distributed variables (a single-process search after a cluster run in
    the same process)."""
    for name in (ENV_IP, ENV_PORT, ENV_ID):
        os.environ.pop(name, None)


def check_port(host: str, port: int) -> None:
    """Refuses, as a one-line error, an address the chief cannot listen on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ConfigError(f"--chief {host}:{port}: cannot resolve {host!r} ({error}).") from error
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == 98 or "in use" in str(error).lower():
                raise ConfigError(
                    f"Port {port} on {host} is already in use (another chief, or another "
                    "program); pick another --chief HOST:PORT, or stop what holds it."
                ) from error
            raise ConfigError(
                f"--chief {host}:{port}: cannot listen there ({error.strerror or error}); pass "
                "an address of this machine."
            ) from error
