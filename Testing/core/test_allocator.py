"""The glibc allocator tuning: in effect where it should be, off when switched off, applied for CPU models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from BSAFusionCore import allocator, model
from BSAFusionCore.allocator import ENVIRONMENT_SWITCH, _glibc_version

glibc_only = pytest.mark.skipif(not _glibc_version(), reason="the tuning applies to glibc only")

# In a fresh process, before and after the tuning: five 8 MiB blocks taken and freed, as the network's
# temporaries are; whether they were mapped on their own, and whether their 40 MiB stayed in the process
# once freed (glibc's mallinfo2). With glibc's defaults the 40 MiB go back to the system either way.
_PROBE = textwrap.dedent("""
    import ctypes, json
    from BSAFusionCore.allocator import retain_freed_memory
    libc = ctypes.CDLL("libc.so.6")
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    def probe():
        mapped = libc.mallinfo2().hblkhd
        blocks = [libc.malloc(8 << 20) for _ in range(5)]
        for block in blocks:
            ctypes.memset(block, 1, 8 << 20)
        mapped_for_them = libc.mallinfo2().hblkhd - mapped
        for block in blocks:
            libc.free(block)
        return {"mapped": mapped_for_them >= 40 << 20, "kept_free": libc.mallinfo2().fordblks >= 40 << 20}
    before = probe()
    applied = retain_freed_memory()
    print(json.dumps({"applied": applied, "before": before, "after": probe()}))
""")


def _run_probe(switch: str | None) -> dict:
    env = {key: value for key, value in os.environ.items() if key != ENVIRONMENT_SWITCH}
    if switch is not None:
        env[ENVIRONMENT_SWITCH] = switch
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout)


@glibc_only
def test_tuning_keeps_large_blocks_on_the_heap():
    result = _run_probe(None)
    assert result["applied"]
    assert result["before"] == {"mapped": True, "kept_free": False}  # glibc's defaults in a fresh process
    assert result["after"] == {"mapped": False, "kept_free": True}


@glibc_only
def test_environment_switch_leaves_the_defaults():
    result = _run_probe("0")
    assert not result["applied"]
    assert not result["after"]["kept_free"]


def test_switch_values():
    for value, wanted in (("0", False), ("off", False), (" False ", False), ("no", False), ("1", True), ("", True)):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(ENVIRONMENT_SWITCH, value)
            assert allocator.tuning_wanted() is wanted, value


def test_cpu_models_apply_it(random_net, monkeypatch):
    calls = []
    monkeypatch.setattr(model, "retain_freed_memory", lambda: calls.append(1) or True)
    model.model_from_network(random_net, "cpu", {"image_size": 64})
    assert calls == [1]
