"""Single sign-on in a browser, against a real OpenID Connect provider (oidc-provider-mock: the
authorization code flow with signed ID tokens, in a thread): a person the provider gives a
console role is signed in with it; one without any is refused, and the refusal is audited.
Screenshots in test-output/ui/<test name>/."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from oidc_provider_mock import User, run_server_in_thread
from playwright.sync_api import Page, expect
from pydantic import SecretStr

from console.audit import AuditLog
from console.settings import OidcSettings
from tests.ui.conftest import Console, Shots

ANN = User(sub="ann-sub", claims={"email": "ann@example.com", "roles": ["operator", "no-such-role"]})
EVE = User(sub="eve-sub", claims={"email": "eve@example.com", "roles": []})


@pytest.fixture(scope="module")
def console(console_factory: Callable[..., Console]) -> Iterator[Console]:
    with run_server_in_thread(user_claims=[ANN, EVE]) as provider:
        issuer = f"http://localhost:{provider.server_port}"
        yield console_factory(
            oidc=OidcSettings(
                issuer=issuer, client_id="sagesf-console", client_secret=SecretStr("provider-secret")
            )
        )


def sign_on(page: Page, console: Console, who: User, asked_for: str) -> None:
    page.goto(f"{console.url}{asked_for}")
    page.click("#oidc")
    page.click(f"button[value='{who.sub}']")  # the provider's page: authorize this person


def test_a_person_the_provider_gives_a_role_is_signed_in_with_it(
    page: Page, shots: Shots, console: Console
) -> None:
    page.goto(f"{console.url}/audit")
    expect(page.locator("#oidc")).to_have_text("Log in with single sign-on")
    shots("login")
    sign_on(page, console, ANN, "/audit")
    expect(page).to_have_url(f"{console.url}/audit")
    expect(page.locator(".who .user")).to_have_text("ann@example.com")
    expect(page.locator(".who .roles")).to_have_text("operator")
    shots("signed-in")


def test_a_person_without_a_console_role_is_refused_and_audited(
    page: Page, shots: Shots, console: Console
) -> None:
    sign_on(page, console, EVE, "/dead-letters")
    expect(page.locator(".flash-error")).to_contain_text("eve@example.com has no role in this console")
    expect(page).to_have_url(re.compile(r"/login/oidc/callback"))
    shots("refused")
    page.goto(f"{console.url}/dead-letters")
    expect(page).to_have_url(re.compile(r"/login\?next=/dead-letters$"))  # not signed in
    [entry] = [e for e in AuditLog(console.settings.audit_log).entries() if e.user == "eve@example.com"]
    assert entry.action == "login.refused"
