"""A small OpenID Connect provider on 127.0.0.1 that serves what MONAI Label reads from a Keycloak realm.

- ``GET /realms/<realm>``: Keycloak's realm document with ``public_key`` (base64 DER, no PEM armour);
- ``GET /realms/<realm>/.well-known/openid-configuration``: ``issuer``, ``token_endpoint``, ``jwks_uri``;
- ``POST /realms/<realm>/protocol/openid-connect/token``: the password grant Slicer's login uses through
  MONAI Label's ``/auth/token``, answering an RS256 access token shaped like Keycloak's (``iss``, ``exp``,
  ``preferred_username``, ``email``, ``name``, ``realm_access.roles``, ``azp``).

Built on PyJWT and cryptography, which MONAI Label itself uses; see docs/security.md for why not authlib.
`OidcProvider.token` also mints tokens directly, and `forged` the hostile ones the tests send.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "monailabel-app"
ROLES = {"admin": "monailabel-admin", "reviewer": "monailabel-reviewer", "annotator": "monailabel-annotator",
         "user": "monailabel-user"}


def new_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key (a realm's signing key)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Account:
    """A realm user: password and realm roles."""

    password: str
    roles: list[str]


@dataclass
class OidcProvider:
    """The provider's state; `start` serves it on a free loopback port."""

    realm: str = "plaid"
    accounts: dict[str, Account] = field(default_factory=dict)
    key: rsa.RSAPrivateKey = field(default_factory=new_key)
    url: str = ""
    token_requests: int = 0

    @property
    def realm_uri(self) -> str:
        return f"{self.url}/realms/{self.realm}"

    def public_key_b64(self) -> str:
        """The realm's public key as Keycloak's realm document gives it."""
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def claims(self, user: str, roles: list[str], lifetime_s: float = 300.0) -> dict[str, Any]:
        """Keycloak-shaped access token claims for ``user``."""
        now = int(time.time())
        return {"iss": self.realm_uri, "sub": f"id-{user}", "typ": "Bearer", "azp": CLIENT_ID, "iat": now,
                "exp": int(now + lifetime_s), "preferred_username": user, "email": f"{user}@example.org",
                "name": user.title(), "realm_access": {"roles": roles}}

    def token(self, user: str, roles: list[str] | None = None, **overrides: Any) -> str:
        """A valid RS256 access token (roles default to the account's); ``overrides`` replace claims."""
        if roles is None:
            roles = self.accounts[user].roles
        return jwt.encode({**self.claims(user, roles), **overrides}, self.key, algorithm="RS256")

    def forged(self, user: str) -> dict[str, str]:
        """Tokens the server must refuse for ``user``, by name: expired, signed by another key, ``alg: none``,
        of another realm (other issuer, same key), HMAC-signed with the public key, no expiry, not a JWT."""
        roles = self.accounts[user].roles
        claims = self.claims(user, roles)
        public_pem = self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        no_exp = {k: v for k, v in claims.items() if k != "exp"}
        return {
            "expired": jwt.encode({**claims, "exp": int(time.time()) - 60}, self.key, algorithm="RS256"),
            "wrong signature": jwt.encode(claims, new_key(), algorithm="RS256"),
            "alg none": _unsigned(claims),
            "other realm": jwt.encode({**claims, "iss": f"{self.url}/realms/other"}, self.key, algorithm="RS256"),
            "hmac with the public key": _hmac(claims, public_pem),
            "no expiry": jwt.encode(no_exp, self.key, algorithm="RS256"),
            "garbage": "not.a.token",
        }

    def start(self) -> ThreadingHTTPServer:
        """Serve on 127.0.0.1 in a daemon thread; ``url`` is set. Stop with ``server.shutdown()``."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                base = f"/realms/{provider.realm}"
                if self.path == base:
                    self._send(200, {"realm": provider.realm, "public_key": provider.public_key_b64(),
                                     "token-service": f"{provider.realm_uri}/protocol/openid-connect"})
                elif self.path == f"{base}/.well-known/openid-configuration":
                    self._send(200, {"issuer": provider.realm_uri,
                                     "token_endpoint": f"{provider.realm_uri}/protocol/openid-connect/token",
                                     "grant_types_supported": ["password"],
                                     "id_token_signing_alg_values_supported": ["RS256"]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                if self.path != f"/realms/{provider.realm}/protocol/openid-connect/token":
                    self._send(404, {"error": "not found"})
                    return
                provider.token_requests += 1
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
                value = {key: values[0] for key, values in form.items()}
                account = provider.accounts.get(value.get("username", ""))
                if value.get("grant_type") != "password" or value.get("client_id") != CLIENT_ID:
                    self._send(400, {"error": "unauthorized_client"})
                elif account is None or account.password != value.get("password"):
                    self._send(401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})
                else:
                    self._send(200, {"access_token": provider.token(value["username"]), "token_type": "Bearer",
                                     "expires_in": 300})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    """A token with header ``alg: none`` and no signature."""
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


def _hmac(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token keyed with the realm's public key (the algorithm-confusion attack)."""
    import hashlib
    import hmac

    signing = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing}.{_b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


def site_accounts() -> dict[str, Account]:
    """One account per MONAI Label role, plus a second annotator and an account with no role."""
    return {"ada": Account("ada-pw", [ROLES["admin"], ROLES["reviewer"], ROLES["annotator"], ROLES["user"]]),
            "rita": Account("rita-pw", [ROLES["reviewer"], ROLES["annotator"], ROLES["user"]]),
            "ann": Account("ann-pw", [ROLES["annotator"], ROLES["user"]]),
            "bob": Account("bob-pw", [ROLES["annotator"], ROLES["user"]]),
            "uma": Account("uma-pw", [ROLES["user"]]),
            "nobody": Account("nobody-pw", [])}
