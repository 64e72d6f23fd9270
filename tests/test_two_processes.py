"""What the processes of a run do together, in two processes forked from this one (gloo, in a
second, with none of a launch's start-up): sharing the run folder, and gathering predictions."""

import multiprocessing
import os
import socket
import traceback
from pathlib import Path

import torch.distributed as dist

from kit.errors import KitError
from kit.train import distributed


def two_processes(fn, cwds: list[Path]) -> list:
    """`fn(rank)` run in two processes joined by gloo, process r working in `cwds[r]`; what
    each returned, or the exception it raised."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def run(rank):
        try:
            os.chdir(cwds[rank])
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                    world_size=2)  # fmt: skip
            results.put((rank, fn(rank)))
        except BaseException as e:  # noqa: B036 - handed back to the test
            results.put((rank, e if isinstance(e, KitError) else RuntimeError(
                traceback.format_exc())))  # fmt: skip
        finally:
            results.close()
            results.join_thread()  # what was put is sent before the fork's quick exit
            os._exit(0)

    procs = [ctx.Process(target=run, args=(r,)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        found = dict(results.get(timeout=60) for _ in procs)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    return [found[r] for r in range(2)]


def in_workspace(rank):
    """Rank 0 makes a run folder under its working folder (as `--out .` does), and both work
    in it as a DDP run does."""

    def start_run():
        partial = Path("runs", "mnist", ".RUN.partial")
        partial.mkdir(parents=True)
        (partial / "recipe.json").write_text("{}")
        return partial

    partial = distributed.on_main(start_run)  # as kit/pipeline.py starts a run
    with distributed.workspace(partial, folds=0) as work:
        return (work / "recipe.json").read_text(), sorted(p.name for p in partial.iterdir())


def test_processes_that_share_the_run_folder_work_in_it(tmp_path):
    here, there = two_processes(in_workspace, [tmp_path, tmp_path])
    assert here == there == ("{}", ["recipe.json"])  # rank 1 in its copy; no mark left behind


def test_processes_that_do_not_see_rank_0_s_run_folder_are_refused_in_one_line(
    tmp_path, monkeypatch
):
    """Rank 1 as if on another machine with no filesystem in common: its working folder is
    another, where the run folder's (relative) path names nothing."""
    monkeypatch.setattr(distributed, "SHARED_S", 0.2)
    (tmp_path / "node0").mkdir(), (tmp_path / "node1").mkdir()
    found = two_processes(in_workspace, [tmp_path / "node0", tmp_path / "node1"])
    for e in found:  # both refuse, so neither waits for the other
        assert isinstance(e, KitError), e
        host = socket.gethostname()
        assert str(e).startswith(f"process 1 of 2 (on {host}) does not see the run folder "
                                 "runs/mnist/.RUN.partial that process 0")  # fmt: skip
        assert "a run on several machines needs --out on a filesystem" in str(e)
        assert "\n" not in str(e)
