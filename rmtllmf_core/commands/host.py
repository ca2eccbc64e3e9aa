"""`hash-password` and `host-check`: setting up a hosted instance (the rules are rmtllmf_core.serve.hosting)."""
from __future__ import annotations

import argparse
import getpass
import importlib.util
import json
import sys

from ..errors import InputError
from ..serve import hosting

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "hash-password",
        help="print the [access] entry of .streamlit/secrets.toml for a shared password",
        description="Reads a password (twice, not echoed; or one line from stdin with --stdin) and prints "
                    "the salted scrypt hash as a secrets.toml entry. The password itself is never stored.",
    )
    p.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    p.set_defaults(func=_cmd_hash_password)
    c = subparsers.add_parser(
        "host-check",
        help="check .streamlit/secrets.toml and RMTLLMF_* variables; print the effective limits and access",
        description="Reads the secrets the app will read (run it from the app's folder) and the environment, "
                    "validates [limits] and [access], and prints what a hosted instance will enforce.",
    )
    c.set_defaults(func=_cmd_host_check)


def _cmd_hash_password(args: argparse.Namespace) -> int:
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise InputError("password", "the two entries differ")
    if len(password) < 8:
        raise InputError("password", "use at least 8 characters")
    print("# add to .streamlit/secrets.toml (keep that file private: chmod 600)")
    print("[access]")
    print(f'password_hash = "{hosting.hash_password(password)}"')
    return 0


def _cmd_host_check(args: argparse.Namespace) -> int:
    secrets = hosting.read_secrets(strict=True)
    lim = hosting.load_limits(secrets)
    cfg = hosting.access_config(secrets)
    print(json.dumps({"limits": lim.to_dict(), "access": {
        "password": bool(cfg.password_hash), "single_sign_on": cfg.oidc, "provider": cfg.provider,
        "authlib_installed": importlib.util.find_spec("authlib") is not None,
        "allowed_emails": sorted(cfg.allowed_emails), "allowed_domains": sorted(cfg.allowed_domains),
        "open_to_anyone_who_reaches_the_port": not cfg.enabled}}, indent=2))
    if cfg.oidc and importlib.util.find_spec("authlib") is None:
        raise InputError("auth", 'single sign-on is configured but Authlib is not installed (pip install "Authlib>=1.3.2")')
    return 0
