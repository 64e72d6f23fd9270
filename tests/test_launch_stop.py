"""An interrupted launch (Ctrl-C, a notebook's interrupt) stops torchrun and every process it
started: a real torchrun of two workers that sleep, each with a child, one of them deaf to
SIGINT and SIGTERM, interrupted the way a notebook kernel is (SIGINT to the launching process
alone, not to torchrun's group)."""

import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from kit.cli import main
from kit.train import launch

SLEEPER = """
import os, signal, subprocess, sys, time
from pathlib import Path

if os.environ["RANK"] == "1":  # a stubborn worker (its child inherits it): only SIGKILL ends it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pids = f"{os.getppid()} {os.getpid()} {child.pid}"
Path(sys.argv[1], "rank" + os.environ["RANK"]).write_text(pids)
print("ready", flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_an_interrupted_launch_stops_torchrun_and_all_its_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "GRACE_S", 1.0)  # the stubborn worker waits out each grace
    # Python's own handler, as a terminal or a notebook kernel has it: a shell's background job
    # (`nohup make test &`) starts with SIGINT ignored, and the interrupt would never arrive
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", str(script), str(tmp_path)]  # fmt: skip
    main, pids = threading.main_thread().ident, set()

    def interrupt():
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("rank*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the files are written before their contents: let them land
        for f in tmp_path.glob("rank*"):
            pids.update(int(p) for p in f.read_text().split())
        signal.pthread_kill(main, signal.SIGINT)  # as a kernel interrupt: this process only

    threading.Thread(target=interrupt, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt) as stopped:
            launch.stream(cmd, {**os.environ, "OMP_NUM_THREADS": "1"})
        assert len(pids) == 5  # torchrun, two workers, their two children
        deadline = time.monotonic() + 5  # the orphaned children are reaped by init
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if alive(p)]
        assert str(stopped.value) == "stopped torchrun and its 2 processes"
        assert time.monotonic() - started < 60
    finally:
        signal.signal(signal.SIGINT, previous)
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)


def test_an_interrupted_launch_says_how_to_continue_the_run_it_left(tmp_path, monkeypatch, capsys):
    def interrupted(cmd, env):  # rank 0 kept the run: it had trained an epoch
        (tmp_path / "runs" / "mnist" / ".RUN.partial").mkdir(parents=True)
        raise KeyboardInterrupt("stopped torchrun and its 2 processes")

    monkeypatch.setattr(launch, "stream", interrupted)
    with pytest.raises(KeyboardInterrupt) as stopped:
        launch.launch("mnist", 2, tmp_path, {"device": "cpu"})
    said = (
        "stopped torchrun and its 2 processes; "
        "continue the run with `kit run mnist --resume RUN --nproc 2`"
    )
    assert str(stopped.value) == said
    shutil.rmtree(tmp_path / "runs")  # the command line says the same, in one line
    assert main(["run", "mnist", "--nproc", "2", "--out", str(tmp_path), "--device", "cpu"]) == 130
    assert capsys.readouterr().err == f"kit: interrupted: {said}\n"


def test_a_launch_that_ends_by_itself_is_left_alone(capsys):
    code, _, _ = launch.stream([sys.executable, "-c", "print('done')"], dict(os.environ))
    assert code == 0 and capsys.readouterr().out == "done\n"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_the_groups_of_a_process_tree_are_found(tmp_path):
    import subprocess

    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
           "'import time; time.sleep(60)'], start_new_session=True); time.sleep(60)"  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(launch.process_groups(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        groups = launch.process_groups(proc.pid)
        (child,) = psutil.Process(proc.pid).children()
        assert groups == {proc.pid, child.pid}  # each in its own session, as torchrun's are
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait()
