"""Pure helpers of the connection layer: where the token goes, how long to wait between attempts."""

from __future__ import annotations

from itertools import islice

import pytest
from streamer_client import ErrorCode
from streamer_client._connection import backoff_delays, handshake_target
from streamer_client._errors import (
    RemoteError,
    RequestCancelledError,
    RequestTimeout,
    remote_error,
)


def test_token_goes_in_the_authorization_header_by_default() -> None:
    url, headers = handshake_target("wss://api.example.com/prod", "abc", query_token=False)
    assert url == "wss://api.example.com/prod"
    assert headers == {"Authorization": "Bearer abc"}


def test_query_token_keeps_other_parameters_and_replaces_an_old_token() -> None:
    url, headers = handshake_target(
        "wss://api.example.com/prod?region=eu&token=old", "new+/=", query_token=True
    )
    assert url == "wss://api.example.com/prod?region=eu&token=new%2B%2F%3D"
    assert headers == {}


def test_no_token_means_no_credentials() -> None:
    assert handshake_target("ws://h/p", None, query_token=True) == ("ws://h/p", {})


def test_backoff_grows_exponentially_within_jitter_bounds_and_caps() -> None:
    delays = list(islice(backoff_delays(1.0, 8.0, 2.0), 8))
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling


def test_backoff_is_jittered() -> None:
    samples = {next(backoff_delays(1.0, 8.0, 2.0)) for _ in range(20)}
    assert len(samples) > 1


def test_unknown_codes_are_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="NOT_A_CODE"):
        remote_error("NOT_A_CODE", "x")


def test_remote_errors_keep_their_context() -> None:
    error = remote_error(ErrorCode.CANCELLED, "stopped", {"by": "user"}, request_id="r1")
    assert isinstance(error, RequestCancelledError)
    assert isinstance(error, RemoteError)
    assert (error.code, error.message, error.details, error.request_id) == (
        ErrorCode.CANCELLED,
        "stopped",
        {"by": "user"},
        "r1",
    )
    assert str(error) == "CANCELLED: stopped"


def test_local_timeout_is_a_timeout_error() -> None:
    assert issubclass(RequestTimeout, TimeoutError)
