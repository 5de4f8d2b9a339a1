"""Test helper: the group tests of test_group.py, run from a client in its
own network namespace against a group whose members sit in others.

    python netns_group_client.py GROUP_FILE
Prints one line per phase passed; exits non-zero on the first failure.
"""

import os
import sys
import time
from pathlib import Path

import test_group
from mochi.yokan.group import Group


class Member:
    """A member server known by its pid only (it runs in another network
    namespace, but in our pid namespace)."""

    def __init__(self, pid):
        self.pid = pid

    def kill(self):
        os.kill(self.pid, 9)

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                        return
            except FileNotFoundError:
                return
            time.sleep(0.01)
        raise TimeoutError(f"member {self.pid} did not die")


group_file = Path(sys.argv[1])
members = [Member(m["pid"]) for m in __import__("json").loads(group_file.read_text())["members"]]
with Group.from_file(str(group_file), wait_s=30) as g:
    assert all(m.address.startswith("tcp://10.") for m in g.members), g.members
    test_group.test_every_call_through_the_group((g, members, group_file))
    print("every call through the group: ok", flush=True)
    test_group.test_a_dead_member_fails_only_its_calls_naming_it((g, members, group_file))
    print("a killed member fails only its calls, naming it: ok", flush=True)
