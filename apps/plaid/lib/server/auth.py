"""MONAI Label's login, made to work and narrowed where PLAID needs more than MONAI Label asks.

With ``MONAI_LABEL_AUTH_ENABLE`` MONAI Label checks a bearer token in every endpoint (its `RBAC`
dependency, via ``monailabel.endpoints.user.auth.from_token``) against the public key of an OpenID
Connect realm (Keycloak's realm document). Its ``from_token`` calls ``jwt.decode`` without
``algorithms``, which PyJWT 2 refuses for every token, so no login could ever succeed. PLAID replaces
that one function (`verified_user`): the realm's public key (MONAI Label's own cached fetch), RS256 only
(``alg: none`` and HMAC tokens are refused), an ``exp`` required and not passed, the issuer the realm's
``.well-known/openid-configuration`` names; the user name, email, name and roles are read from the
claims MONAI Label's settings name. Any failure is MONAI Label's 401.

PLAID also narrows two routes MONAI Label gives annotators (PUT and DELETE /model/{model}: replacing or
removing the served model) to administrators, and answers MONAI Label's password-grant proxy
(POST /auth/token) with 401 for wrong credentials and 503 for an unreachable realm instead of a 500.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import jwt
import requests
from fastapi import BackgroundTasks, Depends, HTTPException, UploadFile
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordRequestForm
from monailabel.config import settings
from monailabel.endpoints.user import auth as monai_auth
from monailabel.endpoints.user.auth import RBAC, User

logger = logging.getLogger(__name__)

ALGORITHMS = ["RS256"]  # what a Keycloak realm signs access tokens with by default


def _realm(what: str, fetch: Any) -> Any:
    """A realm document fetched by MONAI Label's cached function; 503 when the realm cannot be reached."""
    try:
        return fetch(settings.MONAI_LABEL_AUTH_REALM_URI)
    except (requests.RequestException, KeyError, ValueError) as exc:
        logger.error("cannot read the login realm's %s: %s", what, type(exc).__name__)
        raise HTTPException(status_code=503, detail="the login service cannot be reached") from None


def _claim(payload: dict[str, Any], path: str) -> Any:
    """The claim at ``path`` ('realm_access#roles' walks nested objects); None when absent."""
    value: Any = payload
    for key in path.split("#"):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def verified_user(token: str) -> User:
    """The `User` of a valid access token of the configured realm, else `jwt.InvalidTokenError`."""
    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return monai_auth.DEFAULT_USER
    key = _realm("public key", monai_auth.get_public_key)
    issuer = _realm("OpenID configuration", monai_auth.open_id_configuration).get("issuer")
    payload = jwt.decode(token, key, algorithms=ALGORITHMS, issuer=issuer,
                         options={"verify_aud": False, "require": ["exp", "iss"]})
    username = _claim(payload, settings.MONAI_LABEL_AUTH_TOKEN_USERNAME)
    if not isinstance(username, str) or not username:
        raise jwt.InvalidTokenError("the token names no user")
    roles = _claim(payload, settings.MONAI_LABEL_AUTH_TOKEN_ROLES)
    email = _claim(payload, settings.MONAI_LABEL_AUTH_TOKEN_EMAIL)
    name = _claim(payload, settings.MONAI_LABEL_AUTH_TOKEN_NAME)
    return User(username=username, email=email if isinstance(email, str) else None,
                name=name if isinstance(name, str) else None,
                roles=[r for r in roles if isinstance(r, str)] if isinstance(roles, list) else [])


ADMIN = RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN)


async def _update_model(background_tasks: BackgroundTasks, model: str, file: UploadFile,
                        user: User = Depends(ADMIN)) -> Any:
    """PUT /model/{model} for administrators only (MONAI Label asks an annotator)."""
    return sys.modules["monailabel.endpoints.model"].update_model(background_tasks, model, file)


async def _delete_model(model: str, user: User = Depends(ADMIN)) -> Any:
    """DELETE /model/{model} for administrators only (MONAI Label asks an annotator)."""
    return sys.modules["monailabel.endpoints.model"].delete_model(model)


def _access_token(form: OAuth2PasswordRequestForm = Depends()) -> Any:
    """POST /auth/token: MONAI Label's password grant against the realm, 401 for refused credentials."""
    url = _realm("OpenID configuration", monai_auth.open_id_configuration).get("token_endpoint")
    data = {"client_id": settings.MONAI_LABEL_AUTH_CLIENT_ID, "username": form.username, "password": form.password,
            "grant_type": "password"}
    try:
        answer = requests.post(url, data=data, timeout=settings.MONAI_LABEL_AUTH_TIMEOUT)
    except requests.RequestException:
        raise HTTPException(status_code=503, detail="the login service cannot be reached") from None
    if answer.status_code in (400, 401):
        raise HTTPException(status_code=401, detail="wrong user name or password",
                            headers={"WWW-Authenticate": "Bearer"})
    if answer.status_code != 200:
        raise HTTPException(status_code=503, detail=f"the login service answered {answer.status_code}")
    return answer.json()


def install(app: Any) -> None:
    """Use `verified_user` for MONAI Label's token check and place PLAID's routes before MONAI Label's
    (idempotent; the routes only when authentication is on, as MONAI Label's login routes)."""
    monai_auth.from_token = verified_user
    if not settings.MONAI_LABEL_AUTH_ENABLE or getattr(app.state, "plaid_auth_routes", False):
        return
    prefix = settings.MONAI_LABEL_API_STR
    routes = [APIRoute(f"{prefix}/model/{{model}}", _update_model, methods=["PUT"], include_in_schema=False),
              APIRoute(f"{prefix}/model/{{model}}", _delete_model, methods=["DELETE"], include_in_schema=False),
              APIRoute(f"{prefix}/auth/token", _access_token, methods=["POST"], include_in_schema=False)]
    for route in reversed(routes):
        app.router.routes.insert(0, route)
    app.state.plaid_auth_routes = True
