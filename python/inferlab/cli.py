"""The ``inferlab`` command: ``info``, ``generate``, ``chat``, ``bench``.

Each subcommand lives in its area's module and registers here.
"""
from __future__ import annotations

import argparse
import sys


def _add_info(sub):
    from .gguf import add_info_command  # provided by the GGUF area

    add_info_command(sub)


def _add_model_commands(sub):
    from .model_cli import add_model_commands  # generate, chat, bench

    add_model_commands(sub)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inferlab", description="LLM inference for GGUF models")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_info, _add_model_commands):
        try:
            add(sub)
        except ImportError:
            pass
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, NotImplementedError, MemoryError, RuntimeError) as e:
        print(f"inferlab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
