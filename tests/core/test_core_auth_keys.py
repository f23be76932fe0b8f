"""KeySet loaders and SecretsManagerKeySource (against moto, with an injectable clock)."""

from __future__ import annotations

import datetime
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from cryptography.x509.oid import NameOID
from moto import mock_aws
from streamer_core.auth import (
    AuthError,
    AuthReason,
    KeySet,
    KeySource,
    SecretsManagerKeySource,
    TokenIssuer,
    TokenVerifier,
    generate_key_pair,
)

SECRET = "streamer/test/jwt-public-key"


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    return generate_key_pair("RS256")


@pytest.fixture(scope="module")
def ec_pair() -> tuple[str, str]:
    return generate_key_pair("ES256")


# --- KeySet loaders ----------------------------------------------------------------------------


def test_from_pem_text_and_bytes(rsa_pair: tuple[str, str]) -> None:
    for pem in (rsa_pair[1], rsa_pair[1].encode()):
        keys = KeySet.from_pem(pem)
        assert isinstance(keys.default, rsa.RSAPublicKey)
        assert list(keys) == [None]


def test_from_pem_with_kid_has_no_default(ec_pair: tuple[str, str]) -> None:
    keys = KeySet.from_pem(ec_pair[1], kid="k1")
    assert keys.default is None
    assert isinstance(keys.get("k1"), ec.EllipticCurvePublicKey)
    assert "k1" in keys
    assert len(keys) == 1


def test_from_pem_accepts_escaped_newlines(rsa_pair: tuple[str, str]) -> None:
    one_line = rsa_pair[1].strip().replace("\n", "\\n")
    assert "\n" not in one_line
    assert isinstance(KeySet.from_pem(one_line).default, rsa.RSAPublicKey)


def test_from_pem_accepts_a_certificate(rsa_pair: tuple[str, str]) -> None:
    private_key = serialization.load_pem_private_key(rsa_pair[0].encode(), password=None)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private_key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    keys = KeySet.from_pem(pem)
    token = TokenIssuer(rsa_pair[0]).issue("user-1", "acme")
    assert TokenVerifier(keys).verify(token).user_id == "user-1"


def test_from_file(tmp_path: Path, rsa_pair: tuple[str, str]) -> None:
    path = tmp_path / "public.pem"
    path.write_text(rsa_pair[1])
    for where in (path, str(path)):
        keys = KeySet.from_file(where, kid="file")
        assert isinstance(keys.get("file"), rsa.RSAPublicKey)


def test_from_pems_keeps_every_kid(rsa_pair: tuple[str, str], ec_pair: tuple[str, str]) -> None:
    keys = KeySet.from_pems({"r": rsa_pair[1], "e": ec_pair[1]})
    assert set(keys) == {"r", "e"}
    assert isinstance(keys.get("r"), rsa.RSAPublicKey)
    assert isinstance(keys.get("e"), ec.EllipticCurvePublicKey)
    assert keys.get("missing") is None
    assert repr(keys) == "KeySet(kids=['r', 'e'])"


def test_from_secret_string_with_a_pem(rsa_pair: tuple[str, str]) -> None:
    keys = KeySet.from_secret_string("\n  " + rsa_pair[1])
    assert isinstance(keys.default, rsa.RSAPublicKey)


def test_from_secret_string_with_json(rsa_pair: tuple[str, str], ec_pair: tuple[str, str]) -> None:
    keys = KeySet.from_secret_string(json.dumps({"2026-01": rsa_pair[1], "2026-02": ec_pair[1]}))
    assert set(keys) == {"2026-01", "2026-02"}


@pytest.mark.parametrize(
    "value",
    ["{not json", "{}", '{"k": 1}', '["a"]', "not a pem", ""],
)
def test_from_secret_string_refuses_bad_values(value: str) -> None:
    with pytest.raises(ValueError, match=r"JSON|PEM|key"):
        KeySet.from_secret_string(value)


def test_private_keys_are_refused(rsa_pair: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="private key"):
        KeySet.from_pem(rsa_pair[0])


def test_unsupported_key_types_are_refused() -> None:
    pem = (
        x25519.X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="supported"):
        KeySet.from_pem(pem)


def test_key_set_validates_its_table(rsa_pair: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="at least one"):
        KeySet({})
    with pytest.raises(ValueError, match="key ids"):
        KeySet({"": KeySet.from_pem(rsa_pair[1]).default})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="public key"):
        KeySet({"k": "not a key"})  # type: ignore[dict-item]


def test_values_put_the_default_first(rsa_pair: tuple[str, str], ec_pair: tuple[str, str]) -> None:
    rsa_key = KeySet.from_pem(rsa_pair[1]).default
    ec_key = KeySet.from_pem(ec_pair[1]).default
    assert rsa_key is not None
    assert ec_key is not None
    keys = KeySet({"e": ec_key, None: rsa_key})
    assert keys.values() == (rsa_key, ec_key)


