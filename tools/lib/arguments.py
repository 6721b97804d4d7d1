"""argparse with a one-line error: make passes what a user typed (PARALLEL=abc, VERSUS=x) as
options, and argparse's own three lines (usage, then the error) bury what is wrong.

    parser = arguments.ArgumentParser(description=...)   # then as argparse.ArgumentParser
    parser.add_argument("--parallel", type=arguments.count(">= 0 (0 = automatic)", minimum=0))

Does not handle: what argparse accepts (a valid value that makes no sense is the tool's to refuse).
"""
from __future__ import annotations

import argparse


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message} (--help lists the options)\n")


def count(wanted: str, minimum: int = 0):
    """An argparse type: a whole number >= minimum, else "must be a whole number WANTED"."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number {wanted}, got {text!r}")
        return value
    return parse
