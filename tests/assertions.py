"""What a partner application with a private_key_jwt key does: sign an assertion, get a token."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.conf import settings
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class KeyPair:
    private: PrivateKey
    algorithm: str
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @classmethod
    def rsa(cls, bits: int = 2048) -> KeyPair:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits), "RS256")

    @classmethod
    def ec(cls) -> KeyPair:
        return cls(ec.generate_private_key(ec.SECP256R1()), "ES256")

    @classmethod
    def ed25519(cls) -> KeyPair:
        return cls(ed25519.Ed25519PrivateKey.generate(), "EdDSA")

    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def private_pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def private_jwk(self) -> dict[str, Any]:
        if isinstance(self.private, rsa.RSAPrivateKey):
            jwk = RSAAlgorithm.to_jwk(self.private, as_dict=True)
        elif isinstance(self.private, ec.EllipticCurvePrivateKey):
            jwk = ECAlgorithm.to_jwk(self.private, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(self.private, as_dict=True)
        return {**jwk, "kid": self.kid}

    def assertion(
        self,
        client_id: str,
        *,
        audience: str | None = None,
        lifetime: int = 60,
        issued_ago: int = 0,
        jti: str | None = None,
        kid: str | None = None,
    ) -> str:
        now = int(time.time()) - issued_ago
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience or settings.TOKEN_ISSUER,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti or str(uuid.uuid4()),
        }
        headers = {"kid": kid or self.kid}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)


def token_with_assertion(assertion: str) -> requests.Response:
    return requests.post(
        settings.TOKEN_ENDPOINT,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
        timeout=10,
    )


def gets_token(pair: KeyPair, client_id: str, **claims: Any) -> bool:
    return token_with_assertion(pair.assertion(client_id, **claims)).status_code == 200


class JwksServer:
    """A partner's JWKS URL: a real HTTP server on loopback serving `keys`."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"


@contextmanager
def jwks_server() -> Iterator[JwksServer]:
    served = JwksServer()
    thread = threading.Thread(target=served.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()
