"""A workload platform's token issuer of the tests' own, on loopback: what a Kubernetes
cluster's service-account issuer or a CI system's OIDC provider is to Keycloak.

It holds its own EC P-256 key pair, serves the public key at /jwks and an OpenID discovery
document at /.well-known/openid-configuration (a real HTTP server in a thread, which Keycloak
fetches), and signs its workloads' tokens with PyJWT. It knows nothing of Keycloak.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Issuer:
    """The issuer at `url` (its tokens' `iss`); `jwks_fetches` counts who read its keys."""

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP256R1())
        self.kid = uuid.uuid4().hex[:16]
        self.jwks_fetches = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.jwks_url = f"{self.url}/jwks"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def token(self, sub: str, aud: str, lifetime: int = 60, **claims: Any) -> str:
        """A token for the workload `sub`, for the audience `aud`; `claims` add or replace."""
        now = int(time.time())
        payload = {
            "iss": self.url,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        return jwt.encode(payload, self._private, algorithm="ES256", headers={"kid": self.kid})

    def public_jwks(self) -> dict[str, Any]:
        public = ECAlgorithm.to_jwk(self._private.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "ES256"}]}

    def discovery(self) -> dict[str, Any]:
        """What Kubernetes serves for its service-account issuer (no login endpoints)."""
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/jwks":
                    issuer.jwks_fetches += 1
                    document: dict[str, Any] | None = issuer.public_jwks()
                elif self.path == "/.well-known/openid-configuration":
                    document = issuer.discovery()
                else:
                    document = None
                body = json.dumps(document or {"error": "not found"}).encode()
                self.send_response(200 if document else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def serving() -> Iterator[Issuer]:
    """An issuer on a free loopback port, for the block."""
    issuer = Issuer()
    issuer.start()
    try:
        yield issuer
    finally:
        issuer.stop()


class WorkloadAssertion(requests.auth.AuthBase):
    """A workload's client authentication: a fresh token of its platform's issuer as the
    client_assertion (RFC 7523 section 2.2), no client_id. requests-oauth2client has methods
    that sign assertions themselves, none that sends a ready-made one: this is that method."""

    def __init__(self, issuer: Issuer, subject: str, audience: str) -> None:
        self.issuer, self.subject, self.audience = issuer, subject, audience

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        params = parse_qs(str(body or ""), keep_blank_values=True)
        params["client_assertion_type"] = [JWT_BEARER]
        params["client_assertion"] = [self.issuer.token(self.subject, self.audience)]
        request.prepare_body(params, files=None)
        return request
