"""The ``ferrocornc`` command line: Gunicorn's ``gunicornc`` options (-s, -c,
-j, -v, interactive mode without a command), the command also given as plain
words (``ferrocornc show workers``), and ``top``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from ferrocorn.ctl import formats, top
from ferrocorn.ctl.client import ControlClient, ControlError, default_socket


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ferrocornc",
        description="Control a running ferrocorn (or Gunicorn 27) master through its control socket.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  ferrocornc show workers          # one command
  ferrocornc -c "worker add 2"     # the same, gunicornc style
  ferrocornc -j show stats         # JSON, for scripts
  ferrocornc top                   # live view of the workers (--once: one snapshot)
  ferrocornc                       # interactive
""",
    )
    p.add_argument(
        "-s",
        "--socket",
        default=default_socket(),
        help="control socket path (default: $XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl)",
    )
    p.add_argument("-c", "--command", help="execute one command and exit")
    p.add_argument("-j", "--json", action="store_true", help="output the raw JSON answer")
    p.add_argument("-v", "--version", action="store_true", help="show version and exit")
    p.add_argument("--once", action="store_true", help="top: print one snapshot and exit")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="top: refresh interval (default 1)")
    p.add_argument("words", nargs="*", metavar="COMMAND", help="the command, e.g. show workers, worker add 2, top")
    return p


def run_command(path: str, command: str, as_json: bool) -> int:
    try:
        with ControlClient(path) as client:
            data = client.send(command)
    except ControlError as e:
        print("Error: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2) if as_json else formats.render(command, data))
    return 0


def run_top(path: str, once: bool, interval: float, as_json: bool) -> int:
    client = ControlClient(path)
    try:
        return top.run(client, once=once, interval=max(0.1, interval), as_json=as_json)
    except ControlError as e:
        print("Error: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()


_QUIT_WORDS = ("quit", "exit", "q")


def _prompt() -> str | None:
    """The next line typed at the prompt, stripped; None at end of input."""
    try:
        return input("ferrocorn> ").strip()
    except EOFError:
        print()
        return None


def _run_line(client: ControlClient, line: str, as_json: bool) -> bool:
    """Runs one typed command and prints its answer. An error is printed
    and the connection made again; False when that fails too."""
    try:
        if line.split()[0].lower() == "top":
            top.run(client, once=True, as_json=as_json)
        else:
            data = client.send(line)
            print(json.dumps(data, indent=2) if as_json else formats.render(line, data))
        return True
    except ControlError as e:
        print("Error: %s" % e)
    try:
        client.close()
        client.connect()
    except ControlError:
        return False
    return True


def run_interactive(path: str, as_json: bool) -> int:
    try:
        import readline
    except ImportError:
        readline = None
    client = ControlClient(path)
    try:
        client.connect()
    except ControlError as e:
        print("Error: %s" % e, file=sys.stderr)
        return 1
    print("Connected to %s" % path)
    print("Type 'help' for available commands, 'quit' to exit.")
    print()
    history = os.path.expanduser("~/.ferrocornc_history")
    if readline is not None:
        try:
            readline.read_history_file(history)
        except OSError:
            pass
    status = 0
    try:
        for line in iter(_prompt, None):
            if line.lower() in _QUIT_WORDS:
                break
            if not line:
                continue
            if not _run_line(client, line, as_json):
                print("Connection lost. Exiting.")
                status = 1
                break
            print()
    except KeyboardInterrupt:
        print()
        status = 130
    finally:
        client.close()
        if readline is not None:
            try:
                readline.write_history_file(history)
            except OSError:
                pass
    return status


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.version:
        from ferrocorn import __version__

        print("ferrocornc (ferrocorn %s)" % __version__)
        return 0
    path = args.socket if os.path.isabs(args.socket) else os.path.join(os.getcwd(), args.socket)
    if args.command and args.words:
        print("Error: give the command either with -c or as words, not both", file=sys.stderr)
        return 2
    command = args.command if args.command else shlex.join(args.words)
    try:
        if command.split()[:1] == ["top"]:
            return run_top(path, args.once, args.interval, args.json)
        if command:
            return run_command(path, command, args.json)
        return run_interactive(path, args.json)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
