"""`make wheel`'s wheel installs where there is no Rust toolchain and
serves: built as the Makefile builds it (a release build, so the first run
compiles for a minute or two), installed into a fresh virtualenv whose PATH
has no cargo or rustc, then the demo app served from it."""

import importlib.util
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import zipfile

import pytest
from helpers import HERE, free_port, get_closing, wait_for

ROOT = os.path.dirname(os.path.dirname(HERE))


def without_rust(path):
    """`path` (a PATH value) less every directory holding cargo or rustc."""
    return os.pathsep.join(
        d
        for d in path.split(os.pathsep)
        if d and not any(os.path.exists(os.path.join(d, t)) for t in ("cargo", "rustc"))
    )


@pytest.mark.timeout(900)
@pytest.mark.skipif(importlib.util.find_spec("maturin") is None, reason="maturin not installed (the test extra has it)")
def test_the_abi3_wheel_installs_without_rust_and_serves_the_demo(tmp_path):
    out = tmp_path / "dist"
    subprocess.run(
        ["make", "-s", "-C", ROOT, "wheel", "MATURIN=%s -m maturin" % sys.executable, "WHEEL_DIR=%s" % out],
        check=True,
        capture_output=True,
        timeout=850,
    )
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    # one wheel for every CPython from 3.9 (the stable ABI), for manylinux
    assert re.fullmatch(r"ferrocorn-[^-]+-cp39-abi3-manylinux_\d+_\d+_%s\.whl" % platform.machine(), wheel.name)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert [n for n in names if n.endswith(".so")] == ["ferrocorn/_ferrocorn.abi3.so"], names
    assert "Requires-Python: >=3.9" in metadata

    path = without_rust(os.environ["PATH"])
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {"PATH": os.pathsep.join([str(venv / "bin"), path]), "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index", str(wheel)],
        check=True,
        env=env,
        timeout=120,
    )
    # the module that runs is the wheel's, not this checkout's
    where = subprocess.run(
        [python, "-c", "import ferrocorn._ferrocorn as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        check=True,
    ).stdout.strip()
    assert where == str(
        venv / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages/ferrocorn/_ferrocorn.abi3.so"
    )

    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [str(venv / "bin" / "ferrocorn"), "-b", "127.0.0.1:%d" % port, "-w", "1", "ferrocorn.demo:app"],
        env=env,
        cwd=str(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def answered():
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                return get_closing(("127.0.0.1", port), timeout=5)
            except OSError:
                return None

        assert wait_for(answered, timeout=30, what="the demo app") == (200, b"Hello, world!\n")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log.close()
