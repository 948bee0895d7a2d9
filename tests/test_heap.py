"""One malloc heap for every thread (glibc): memory a thread frees is reused by the others."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import ctypes, os, sys, tempfile, threading
    from sohae_watch.parallel import one_heap
    if sys.argv[1] == "one":
        one_heap()
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    def work():
        for _ in range(100):
            libc.free(libc.malloc(4096))
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fd, path = tempfile.mkstemp()
    os.close(fd)
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, f)
    libc.fclose(f)
    with open(path) as fh:
        print(fh.read().count("<heap nr="))
    os.unlink(path)
    """
)


def _heaps(mode: str) -> int:
    res = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(res.stdout.strip())


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or "libc.so.6" not in str(ctypes.util.find_library("c")),
    reason="glibc only",
)
def test_threads_share_one_heap() -> None:
    assert _heaps("default") > 1  # glibc's own behaviour: a heap per allocating thread
    assert _heaps("one") == 1


def test_the_cli_asks_for_one_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from sohae_watch.cli import main

    calls: list[int] = []
    monkeypatch.setattr(main, "one_heap", lambda: calls.append(1))
    res = CliRunner().invoke(main.cli, ["diff", "--help"])
    assert res.exit_code == 0 and calls == [1]
