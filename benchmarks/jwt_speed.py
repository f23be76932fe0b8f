"""Token verifications per second, per algorithm.

Every `$connect` verifies one token, so this bounds the connect rate on one core. The baseline
is PyJWT's own `jwt.decode` with the same key and claims checks: the ratio is what Streamer's
`TokenVerifier` (claim mapping, tenant and size checks, key lookup) adds on top of the library.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.harness import Result, RunConfig, Unavailable

NAME = "jwt_speed"
ALGORITHMS = ("RS256", "ES256")


def _rate(verify: object, token: str, count: int) -> float:
    assert callable(verify)
    start = time.perf_counter()
    for _ in range(count):
        verify(token)
    return count / (time.perf_counter() - start)


def run(config: RunConfig) -> list[Result]:
    try:
        import jwt
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
        from streamer_core.auth import KeySet, TokenIssuer, TokenVerifier, generate_key_pair
    except ImportError as exc:
        raise Unavailable(f"streamer_core.auth not importable: {exc}") from exc

    repeat = config.repeats(full=7, quick=3)
    count = 500 if config.quick else 2000
    results = []
    for algorithm in ALGORITHMS:
        private_pem, public_pem = generate_key_pair(algorithm)
        issuer = TokenIssuer(private_pem, algorithm=algorithm, issuer="bench", audience="bench")
        token = issuer.issue("user-1", "tenant-1", ["reports:write"], ttl=3600)
        verifier = TokenVerifier(
            KeySet.from_pem(public_pem), algorithms=(algorithm,), issuer="bench", audience="bench"
        )
        verifier.verify(token)

        public_key = load_pem_public_key(public_pem.encode())

        def plain(t: str, key: Any = public_key, alg: str = algorithm) -> object:
            return jwt.decode(
                t,
                key,
                algorithms=[alg],
                issuer="bench",
                audience="bench",
                options={"require": ["exp"]},
            )

        plain(token)
        streamer_rates, plain_rates = [], []
        for _ in range(repeat):
            streamer_rates.append(_rate(verifier.verify, token, count))
            plain_rates.append(_rate(plain, token, count))
        results.append(
            Result(
                NAME,
                f"verify {algorithm}",
                "/s",
                streamer_rates,
                baseline_name="PyJWT decode",
                baseline_samples=plain_rates,
                note="ratio below 1 is the verifier's overhead over PyJWT",
            )
        )
    return results