# --- SecretsManagerKeySource -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fetches:
    """Counts GetSecretValue calls through botocore's event hooks, on a real (mocked) client."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        client.meta.events.register("before-call.secrets-manager.GetSecretValue", self._seen)

    def _seen(self, **_: Any) -> None:
        self.count += 1


@pytest.fixture
def secrets() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_secret_is_fetched_once_within_ttl_and_again_after(
    secrets: Any, rsa_pair: tuple[str, str]
) -> None:
    secrets.create_secret(Name=SECRET, SecretString=rsa_pair[1])
    fetches = Fetches(secrets)
    clock = FakeClock()
    source = SecretsManagerKeySource(SECRET, client=secrets, ttl_seconds=300, clock=clock)
    verifier = TokenVerifier(source)
    token = TokenIssuer(rsa_pair[0]).issue("user-1", "acme")

    for _ in range(50):
        assert verifier.verify(token).user_id == "user-1"
    assert fetches.count == 1

    clock.now += 299
    verifier.verify(token)
    assert fetches.count == 1

    clock.now += 2
    for _ in range(10):
        verifier.verify(token)
    assert fetches.count == 2


def test_rotated_secret_is_picked_up_after_ttl(
    secrets: Any, rsa_pair: tuple[str, str], ec_pair: tuple[str, str]
) -> None:
    secrets.create_secret(Name=SECRET, SecretString=json.dumps({"old": rsa_pair[1]}))
    clock = FakeClock()
    verifier = TokenVerifier(
        SecretsManagerKeySource(SECRET, client=secrets, ttl_seconds=60, clock=clock)
    )
    old_token = TokenIssuer(rsa_pair[0], kid="old").issue("user-1", "acme")
    new_token = TokenIssuer(ec_pair[0], algorithm="ES256", kid="new").issue("user-1", "acme")
    assert verifier.verify(old_token).user_id == "user-1"

    secrets.put_secret_value(SecretId=SECRET, SecretString=json.dumps({"new": ec_pair[1]}))
    with pytest.raises(AuthError) as before:
        verifier.verify(new_token)
    assert before.value.reason is AuthReason.UNKNOWN_KEY

    clock.now += 61
    assert verifier.verify(new_token).user_id == "user-1"
    with pytest.raises(AuthError) as after:
        verifier.verify(old_token)
    assert after.value.reason is AuthReason.UNKNOWN_KEY


def test_secret_binary_is_accepted(secrets: Any, rsa_pair: tuple[str, str]) -> None:
    secrets.create_secret(Name=SECRET, SecretBinary=rsa_pair[1].encode())
    keys = SecretsManagerKeySource(SECRET, client=secrets).keys()
    assert isinstance(keys.default, rsa.RSAPublicKey)


def test_client_is_created_lazily_on_first_use(
    secrets: Any, rsa_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets.create_secret(Name=SECRET, SecretString=rsa_pair[1])
    created: list[str] = []
    real_client: Any = boto3.client

    def recording_client(service: str, *args: Any, **kwargs: Any) -> Any:
        created.append(service)
        return real_client(service, *args, **kwargs)

    monkeypatch.setattr(boto3, "client", recording_client)
    source = SecretsManagerKeySource(SECRET)
    assert created == []
    source.keys()
    source.keys()
    assert created == ["secretsmanager"]


def test_previous_keys_survive_a_failed_refresh(
    secrets: Any, rsa_pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    secrets.create_secret(Name=SECRET, SecretString=rsa_pair[1])
    fetches = Fetches(secrets)
    clock = FakeClock()
    source = SecretsManagerKeySource(SECRET, client=secrets, ttl_seconds=300, clock=clock)
    first = source.keys()
    secrets.delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)

    clock.now += 301
    with caplog.at_level(logging.WARNING):
        assert source.keys() is first
    assert "keeping previous keys" in caplog.text
    assert fetches.count == 2

    clock.now += 10
    assert source.keys() is first
    assert fetches.count == 2

    clock.now += 30
    assert source.keys() is first
    assert fetches.count == 3


def test_missing_secret_refuses_tokens_with_unknown_key(
    secrets: Any, rsa_pair: tuple[str, str]
) -> None:
    verifier = TokenVerifier(SecretsManagerKeySource("no-such-secret", client=secrets))
    with pytest.raises(AuthError) as info:
        verifier.verify(TokenIssuer(rsa_pair[0]).issue("user-1", "acme"))
    assert info.value.reason is AuthReason.UNKNOWN_KEY


def test_source_satisfies_the_key_source_protocol(secrets: Any) -> None:
    assert isinstance(SecretsManagerKeySource(SECRET, client=secrets), KeySource)


@pytest.mark.parametrize("kwargs", [{"secret_id": ""}, {"secret_id": "s", "ttl_seconds": -1}])
def test_source_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"secret_id|ttl_seconds"):
        SecretsManagerKeySource(**kwargs)


def test_importing_auth_does_not_import_boto3() -> None:
    probe = "import sys, streamer_core.auth; print('boto3' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
