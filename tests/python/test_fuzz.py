"""The wire fuzzer (tests/fuzz, run by tools/fuzz.sh) for 30 s: a real engine
and providers built with AddressSanitizer + UBSan take mutated requests of
every RPC from a hostile peer, and nothing may crash, hang or stop answering.

Mutated HELLOs are sent too: a HELLO no longer carries a worker address to
UCX (the client's address travels, checked, in the bootstrap handshake), so
the mutations that used to trip UCX's address assertion must be harmless.

The first run builds the sanitizer tree (library and harness only, about
2.5 CPU-minutes); later runs on the same checkout reuse it."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "tools" / "fuzz.sh"


@pytest.mark.timeout(1800)
def test_thirty_seconds_of_fuzzing_find_no_crash():
    if not FUZZ.exists():
        pytest.skip("tools/fuzz.sh is not in this tree (tests run outside the source checkout)")
    for tool in ("cmake", "ninja"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: the fuzzer cannot be built")
    r = subprocess.run([str(FUZZ), "30"], capture_output=True, text=True, timeout=1700)
    summary = (
        r.stdout
        + "\n"
        + "\n".join(line for line in r.stderr.splitlines() if not line.startswith("[mochi-yokan]"))[
            -20000:
        ]
    )
    print(summary)
    assert r.returncode == 0, summary
    requests = re.search(r"requests (\d+)", r.stdout)
    assert requests and int(requests.group(1)) > 1000, summary
    assert "crashes 0, unique crashes 0, hangs 0" in r.stdout, summary
    assert "liveness failures 0, ping failures 0" in r.stdout, summary
