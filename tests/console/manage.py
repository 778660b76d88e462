"""What the management pages' tests share (issue 23, part 4): switching the page to another
principal's sign-in and back, and confirming the pages' confirm() dialogs."""

from __future__ import annotations

import re
from typing import Any

from tests.console.conftest import sign_in

__all__ = ["accept_next_dialog", "sign_in_as", "sign_out_to_admin"]


def sign_in_as(page: Any, token: str, path: str) -> None:
    """Sign out, sign in with ``token`` (another principal's) through the login form, open ``path``."""
    page.goto("/ui/#/endpoints")
    page.wait_for_selector("main h1")
    page.click("#logout")
    page.wait_for_url(re.compile(r"#/login$"))
    page.fill("#token", token)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"#/endpoints$"))
    page.goto(path)
    page.wait_for_selector("main h1")


def sign_out_to_admin(page: Any, path: str) -> None:
    """Sign out and back in as the admin, on ``path``."""
    page.click("#logout")
    page.wait_for_url(re.compile(r"#/login$"))
    sign_in(page, path)


def accept_next_dialog(page: Any, seen: list[str] | None = None) -> None:
    """Accept the next confirm() the page opens (recording its text in ``seen``)."""

    def accept(dialog: Any) -> None:
        if seen is not None:
            seen.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
