"""TokenVerifier against a JWKS endpoint: a local HTTP server on 127.0.0.1, no network."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from streamer_core.auth import AuthError, AuthReason, TokenIssuer, TokenVerifier, generate_key_pair


@dataclass
class JwksState:
    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    requests: int = 0


@dataclass(frozen=True)
class Endpoint:
    url: str
    state: JwksState


@dataclass(frozen=True)
class Signer:
    kid: str
    private_pem: str
    issuer: TokenIssuer
    jwk: dict[str, Any]


def make_signer(algorithm: str, kid: str) -> Signer:
    private_pem, public_pem = generate_key_pair(algorithm)
    public_key = serialization.load_pem_public_key(public_pem.encode())
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    jwk.update(kid=kid, use="sig", alg=algorithm)
    return Signer(kid, private_pem, TokenIssuer(private_pem, algorithm=algorithm, kid=kid), jwk)


@pytest.fixture(scope="module")
def rsa_signer() -> Signer:
    return make_signer("RS256", "rsa-1")


@pytest.fixture(scope="module")
def ec_signer() -> Signer:
    return make_signer("ES256", "ec-1")


@pytest.fixture
def endpoint(rsa_signer: Signer, ec_signer: Signer) -> Iterator[Endpoint]:
    state = JwksState(document={"keys": [rsa_signer.jwk, ec_signer.jwk]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            body = json.dumps(state.document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Endpoint(f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def refused(verifier: TokenVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    for part in (token, *token.split(".")):
        assert part not in str(info.value)
        assert part not in repr(info.value)
    return info.value


def test_rs256_and_es256_tokens_verify_through_jwks(
    endpoint: Endpoint, rsa_signer: Signer, ec_signer: Signer
) -> None:
    verifier = TokenVerifier(jwks_url=endpoint.url)
    rsa_token = rsa_signer.issuer.issue("user-r", "acme", ["a"])
    ec_token = ec_signer.issuer.issue("user-e", "acme", ["b"])
    assert verifier.verify(rsa_token).user_id == "user-r"
    assert verifier.verify(ec_token).permissions == frozenset({"b"})


def test_key_set_is_fetched_once_for_many_verifications(
    endpoint: Endpoint, rsa_signer: Signer, ec_signer: Signer
) -> None:
    verifier = TokenVerifier(jwks_url=endpoint.url)
    tokens = [
        rsa_signer.issuer.issue("user-r", "acme"),
        ec_signer.issuer.issue("user-e", "acme"),
    ]
    for _ in range(25):
        for token in tokens:
            verifier.verify(token)
    assert endpoint.state.requests == 1


def test_unknown_kid_is_refused_without_a_refetch_storm(
    endpoint: Endpoint, rsa_signer: Signer
) -> None:
    stranger = make_signer("RS256", "not-published")
    verifier = TokenVerifier(jwks_url=endpoint.url)
    verifier.verify(rsa_signer.issuer.issue("user-1", "acme"))
    for _ in range(5):
        assert refused(verifier, stranger.issuer.issue("user-1", "acme")).reason is (
            AuthReason.UNKNOWN_KEY
        )
    assert endpoint.state.requests == 1


def test_token_without_kid_is_tried_against_the_published_keys(
    endpoint: Endpoint, rsa_signer: Signer
) -> None:
    verifier = TokenVerifier(jwks_url=endpoint.url)
    kidless = TokenIssuer(rsa_signer.private_pem, algorithm="RS256").issue("user-2", "acme")
    assert verifier.verify(kidless).user_id == "user-2"
    stranger = TokenIssuer(generate_key_pair("ES256")[0], algorithm="ES256")
    assert refused(verifier, stranger.issue("user-3", "acme")).reason is AuthReason.BAD_SIGNATURE


def test_kid_pointing_at_a_key_of_another_family_is_bad_algorithm(
    endpoint: Endpoint, rsa_signer: Signer, ec_signer: Signer
) -> None:
    mislabelled = TokenIssuer(rsa_signer.private_pem, algorithm="RS256", kid=ec_signer.kid).issue(
        "user-1", "acme"
    )
    verifier = TokenVerifier(jwks_url=endpoint.url)
    assert refused(verifier, mislabelled).reason is AuthReason.BAD_ALGORITHM


def test_symmetric_key_published_in_jwks_is_never_used(endpoint: Endpoint) -> None:
    endpoint.state.document = {
        "keys": [{"kty": "oct", "kid": "shared", "k": "c2VjcmV0", "use": "sig", "alg": "HS256"}]
    }
    verifier = TokenVerifier(jwks_url=endpoint.url)
    signer = make_signer("RS256", "shared")
    assert refused(verifier, signer.issuer.issue("user-1", "acme")).reason is (
        AuthReason.BAD_ALGORITHM
    )


def test_unreachable_endpoint_refuses_with_unknown_key(rsa_signer: Signer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    verifier = TokenVerifier(jwks_url=f"http://127.0.0.1:{port}/jwks.json")
    error = refused(verifier, rsa_signer.issuer.issue("user-1", "acme"))
    assert error.reason is AuthReason.UNKNOWN_KEY
    assert str(port) not in error.message


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/jwks.json"])
def test_only_http_jwks_urls_are_accepted(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        TokenVerifier(jwks_url=url)


def test_jwks_verifier_still_checks_claims(endpoint: Endpoint, rsa_signer: Signer) -> None:
    verifier = TokenVerifier(jwks_url=endpoint.url, allowed_tenants={"acme"})
    expired = rsa_signer.issuer.issue("user-1", "acme", ttl=-3600)
    assert refused(verifier, expired).reason is AuthReason.EXPIRED
    other_tenant = rsa_signer.issuer.issue("user-1", "initech")
    error = refused(verifier, other_tenant)
    assert error.reason is AuthReason.TENANT_NOT_ALLOWED
    assert error.status_code == 403
