"""The ``frys-ws`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from frys.cli.logs import setup_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frys-ws", description="Frys WebSocket")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--plain-logs", action="store_true", help="human-readable logs")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run NATS and a gateway locally")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--no-engine", action="store_true", help="do not start the demo engine")

    gw = sub.add_parser("gateway", help="run a gateway against a NATS server")
    gw.add_argument("--config", help="JSON or TOML file (FRYS_CONFIG)")
    for flag, kind in (
        ("nats-url", str),
        ("host", str),
        ("port", int),
        ("gateway-id", str),
        ("public-url", str),
        ("subject-prefix", str),
        ("workers", int),
        ("jwt-secret", str),
        ("jwt-public-key-file", str),
        ("jwt-jwks-file", str),
        ("jwt-issuer", str),
        ("jwt-audience", str),
        ("api-key", str),
        ("allowed-origins", str),
        ("drain-s", float),
        ("stream-replicas", int),
    ):
        gw.add_argument(f"--{flag}", type=kind, dest=flag.replace("-", "_"))

    tok = sub.add_parser("token", help="mint an HS256 token")
    tok.add_argument("--secret", help="HMAC secret (default: FRYS_JWT_SECRET)")
    tok.add_argument("--sub", required=True, help="subject: user or agent id")
    tok.add_argument(
        "--grant",
        action="append",
        default=[],
        metavar="PATTERN=RIGHTS",
        help="e.g. 'wf:42:*=subscribe,publish' (repeatable)",
    )
    tok.add_argument("--kind", default="user", choices=["user", "agent", "service"])
    tok.add_argument("--ttl-s", type=float, default=3600.0)
    tok.add_argument("--issuer", default="")
    tok.add_argument("--audience", default="")
    tok.add_argument("--key-id", default="")

    rt = sub.add_parser("router", help="run the collaboration-aware router")
    for flag, kind in (
        ("nats-url", str),
        ("subject-prefix", str),
        ("host", str),
        ("port", int),
        ("plan-interval-s", float),
        ("k8s", str),
        ("k8s-namespace", str),
        ("k8s-selector", str),
    ):
        rt.add_argument(f"--{flag}", type=kind, dest=flag.replace("-", "_"))
    lt = sub.add_parser("loadtest", help="benchmarks and load scenarios", add_help=False)
    lt.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, json_logs=not args.plain_logs)
    if args.command == "dev":
        from frys.cli.dev import run_dev

        return run_dev(args.port, args.host, engine=not args.no_engine)
    if args.command == "gateway":
        from frys.cli.run_gateway import run_gateway
        from frys.gateway.config import ConfigError, load_config

        overrides = {
            k: v
            for k, v in vars(args).items()
            if k not in ("command", "config", "log_level", "plain_logs") and v is not None
        }
        try:
            config = load_config(args.config, overrides=overrides)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        return run_gateway(config)
    if args.command == "token":
        return _token(args)
    if args.command == "router":
        from frys.router.config import RouterConfigError, load_router_config
        from frys.router.server import run_router

        overrides = {
            k: v
            for k, v in vars(args).items()
            if k not in ("command", "log_level", "plain_logs") and v is not None
        }
        try:
            router_config = load_router_config(overrides=overrides)
        except RouterConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        return run_router(router_config)
    if args.command == "loadtest":
        from frys.loadtest.cli import main as loadtest_main

        return loadtest_main(args.args)
    return 2


def _token(args: argparse.Namespace) -> int:
    import os

    from frys.gateway.auth import mint_token
    from frys.shared.protocol.errors import ChannelError
    from frys.shared.protocol.grants import parse_pattern

    secret = args.secret or os.environ.get("FRYS_JWT_SECRET", "")
    if not secret:
        print("a secret is required (--secret or FRYS_JWT_SECRET)", file=sys.stderr)
        return 2
    grants: dict[str, list[str]] = {}
    for item in args.grant:
        pattern, _, rights = item.partition("=")
        rights_list = [r.strip() for r in rights.split(",") if r.strip()]
        try:
            parse_pattern(pattern, rights_list)
        except ChannelError as exc:
            print(f"bad grant {item!r}: {exc}", file=sys.stderr)
            return 2
        grants.setdefault(pattern, []).extend(rights_list)
    print(
        mint_token(
            secret,
            args.sub,
            grants,
            ttl_s=args.ttl_s,
            kind=args.kind,
            issuer=args.issuer,
            audience=args.audience,
            key_id=args.key_id,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
