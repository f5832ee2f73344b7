"""/oauth/authorize.php: the sign-in page of the authorization-code grant (RFC 6749 4.1)."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from callhook.api.requests import form_fields
from callhook.errors import OAuthError
from callhook.oauth import AuthorizeError, AuthorizeRequest
from callhook.wiring_types import AppState

#: carried through the form unchanged
_PASSED = ("client_id", "redirect_uri", "state", "response_type", "type")
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
}
_STYLE = (
    "body{font:16px system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}"
    "label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;font:inherit}"
    "button{margin-top:1.2rem;padding:.5rem 1.2rem;font:inherit}.error{color:#a00}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<meta name=viewport content='width=device-width'><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _form(request: AuthorizeRequest, params: dict[str, str], error: str = "") -> str:
    hidden = "".join(
        f"<input type=hidden name={name} value='{escape(params.get(name, ''), quote=True)}'>"
        for name in _PASSED
    )
    note = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    return (
        f"<p>The app <strong>{escape(request.app_name)}</strong> asks to manage phone call "
        f"events for your account. Sign in to allow it.</p>{note}"
        f"<form method=post>{hidden}"
        "<label for=login>Login</label><input id=login name=login autocomplete=username required>"
        "<label for=password>Password</label>"
        "<input id=password name=password type=password autocomplete=current-password required>"
        "<button type=submit>Allow</button></form>"
    )


async def authorize(request: Request) -> Response:
    state: AppState = request.app.state.callhook
    if request.method == "GET":
        params = dict(request.query_params)
    else:
        try:
            params = await form_fields(request)
        except OAuthError as exc:
            return _page("Cannot authorize", f"<p>{escape(exc.description)}</p>", 400)
    try:
        checked = await state.oauth.check_authorize(params)
    except AuthorizeError as exc:
        return _page("Cannot authorize", f"<p>{escape(str(exc))}</p>", 400)
    if request.method == "GET":
        return _page("Sign in", _form(checked, params))
    try:
        target = await state.oauth.authorize(
            checked, params, params.get("login", ""), params.get("password", "")
        )
    except OAuthError as exc:
        return _page("Sign in", _form(checked, params, exc.description), 401)
    return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store"})


routes = [
    Route("/oauth/authorize.php", authorize, methods=["GET", "POST"]),
    Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
]
