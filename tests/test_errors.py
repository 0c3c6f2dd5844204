"""Redaction: URLs lose their userinfo whatever the password holds; the secrets registered for
a run are masked while it lasts; secret fields and parameters are found by structure."""

from __future__ import annotations

import pytest

from tidesync.errors import redact, register_secret, secret_scope
from tidesync.spec.secrets import register_document, secret_parameters, url_passwords


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("mysql://app:s3c/ret@db:3306/x", "mysql://***@db:3306/x"),
        ("jdbc:postgresql://u:p@ss:w/rd@h:5432/db?x=1", "jdbc:postgresql://***@h:5432/db?x=1"),
        ("failed: 's3://AKIA:wJal/rX+U@bucket/k.csv'", "failed: 's3://***@bucket/k.csv'"),
        ("http://x/y?next=http://u:p@h", "http://x/y?next=http://***@h"),
        ("postgresql://etl@db/dw", "postgresql://etl@db/dw"),  # no password: nothing to hide
        ("s3://bucket/a@b.csv", "s3://bucket/a@b.csv"),
    ],
)
def test_urls_never_show_their_userinfo(text: str, masked: str) -> None:
    assert redact(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password=hunter2, user=x", "password=***, user=x"),
        ("token: 'abc.def'", "token: '***'"),
        (
            "Access denied for user 'etl'@'db' (using password: YES)",
            "Access denied for user 'etl'@'db' (using password: YES)",  # says one was sent
        ),
        (  # a key path, then the problem: no value follows the colon
            "job.content[0].writer.parameter.token: unknown key",
            "job.content[0].writer.parameter.token: unknown key",
        ),
        ("connections.dw.password: must be text", "connections.dw.password: must be text"),
    ],
)
def test_key_value_secrets_are_masked(text: str, masked: str) -> None:
    assert redact(text) == masked


def test_a_registered_secret_is_masked_while_its_scope_lasts_in_every_spelling() -> None:
    secret = 'pa ss/w"rd'
    with secret_scope():
        register_secret(secret)
        assert redact(f"got {secret} and {secret!r}") == "got *** and '***'"
        assert redact('{"v": "pa ss/w\\"rd"}') == '{"v": "***"}'  # as JSON writes it
        assert redact("pa%20ss%2Fw%22rd") == "***"  # as a URL writes it
    assert redact(f"got {secret}") == f"got {secret}"


def test_an_inner_scope_hands_its_secrets_to_the_outer_one() -> None:
    with secret_scope():
        with secret_scope():
            register_secret("inner-secret")
        assert redact("inner-secret") == "***"
    assert redact("inner-secret") == "inner-secret"


def test_outside_a_run_nothing_is_registered() -> None:
    register_secret("lonely-secret")
    assert redact("lonely-secret") == "lonely-secret"


def test_short_values_are_not_masked_inside_words() -> None:
    with secret_scope():
        register_secret("abc")
        assert redact("abcdef") == "abcdef"


def test_secret_fields_and_url_passwords_are_found_by_structure() -> None:
    doc = {
        "reader": {
            "parameter": {
                "accessKeySecret": "key-secret-1",
                "connection": [{"jdbcUrl": ["jdbc:mysql://u:url/pw@h/db"]}],
                "column": ["password"],  # a column named so is not a secret
            }
        },
        "writer": {"parameter": {"Access_Key_Secret": "key-secret-2", "username": "etl-user"}},
    }
    with secret_scope() as found:
        register_document(doc)
        assert {"key-secret-1", "key-secret-2", "url/pw"} <= set(found)
        assert redact("password key-secret-1 url/pw etl-user") == "password *** *** etl-user"
    assert set(url_passwords("s3://K:a%2Fb@bucket/x")) == {"a%2Fb", "a/b"}


def test_parameters_reaching_a_secret_field_or_a_url_password_are_secret() -> None:
    doc = {
        "job": {
            "content": [
                {
                    "reader": {
                        "parameter": {
                            "password": "${pw}",
                            "jdbcUrl": "jdbc:mysql://u:${urlpw}@h/${db}",
                            "where": "ds = '${bizdate}' and k = '${env:KEY}'",
                        }
                    }
                }
            ]
        }
    }
    assert secret_parameters(doc) == {"pw", "urlpw"}


def test_secret_fields_of_a_url_query_string_are_secrets() -> None:
    url = "jdbc:postgresql://db:5432/dw?user=etl&password=ab%2Ccd'ef&sslmode=require"
    assert set(url_passwords(url)) == {"ab%2Ccd'ef", "ab,cd'ef"}
    assert secret_parameters({"jdbcUrl": "jdbc:mysql://db/x?user=u&pwd=${pw}&ssl=${ssl}"}) == {"pw"}
    with secret_scope():
        register_document({"connection": [{"jdbcUrl": url}]})
        assert redact("'ab,cd'ef' rejected") == "'***' rejected"


def test_a_url_field_whose_password_holds_a_quote_gives_the_whole_password() -> None:
    # a quote ends a URL inside a message, but a field holds one URL and nothing else
    assert url_passwords("postgresql://etl:it's,x@db:5432/dw") == ["it's,x"]
    assert url_passwords("failed: 'postgresql://etl:pw@db'") == ["pw"]
