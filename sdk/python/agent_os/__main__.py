"""``python3 -m agent_os``: the package's reports for shell projects, the spool's flush, and
serving a plugin class over the command transport.

Reports (``ping``, ``emit``, ``notify``, ``cost``) exit 0 when sent or spooled: a job's shell
script must not fail because Agent OS is away. Usage mistakes exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Optional, Sequence, Union

from . import __version__, default_client
from .plugin import Plugin, serve_command


def _load_plugin(spec: str) -> Plugin:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"agent_os: plugin: give MODULE:CLASS, e.g. `python3 -m agent_os plugin myproject.plugin:Trading`; got {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SystemExit(f"agent_os: plugin: cannot import {module_name!r} from {os.getcwd()}: {e}") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise SystemExit(f"agent_os: plugin: {module_name} has no {attr!r}")
        target = getattr(target, part)
    plugin = target() if callable(target) and not isinstance(target, Plugin) else target
    if not isinstance(plugin, Plugin):
        raise SystemExit(f"agent_os: plugin: {spec} is not a Plugin (subclass agent_os.Plugin)")
    return plugin


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m agent_os",
        description="Report to Agent OS from any job; the connection comes from AGENT_OS_URL and AGENT_OS_TOKEN.",
    )
    p.add_argument("--version", action="version", version=f"agent_os {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("flush", help="send the reports the spool holds; exit 1 if some still wait")

    ping = sub.add_parser("ping", help="ping a heartbeat check")
    ping.add_argument("slug", help="the check's slug, or its ping URL")
    ping.add_argument("kind", nargs="?", default="success", help="start, success, fail, log or an exit status (default success)")
    ping.add_argument("--body", help="text kept as the ping's log; - reads stdin")
    ping.add_argument("--rid", help="pairs a start with its finish: give both the same")

    emit = sub.add_parser("emit", help="emit an event")
    emit.add_argument("type", help="e.g. trading.volatility_spike")
    emit.add_argument("data", nargs="?", default="{}", help="a JSON object (default {})")
    emit.add_argument("--key", help="idempotency key (default: from the run, or random)")

    notify = sub.add_parser("notify", help="send a notification")
    notify.add_argument("title")
    notify.add_argument("body", nargs="?")
    notify.add_argument("--severity", default="info", choices=["info", "warning", "critical"])
    notify.add_argument("--tag", action="append", dest="tags", help="a tag; repeat for more")
    notify.add_argument("--dedup-key")
    notify.add_argument("--key", help="idempotency key (default: from the run, or random)")

    cost = sub.add_parser("cost", help="report a cost")
    cost.add_argument("service", help="the provider, e.g. openai")
    cost.add_argument("--amount", help="exact decimal, e.g. 0.0123 (leave out to let Agent OS price the tokens)")
    cost.add_argument("--model")
    cost.add_argument("--tokens-in", type=int)
    cost.add_argument("--tokens-out", type=int)
    cost.add_argument("--tokens-cached-in", type=int)
    cost.add_argument("--currency")
    cost.add_argument("--key-name")
    cost.add_argument("--label", help="names this cost within the run's attempt (for its idempotency key)")
    cost.add_argument("--key", help="idempotency key")

    plugin = sub.add_parser("plugin", help="serve MODULE:CLASS over the command transport")
    plugin.add_argument("spec", help="MODULE:CLASS, imported from the working directory")
    plugin.add_argument("rest", nargs=argparse.REMAINDER, help="nothing (a probe on stdin) or `task NAME`")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (TypeError, ValueError) as e:
        sys.stderr.write(f"agent_os: {args.command}: {e}\n")
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "plugin":
        return serve_command(_load_plugin(args.spec), list(args.rest))
    client = default_client()
    if args.command == "flush":
        result = client.flush()
        where = client.spool.path if client.spool is not None else "no spool (AGENT_OS_URL is not set)"
        if result.busy:
            print(f"another process is sending {where}")
            return 0
        print(f"sent {result.sent}, dropped {result.dropped}, waiting {result.remaining} ({where})")
        return 1 if result.remaining else 0
    if args.command == "ping":
        kind: Union[str, int] = int(args.kind) if args.kind.isdigit() else args.kind
        body = sys.stdin.read() if args.body == "-" else args.body
        client.ping(args.slug, kind, body=body, rid=args.rid)
        return 0
    if args.command == "emit":
        try:
            data = json.loads(args.data)
        except ValueError as e:
            raise ValueError(f"the event data is not JSON ({e}); give an object, e.g. '{{\"symbol\": \"SOL\"}}'") from None
        if not isinstance(data, dict):
            raise ValueError("the event data must be a JSON object")
        print(client.emit(args.type, data, args.key))
        return 0
    if args.command == "notify":
        print(client.notify(args.title, args.body, args.severity, tags=args.tags, dedup_key=args.dedup_key, idempotency_key=args.key))
        return 0
    if args.command == "cost":
        print(
            client.report_cost(
                args.service,
                args.amount,
                model=args.model,
                tokens_in=args.tokens_in,
                tokens_out=args.tokens_out,
                tokens_cached_in=args.tokens_cached_in,
                currency=args.currency,
                key_name=args.key_name,
                label=args.label,
                idempotency_key=args.key,
            )
        )
        return 0
    _parser().print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
