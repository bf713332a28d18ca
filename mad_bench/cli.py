"""The ``madbench`` command. Each subcommand is a small function over the library API."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .spec import SpecError

console = Console()


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""


# -- spec commands -----------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    from .spec import load_spec

    failed = 0
    for path in args.specs:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            failed += 1
            print(exc.format(), file=sys.stderr)
            continue
        print(f"{path}: ok ({spec.name}: {spec.primitives_summary()})")
    return 2 if failed else 0


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def cmd_info(args: argparse.Namespace) -> int:
    from .info import summarize
    from .spec import load_spec

    spec = load_spec(args.spec)
    rows, total = summarize(spec, args.vocab_size, args.seq_len, backbone=args.backbone)
    table = Table(title=f"{spec.name}  (d_model {spec.d_model}, vocab {args.vocab_size}, "
                        f"seq_len {args.seq_len})")
    for col in ("layer", "primitive", "kind", "params", "FLOPs/token (fwd)", "state / sequence"):
        table.add_column(col, justify="right" if col not in ("primitive", "kind") else "left")
    for r in rows + [total]:
        table.add_row(r.index, r.primitive, r.kind, f"{r.params:,}", _si(r.flops_per_token),
                      _bytes(r.state_bytes), end_section=r is rows[-1])
    console.print(table)
    console.print("state: recurrent state or KV cache per sequence at fp32 for seq_len tokens")
    return 0


def cmd_primitives(args: argparse.Namespace) -> int:
    from .primitives import REGISTRY

    table = Table(title="registered primitives")
    for col in ("name", "kind", "parameters (defaults)", "what"):
        table.add_column(col)
    for kind in ("sequence", "channel"):
        for name, entry in sorted(REGISTRY.items()):
            if entry.kind != kind:
                continue
            params = ", ".join(f"{k}={f.default!r}" for k, f in entry.config.model_fields.items()
                               if k != "type")
            table.add_row(name, kind, params, entry.doc)
    console.print(table)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .spec import spec_json_schema

    print(json.dumps(spec_json_schema(), indent=2))
    return 0


# -- parser ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="madbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check spec files; 'ok' or one error per line")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("info", help="per-layer parameters, FLOPs and state size of a spec")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--vocab-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--backbone", choices=["lm", "autoencoder"], default=None)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("primitives", help="list registered primitives and their parameters")
    p.set_defaults(func=cmd_primitives)

    p = sub.add_parser("schema", help="print the JSON Schema of spec files")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        for line in exc.format().splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except (UsageError, ValueError, FileNotFoundError, PermissionError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
