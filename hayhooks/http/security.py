"""Who may deploy and who may run: bearer tokens, compared in constant time.

A deploy is code execution on the server, so ``HAYHOOKS_ADMIN_TOKEN`` guards it; running pipelines
stays open unless ``HAYHOOKS_API_TOKEN`` is set too (the admin token is accepted there as well).
"""

import hmac
import ipaddress
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from hayhooks.settings import Settings

Guard = Callable[..., Awaitable[None]]
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")


TokenCheck = Callable[[str | None], bool]  # the value of an Authorization header -> whether it may pass


def token_check(*tokens: SecretStr | None) -> TokenCheck | None:
    """Whether an ``Authorization`` header carries one of ``tokens`` as a bearer; ``None`` if none is set."""
    accepted = [token.get_secret_value().encode() for token in tokens if token and token.get_secret_value()]
    if not accepted:
        return None

    def passes(authorization: str | None) -> bool:
        scheme, _, credentials = (authorization or "").partition(" ")
        given = credentials.strip().encode() if scheme.lower() == "bearer" else b""
        matched = False
        for token in accepted:  # every token is compared, so timing says nothing about which
            matched |= hmac.compare_digest(given, token)
        return matched

    return passes


def bearer_guard(*tokens: SecretStr | None) -> Guard | None:
    """A FastAPI dependency that lets a request through only with one of ``tokens``; ``None`` if none is set."""
    passes = token_check(*tokens)
    if passes is None:
        return None

    async def require_token(credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> None:
        if not passes(f"Bearer {credentials.credentials}" if credentials else None):
            raise HTTPException(401, "Missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    return require_token


def admin_guard(settings: Settings) -> Guard | None:
    return bearer_guard(settings.admin_token)


def run_guard(settings: Settings) -> Guard | None:
    return bearer_guard(settings.api_token, settings.admin_token) if settings.api_token else None


def run_check(settings: Settings) -> TokenCheck | None:
    """:func:`run_guard` for what is not a FastAPI route (the MCP transports)."""
    return token_check(settings.api_token, settings.admin_token) if settings.api_token else None


def admin_check(settings: Settings) -> TokenCheck | None:
    return token_check(settings.admin_token)


def open_deploy_warning(settings: Settings) -> str | None:
    """A warning when anyone who can reach a non-loopback address may deploy code."""
    if not settings.deploy_api or settings.admin_token or _is_loopback(settings.host):
        return None
    return (
        f"the deploy API is open to anyone who can reach {settings.host}:{settings.port}, and a deploy runs "
        "code on this server: set HAYHOOKS_ADMIN_TOKEN, or HAYHOOKS_DEPLOY_API=false to serve only the directory"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
