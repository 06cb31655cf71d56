"""The portal's JSON API, /api/v1/: what customers and administrators do, for scripts and CLIs.

django-ninja builds it from typed schemas (`schemas.py`) and describes it as OpenAPI 3.1
(/api/v1/openapi.json, browsable at /docs/api/ with assets served by the portal). Errors are
RFC 9457 problem documents (`problems.py`); the routes are in `customer.py`, `teams.py`,
`webhooks.py`, `registration_tokens.py` and `admin.py`, the authentication in `auth.py`.
Audit entries of actions taken here say "via api".
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from apikeys.access import NotAllowed
from apikeys.api import admin, customer, registration_tokens, teams, webhooks
from apikeys.api.problems import Problem, problem_response
from apikeys.api.schemas import CliConfig
from apikeys.assurance import FactorUnknown, StepUpRequired
from apikeys.keycloak.client import KeycloakFailure, KeycloakRejected
from apikeys.models import WrongState
from apikeys.operations.teams import TeamRefused


class PortalApi(NinjaAPI):
    """django-ninja's API, whose document says errors come as application/problem+json.

    The document is made once per process for each path it is served under (the script
    prefix, when the portal is mounted below the root, is part of it): the routes are fixed at
    import, and making it (pydantic's JSON schemas of every model) took seconds of a worker's
    time. Its readers only serialize it; none may change it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._documents: dict[str, Any] = {}

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> Any:
        if path_prefix is None:  # what ninja would use: the API's root, with the script prefix
            path_prefix = self.get_root_path(path_params or {})
        if path_prefix not in self._documents:
            self._documents[path_prefix] = self._document(path_prefix)
        return self._documents[path_prefix]

    def _document(self, path_prefix: str) -> Any:
        document = super().get_openapi_schema(path_prefix=path_prefix)
        for path in document["paths"].values():
            for operation in path.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if str(status)[0] in "45" and "application/json" in content:
                        content["application/problem+json"] = content.pop("application/json")
        return document


api = PortalApi(
    title="API key portal",
    version="1",
    description=(
        "Keys for the APIs in the catalog, as Keycloak clients with the client-credentials "
        "grant. Sign in with `apikeys login` (Keycloak access tokens of the portal's "
        "command-line client); send `Authorization: Bearer <access token>`. Errors are RFC 9457 "
        "problem documents. A key's secret appears once, in the response that makes or "
        "rotates it."
    ),
    urls_namespace="api",
    docs_url=None,  # the docs page is /docs/api/ (apikeys/urls.py)
)
api.add_router("/", customer.router)
api.add_router("/", teams.router)
api.add_router("/admin", admin.router)
api.add_router("/webhooks", webhooks.router)
api.add_router("/registration-tokens", registration_tokens.router)


@api.get("/cli", auth=None, response=CliConfig, tags=["sign-in"], summary="How the CLI signs in")
def cli_config(request: HttpRequest) -> dict[str, str]:
    realm = f"{settings.KEYCLOAK_PUBLIC_URL}/realms/{settings.KEYCLOAK_REALM}"
    oidc = f"{realm}/protocol/openid-connect"
    return {
        "api": f"{settings.PORTAL_URL}/api/v1",
        "issuer": realm,
        "client_id": settings.CLI_CLIENT_ID,
        "scope": "openid",
        "authorization_endpoint": f"{oidc}/auth",
        "token_endpoint": f"{oidc}/token",
        "device_authorization_endpoint": f"{oidc}/auth/device",
        "revocation_endpoint": f"{oidc}/revoke",
        "end_session_endpoint": f"{oidc}/logout",
    }


@api.exception_handler(Problem)
def on_problem(request: HttpRequest, error: Problem) -> HttpResponse:
    return problem_response(request, error)


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, error: Http404) -> HttpResponse:
    """Another person's key or endpoint (apikeys/access.py): as if it did not exist."""
    return problem_response(request, Problem(404, str(error) or "Not found."))


@api.exception_handler(NotAllowed)
def on_not_allowed(request: HttpRequest, error: NotAllowed) -> HttpResponse:
    """A team member whose role does not allow the act (apikeys/access.py)."""
    return problem_response(request, Problem(403, str(error)))


@api.exception_handler(StepUpRequired)
def on_step_up(request: HttpRequest, error: StepUpRequired) -> HttpResponse:
    """RFC 9470: the token's sign-in is too weak or too old for the act; the CLI signs in
    again with what the challenge asks for (apikeys/assurance.py)."""
    # RFC 6750 §3: error_description is printable ASCII without '"' and '\\'.
    description = "".join(c for c in error.message if " " <= c <= "~" and c not in '"\\')
    challenge = (
        f'Bearer realm="{settings.PORTAL_API_AUDIENCE}", error="insufficient_user_authentication", '
        f'error_description="{description}", acr_values="{error.acr_values}"'
    )
    if error.max_age is not None:
        challenge += f', max_age="{error.max_age}"'
    problem = Problem(401, error.message, headers={"WWW-Authenticate": challenge})
    return problem_response(request, problem)


@api.exception_handler(FactorUnknown)
def on_factor_unknown(request: HttpRequest, error: FactorUnknown) -> HttpResponse:
    problem = Problem(503, str(error), headers={"Retry-After": "30"})
    return problem_response(request, problem)


@api.exception_handler(TeamRefused)
def on_team_refused(request: HttpRequest, error: TeamRefused) -> HttpResponse:
    return problem_response(request, Problem(409, str(error)))


@api.exception_handler(WrongState)
def on_wrong_state(request: HttpRequest, error: WrongState) -> HttpResponse:
    return problem_response(request, Problem(409, str(error)))


@api.exception_handler(KeycloakFailure)
def on_keycloak_failure(request: HttpRequest, error: KeycloakFailure) -> HttpResponse:
    status = 502 if isinstance(error, KeycloakRejected) else 503
    headers = {} if status == 502 else {"Retry-After": "30"}
    return problem_response(request, Problem(status, error.for_people, headers=headers))


@api.exception_handler(ValidationError)
def on_invalid(request: HttpRequest, error: ValidationError) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    for item in error.errors:
        field = ".".join(str(part) for part in item.get("loc", ())[1:]) or "body"
        errors.setdefault(field, []).append(str(item.get("msg", "invalid")))
    return problem_response(
        request, Problem(422, "The request is not valid: see errors.", errors=errors)
    )


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, error: AuthenticationError) -> HttpResponse:
    return problem_response(request, Problem(401, "Send a valid Keycloak access token."))


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, error: Exception) -> HttpResponse:
    """Not ninja's plain-text traceback: Django's own handling, whose reports star what is
    sensitive (every frame of the API), and a problem document for the client (handler500)."""
    raise error


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, error: HttpError) -> HttpResponse:
    return problem_response(request, Problem(error.status_code, str(error)))
