"""A stand-in for systemd's socket activation in tests:

    python sd_launcher.py FD[,FD...] -- PROGRAM ARGS...

moves the inherited sockets FD... to fds 3, 4, ... (in that order), sets
LISTEN_FDS to their number and LISTEN_PID to this process's pid, then execs
PROGRAM in this same process, so the pid it is told is its own.
LAUNCHER_LISTEN_FDS, when set, is passed as LISTEN_FDS instead of the count.
"""

import os
import sys


def main(argv):
    fds = [int(fd) for fd in argv[1].split(",") if fd]
    if argv[2] != "--":
        raise SystemExit("usage: sd_launcher.py FD[,FD...] -- PROGRAM ARGS...")
    program = argv[3:]
    # Copy every socket above the target range before placing any, so that
    # placing one never overwrites another.
    high = [os.dup2(fd, 100 + i) for i, fd in enumerate(fds)]
    for fd in fds:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i)  # inheritable by default
        os.close(fd)
    env = dict(os.environ)
    # a test may ask for a wrong count on purpose
    env["LISTEN_FDS"] = os.environ.get("LAUNCHER_LISTEN_FDS", str(len(fds)))
    env["LISTEN_PID"] = str(os.getpid())
    env["LISTEN_FDNAMES"] = ":".join("sock%d" % i for i in range(len(fds)))
    os.execvpe(program[0], program, env)


if __name__ == "__main__":
    main(sys.argv)
