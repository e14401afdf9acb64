"""python -m clip_engine SUBCOMMAND ...: the `clip` tool's subcommands (embed, score, classify,
search, tokenize, info, convert, bench), the same binary the package was built with."""
import os
import sys

from ._model import cli_path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    exe = cli_path()
    os.execv(exe, ["clip"] + list(argv))


if __name__ == "__main__":
    main()
