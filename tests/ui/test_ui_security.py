"""The UI's defences over HTTP against the real server: deny by default, sessions that die
with their token, CSRF on every form, strict headers, escaped text."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import httpx

from tests.http.conftest import cli
from tests.ui.conftest import UiServer, csrf_of, sign_in

PAGES = ["/", "/runs", "/runs?status=COMPLETED", "/runs/some-run", "/runs/some-run/live"]
FORMS = [f"/runs/some-run/{action}" for action in ("cancel", "retry", "skip", "signal")]
FORMS += ["/signout"]


def test_every_page_sends_an_anonymous_browser_to_sign_in_and_programs_get_401(
    ui: UiServer,
) -> None:
    for cookie in (None, "forged-session-id"):
        with ui.browser_client() as client:
            if cookie:
                client.cookies.set("sagaline_session", cookie)
            for path in PAGES:
                response = client.get(path)
                assert response.status_code == 303, (path, response.text)
                assert response.headers["location"] == f"/signin?next={quote(path, safe='')}"
            for path in FORMS:
                response = client.post(path, data={"reason": "r", "csrf": "x"})
                assert response.status_code == 401, (path, response.text)
            assert client.get("/metrics").status_code == 401
            assert client.get("/api/v1/runs").status_code == 401
            assert client.get("/signin").status_code == 200
            assert client.get("/static/ui.css").status_code == 200


def test_signing_in_sets_an_opaque_strict_http_only_cookie(ui: UiServer) -> None:
    with ui.browser_client() as client:
        form = client.get("/signin")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce
        wrong = client.post("/signin", data={"nonce": nonce[1], "token": "sgl_guess"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        assert "sagaline_session" not in wrong.headers.get("set-cookie", "")
        nonce = re.search(r'name="nonce" value="([^"]+)"', wrong.text)
        assert nonce
        done = client.post(
            "/signin", data={"nonce": nonce[1], "token": ui.operator, "next": "//evil.example/"}
        )
        assert done.status_code == 303 and done.headers["location"] == "/"  # never off-site
        cookie = next(
            c for c in done.headers.get_list("set-cookie") if c.startswith("sagaline_session=")
        )
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
        assert "secure" not in flags  # plain http here; https gets Secure
        value = cookie.split(";")[0].split("=", 1)[1]
        assert ui.operator not in cookie and ui.operator[4:] not in value
        assert client.get("/").status_code == 200
    assert ui.operator not in ui.log.read_text()


def test_sign_in_needs_the_forms_own_nonce(ui: UiServer) -> None:
    with ui.browser_client() as client:
        # A page on another site posting the attacker's token cannot set or read the nonce.
        forged = client.post("/signin", data={"nonce": "x", "token": ui.operator})
        assert forged.status_code == 403
        assert "sagaline_session" not in forged.headers.get("set-cookie", "")


def test_every_form_refuses_a_missing_or_forged_csrf_token(ui: UiServer) -> None:
    ui.start("http-order", "stuck decline", "csrf-run")
    ui.wait_status("csrf-run", "COMPENSATION_FAILED")
    with ui.browser_client() as client:
        csrf = sign_in(client, ui.operator)
        for action in ("cancel", "retry", "skip", "signal"):
            path = f"/runs/csrf-run/{action}"
            fields = {"reason": "r", "name": "approved", "confirmed": "yes"}
            for given in (None, "", "forged", csrf[:-1]):
                data = fields if given is None else {**fields, "csrf": given}
                assert client.post(path, data=data).status_code == 403, (path, given)
            as_json = client.post(path, json={**fields, "csrf": csrf})  # not our form's body
            assert as_json.status_code == 403
            cross = client.post(
                path, data={**fields, "csrf": csrf}, headers={"origin": "http://evil.example"}
            )
            assert cross.status_code == 403
        assert client.post("/signout", data={}).status_code == 403
        assert client.get("/").status_code == 200  # still signed in
        # The API accepts the session too, with its CSRF token in a header.
        api = "/api/v1/runs/csrf-run/retry"
        assert client.post(api, json={"reason": "r"}).status_code == 403
        wrong = client.post(api, json={"reason": "r"}, headers={"x-csrf-token": "nope"})
        assert wrong.status_code == 403
        assert client.get("/api/v1/runs/csrf-run").json()["status"] == "COMPENSATION_FAILED"
        right = client.post(api, json={"reason": "with a session"}, headers={"x-csrf-token": csrf})
        assert right.status_code == 200, right.text
    ui.wait_status("csrf-run", "COMPENSATION_FAILED")


def test_a_viewer_reads_every_page_and_every_action_is_forbidden(ui: UiServer) -> None:
    ui.start("http-order", "stuck decline", "viewer-run")
    ui.wait_status("viewer-run", "COMPENSATION_FAILED")
    with ui.browser_client() as client:
        csrf = sign_in(client, ui.viewer)
        page = client.get("/runs/viewer-run")
        assert page.status_code == 200 and "viewer" in page.text
        assert 'data-action="skip"' not in page.text  # no buttons it could not use
        for action in ("cancel", "retry", "skip", "signal"):
            data = {"csrf": csrf, "reason": "r", "name": "s", "confirmed": "yes"}
            response = client.post(f"/runs/viewer-run/{action}", data=data)
            assert response.status_code == 403, response.text
            assert "operator role" in response.text
        assert client.get("/metrics").status_code == 200
    with httpx.Client(base_url=ui.url, headers={"authorization": f"Bearer {ui.viewer}"}) as bearer:
        data = {"reason": "r", "confirmed": "yes"}
        assert bearer.post("/runs/viewer-run/skip", data=data).status_code == 403
    assert ui.wait_status("viewer-run", "COMPENSATION_FAILED")["timeline"][-1]["type"] == (
        "CompensationFailed"
    )


def test_a_revoked_tokens_session_stops_at_once_live_stream_included(ui: UiServer) -> None:
    token = ui.token("short-lived", "operator")
    ui.start("http-order", "fine", "revoke-run")
    ui.wait_status("revoke-run", "COMPLETED")
    with ui.browser_client() as client:
        sign_in(client, token)
        assert client.get("/runs/revoke-run").status_code == 200
        with client.stream("GET", "/runs/revoke-run/live") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert "event: change" in [next(lines) for _ in range(3)]
            cli("tokens", "revoke", "short-lived", "--db", ui.db)
            started = time.monotonic()
            assert "event: end" in list(lines)  # the stream ends by itself
            assert time.monotonic() - started < 30
        response = client.get("/runs/revoke-run")
        assert response.status_code == 303 and response.headers["location"].startswith("/signin")
        assert client.get("/api/v1/runs").status_code == 401


def test_signing_out_ends_the_session(ui: UiServer) -> None:
    with ui.browser_client() as client:
        csrf = sign_in(client, ui.viewer)
        old = client.cookies["sagaline_session"]
        assert client.post("/signout", data={"csrf": csrf}).status_code == 303
        client.cookies.set("sagaline_session", old)  # a copy kept by someone is worth nothing
        assert client.get("/").status_code == 303


def test_pages_carry_a_strict_policy_and_escape_stored_text(ui: UiServer) -> None:
    run_id = '<img src=x onerror="alert(1)">'
    item = "<script>alert('x')</script> stuck decline"
    ui.start("http-order", item, run_id)
    ui.wait_status(run_id, "COMPENSATION_FAILED")
    with ui.browser_client() as client:
        sign_in(client, ui.operator)
        pages = [
            client.get("/"),
            client.get("/runs"),
            client.get(f"/runs/{quote(run_id, safe='')}"),
        ]
        pages.append(client.get("/runs?prefix=" + quote("<b>", safe="")))
        pages.append(client.get("/runs?created_after=" + quote("<i>bad</i>", safe="")))
        for page in pages:
            assert page.status_code in (200, 422), page.text
            csp = page.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["referrer-policy"] == "same-origin"  # Origin stays sent
            assert "<script>alert" not in page.text and "<img src=x" not in page.text
            assert "<b>" not in page.text and "<i>bad" not in page.text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages[2].text
        assert pages[4].status_code == 422


def test_metrics_needs_a_token_and_serves_prometheus_text(ui: UiServer) -> None:
    with ui.api(ui.viewer) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# HELP" in response.text or response.text == ""
    with ui.browser_client() as client:
        assert client.get("/metrics").status_code == 401
        csrf = sign_in(client, ui.viewer)
        assert client.get("/metrics").status_code == 200  # a session is enough too
        assert csrf == csrf_of(client.get("/runs").text)
