"""The single-writer lock with real processes: symlinks, kills with surviving children, no record locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from featx.errors import StoreLockedError
from featx.store.lock import lock_path, store_lock

HOLD = textwrap.dedent("""
    import errno, fcntl, os, sys, time
    from pathlib import Path
    if sys.argv[2] == "nolocks":  # a file system that refuses record locks (some NFS / Lustre mounts)
        def refuse(*a, **k):
            raise OSError(errno.ENOLCK, "No locks available")
        fcntl.lockf = refuse
    from featx.store.lock import store_lock
    with store_lock(Path(sys.argv[1])):
        if sys.argv[3] == "fork":  # a child that outlives its parent, like an orphaned DataLoader worker
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
        print("locked", flush=True)
        time.sleep(60)
""")


def _hold(path, mode="locks", fork="nofork"):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), mode, fork], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _try(path, mode="locks") -> subprocess.CompletedProcess:
    code = HOLD.replace('print("locked", flush=True)\n    time.sleep(60)', 'print("got it")')
    return subprocess.run([sys.executable, "-c", code, str(path), mode, "nofork"], capture_output=True, text=True)


def test_symlinked_paths_share_one_lock(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    holder = _hold(tmp_path / "real" / "s.h5")
    try:
        with pytest.raises(StoreLockedError, match=f"pid {holder.pid}"):
            with store_lock(tmp_path / "link" / "s.h5"):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert lock_path(tmp_path / "link" / "s.h5") == lock_path(tmp_path / "real" / "s.h5")


def test_same_process_cannot_take_it_twice(tmp_path):
    with store_lock(tmp_path / "s.h5"):
        with pytest.raises(StoreLockedError, match="this very process"):
            with store_lock(tmp_path / "s.h5"):
                pass
    with store_lock(tmp_path / "s.h5"):  # released on exit
        pass


def test_lock_dies_with_its_holder_even_when_a_forked_child_lives_on(tmp_path):
    holder = _hold(tmp_path / "s.h5", fork="fork")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with store_lock(tmp_path / "s.h5"):  # at once: the orphan does not keep the lock
        pass


def test_without_record_locks_an_owner_file_guards_and_stale_owners_are_broken(tmp_path):
    store = tmp_path / "s.h5"
    holder = _hold(store, "nolocks")
    owner = lock_path(store).with_name(lock_path(store).name + ".owner")
    try:
        assert json.loads(owner.read_text())["pid"] == holder.pid
        refused = _try(store, "nolocks")
        assert refused.returncode != 0 and "another featx process" in refused.stderr
        assert f"delete {owner}" in refused.stderr
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # dies without cleaning up: its owner file stays behind
        holder.wait()
    assert owner.exists()
    taken = _try(store, "nolocks")  # same host, holder gone: the stale owner file is broken
    assert taken.returncode == 0 and "got it" in taken.stdout, taken.stderr
    assert not owner.exists()  # removed on a normal exit


def test_owner_file_of_another_host_is_respected(tmp_path):
    store = tmp_path / "s.h5"
    owner = lock_path(store).with_name(lock_path(store).name + ".owner")
    owner.write_text(json.dumps({"host": "node-17.cluster", "pid": 4242, "start": None}))
    t0 = time.time()
    refused = _try(store, "nolocks")
    assert refused.returncode != 0 and "pid 4242 on node-17.cluster" in refused.stderr
    assert time.time() - t0 < 30 and owner.exists()
