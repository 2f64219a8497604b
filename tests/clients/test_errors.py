"""Partners' error answers reach histories and logs as status and error code, never as their body."""

from __future__ import annotations

import httpx
import pytest

from clients.errors import PermanentError, TransientError, as_code, leading_code, raise_for_status

EMAIL = "rosangela.vasconcellos@example.com.br"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, {"error": {"code": "OMS003", "message": f"Order of {EMAIL} not found"}}, "HTTP 404 OMS003"),
        (400, {"code": "INVALID_DATA", "message": f"invalid Email {EMAIL}", "status": "error"},
         "HTTP 400 INVALID_DATA"),
        (202, None, ""),
        (422, {"data": [{"code": "DUPLICATE_DATA", "details": {"Email": EMAIL}}]}, "HTTP 422 DUPLICATE_DATA"),
        (422, {"error": f"lead {EMAIL} exists"}, "HTTP 422 ("),  # a sentence is not a code
        (500, f"<html>{EMAIL}</html>", "HTTP 500 ("),
    ],
)  # fmt: skip
def test_messages_keep_the_code_and_drop_the_body(status: int, body: object, expected: str) -> None:
    content = body if isinstance(body, str) else None
    response = httpx.Response(status, json=body if content is None and body else None, content=content)
    if status < 300:
        raise_for_status("dealer-crm:x", response)  # success raises nothing
        return
    with pytest.raises((PermanentError, TransientError)) as error:
        raise_for_status("dealer-crm:x", response)
    assert str(error.value).startswith(f"dealer-crm:x: {expected}")
    assert EMAIL not in str(error.value)
    assert isinstance(error.value, TransientError) == (status == 500)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("LeadRejected: duplicated", "LeadRejected"),
        ("E1042: invalid model", "E1042"),
        ("123.456.789-00: CPF ja cadastrado", ""),  # a customer's CPF, echoed where a code would be
        ("11999990000: telefone duplicado", ""),  # a phone number
        ("Ana: duplicated", ""),  # a name
    ],
)
def test_a_leading_code_is_never_a_customers_number_or_name(message: str, code: str) -> None:
    assert leading_code(message) == code


def test_a_code_field_holding_a_customers_number_is_no_code() -> None:
    assert [as_code(value) for value in (429, "OMS003", "1042", "12345678900", "+55 11 99999-0000")] == [
        "429", "OMS003", "1042", "", "",
    ]  # fmt: skip
