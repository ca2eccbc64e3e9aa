"""The app's gate: the sign-in form for a hosted instance (the rules live in rmtllmf_core.serve.hosting).

Off when nothing is configured. `[access] password_hash` asks for a shared password; an `[auth]`
table (Streamlit's own OpenID Connect settings) offers `st.login`, optionally restricted to
`allowed_emails` / `allowed_domains`. The secrets come from `st.secrets` (what Streamlit itself
reads, and what AppTest injects); one that cannot be read keeps the door shut.
"""
from __future__ import annotations

import importlib.util
import logging
import time

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from rmtllmf_core.serve import hosting
from rmtllmf_core.errors import RmtllmfError

log = logging.getLogger(__name__)

GRANTED = "rmtllmf.access.granted"
FAILURES = "rmtllmf.access.failures"


def _secrets() -> dict:
    try:
        return st.secrets.to_dict()
    except StreamlitSecretNotFoundError as exc:
        if getattr(exc, "error_id", None) == "no-secrets-found":
            return {}
        log.error("secrets unreadable: %s", exc)
        raise hosting.SecretsUnreadable("the server's secrets file cannot be read; ask the host to fix it") from None


def require_access() -> bool:
    """True when this session may see the app; else draws only a sign-in form.

    Off (True) when neither a password hash nor OpenID Connect is configured."""
    try:
        cfg = hosting.access_config(_secrets())
    except RmtllmfError as exc:  # fail closed: a broken config never opens the door
        st.error(f"Access is configured but unusable: {exc}")
        return False
    if not cfg.enabled:
        return True
    if st.session_state.get(GRANTED) == hosting.granted_token(cfg):
        return True
    if cfg.oidc and _oidc_user_ok(cfg):
        return True
    _sign_in_form(cfg)
    return False


def _oidc_user() -> tuple[bool, str | None]:
    """(signed in through st.login, e-mail) for this session."""
    try:
        user = st.user
        return bool(user.get("is_logged_in", False)), user.get("email")
    except Exception:  # an unusable auth config: treat as signed out (the form says more)
        log.exception("reading st.user failed")
        return False, None


def _oidc_user_ok(cfg: hosting.AccessConfig) -> bool:
    logged_in, email = _oidc_user()
    return logged_in and hosting.email_allowed(cfg, email)


def _sign_in_form(cfg: hosting.AccessConfig) -> None:
    st.title("R-MTLLMF Studio")
    st.caption("This instance is private. Sign in to continue; shared links open after you sign in.")
    if cfg.oidc:
        if importlib.util.find_spec("authlib") is None:
            st.error("Single sign-on is configured but Authlib is not installed on the server "
                     "(`pip install \"Authlib>=1.3.2\"`).")
        else:
            logged_in, email = _oidc_user()
            if logged_in:
                st.error(f"Signed in as {email or 'an unknown account'}, which this instance does not admit.")
                st.button("Sign out", on_click=st.logout, key="rmtllmf.signout")
            elif st.button("Sign in with single sign-on", key="rmtllmf.sso", type="primary"):
                st.login(cfg.provider) if cfg.provider else st.login()
    if cfg.password_hash:
        with st.form("rmtllmf.signin", clear_on_submit=True):
            password = st.text_input("Password", type="password", max_chars=hosting.MAX_PASSWORD_CHARS)
            submitted = st.form_submit_button("Sign in", type="primary")
        if submitted:
            _try_password(cfg, password)


def _try_password(cfg: hosting.AccessConfig, password: str) -> None:
    ok, wait = hosting.try_password(cfg, password)
    if wait > 0:
        st.error(f"Too many failed sign-ins on this server; try again in {int(wait) + 1} s.")
        return
    if ok:
        st.session_state[GRANTED] = hosting.granted_token(cfg)
        st.session_state.pop(FAILURES, None)
        st.rerun()
    failures = st.session_state.get(FAILURES, 0) + 1
    st.session_state[FAILURES] = failures
    time.sleep(min(0.25 * 2 ** min(failures, 4), 4.0))  # each wrong guess costs this session more
    st.error("Wrong password.")


def sign_out() -> None:
    """Forget this session's password sign-in (OIDC users: `st.logout()`)."""
    st.session_state.pop(GRANTED, None)
