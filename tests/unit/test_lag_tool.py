"""The lag tool against a broker that is not there: one clear line and exit code 3."""

from __future__ import annotations

import io
import socket

import pytest

from streams.lag import EXIT_UNREACHABLE, run_lag_command


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_broker_down_gives_one_line_and_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = f"127.0.0.1:{closed_port()}"
    code = run_lag_command(
        bootstrap,
        "g",
        ["needs"],
        as_json=False,
        watch_s=None,
        max_lag=None,
        max_seconds=None,
        out=io.StringIO(),
    )
    assert code == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "cannot reach the broker" in err
    assert "Traceback" not in err
