"""The SDK's exception tree: every face's error format becomes the class of its status, with the
platform's code and message, and the CLI's exit code follows from the class."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.cli.output import Exit, exit_code
from modelfleet.sdk import errors
from modelfleet.sdk.errors import error_from_response


def response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_native_error_format() -> None:
    e = error_from_response(
        response(
            404, {"error": {"code": "deployment_not_found", "message": "no such", "details": [{"a": 1}]}}
        )
    )
    assert isinstance(e, errors.NotFound)
    assert (e.status, e.code, e.message, e.details) == (404, "deployment_not_found", "no such", [{"a": 1}])


def test_oip_and_elasticsearch_formats() -> None:
    e = error_from_response(
        response(429, {"error": "queue full", "code": "queue_full"}, {"retry-after": "2"})
    )
    assert isinstance(e, errors.TooManyRequests)
    assert (e.code, e.message, e.retry_after) == ("queue_full", "queue full", 2.0)
    es = error_from_response(
        response(400, {"error": {"type": "illegal_argument_exception", "reason": "bad"}, "status": 400})
    )
    assert isinstance(es, errors.BadRequest)
    assert (es.code, es.message) == ("illegal_argument_exception", "bad")


def test_a_body_that_is_not_json_keeps_its_text() -> None:
    e = error_from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(e, errors.ServerError)
    assert e.message == "<html>bad gateway</html>"


@given(st.integers(min_value=400, max_value=599))
def test_every_error_status_maps_to_an_api_error_of_its_family(status: int) -> None:
    e = error_from_response(response(status, {"error": {"code": "c", "message": "m"}}))
    assert isinstance(e, errors.ApiError) and e.status == status
    assert isinstance(e, errors.ServerError) == (status >= 500)
    if status == 503:
        assert isinstance(e, errors.Unavailable)
    assert exit_code(e) != Exit.OK


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotFound(404, "x", "m"), Exit.NOT_FOUND),
        (errors.Unauthorized(401, "x", "m"), Exit.AUTH),
        (errors.Forbidden(403, "x", "m"), Exit.AUTH),
        (errors.Conflict(409, "x", "m"), Exit.CONFLICT),
        (errors.BadRequest(400, "x", "m"), Exit.USAGE),
        (errors.TooManyRequests(429, "x", "m"), Exit.BUSY),
        (errors.ServerError(500, "x", "m"), Exit.ERROR),
        (errors.DeploymentFailed("d", "bad model"), Exit.FAILED),
        (errors.WaitTimeout("late"), Exit.TIMEOUT),
        (errors.ConnectionFailed("refused"), Exit.UNREACHABLE),
    ],
)
def test_exit_codes(error: errors.ModelfleetError, code: Exit) -> None:
    assert exit_code(error) == code


def test_a_wait_timeout_is_a_timeout_error() -> None:
    assert isinstance(errors.WaitTimeout("late"), TimeoutError)


def test_the_pipelines_face_format() -> None:
    e = error_from_response(
        response(404, {"message": "no such execution", "name": "not_found", "request_id": "r"})
    )
    assert isinstance(e, errors.NotFound)
    assert (e.code, e.message) == ("not_found", "no such execution")
