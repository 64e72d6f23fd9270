"""What the processes of a run do together, in two processes forked from this one (gloo, in a
second, with none of a launch's start-up): sharing the run folder, and gathering predictions."""

import multiprocessing
import os
import pickle
import socket
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from validation_data import validated

from kit.errors import KitError
from kit.train import ddp, distributed


def two_processes(fn, cwds: list[Path]) -> list:
    """`fn(rank)` run in two processes joined by gloo, process r working in `cwds[r]`; what
    each returned, or the exception it raised."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def run(rank):
        try:  # a fork inherits the parent's OpenMP pool without its threads: one thread, or a hang
            torch.set_num_threads(1)
            os.chdir(cwds[rank])
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                    world_size=2)  # fmt: skip
            found = fn(rank)
        except BaseException as e:  # noqa: B036 - handed back to the test
            found = e if isinstance(e, KitError) else RuntimeError(traceback.format_exc())
        try:  # pickled whole: a queue would hand tensors over in memory this process frees
            results.put((rank, pickle.dumps(found)))
        finally:
            results.close()
            results.join_thread()  # what was put is sent before the fork's quick exit
            os._exit(0)

    procs = [ctx.Process(target=run, args=(r,)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        found = {r: pickle.loads(b) for r, b in (results.get(timeout=60) for _ in procs)}
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


def sent_by_pickle(fn):
    """`fn()`, and how many elements of tensors went through the pickled (object) collectives
    meanwhile, in each object this process sent."""
    sent, pickled = [], dist.all_gather_object

    def numel(o) -> int:
        if isinstance(o, torch.Tensor):
            return o.numel()
        return sum(map(numel, o)) if isinstance(o, (list, tuple)) else 0

    def recording(out, obj, *a, **k):
        sent.append(numel(obj))
        return pickled(out, obj, *a, **k)

    dist.all_gather_object = recording  # in this forked process alone
    try:
        return fn(), sent
    finally:
        dist.all_gather_object = pickled


def gathered(rank):
    """Each process's share (every other item of 11, as `shard` deals them) of predictions of
    three kinds, put back by `gather`, and as the pickled objects it gathered before."""
    from types import SimpleNamespace

    learn = SimpleNamespace(cbs=[ddp.DDP()])  # a learner training in DDP
    gen = torch.Generator().manual_seed(0)
    whole = [torch.rand(11, 3, generator=gen), torch.randint(0, 9, (11,), generator=gen),
             torch.rand(11, 2, 4, generator=gen).half()]  # fmt: skip
    out = []
    for t in whole:
        part = t[rank::2]
        pickled = [None, None]
        dist.all_gather_object(pickled, part)
        together, sent = sent_by_pickle(lambda p=part: ddp.gather(learn, p, 11))
        out.append((together, t, pickled, ddp.everyone(part), sent))
    return out


def test_predictions_gathered_as_tensors_are_the_whole_set_in_order_as_pickled_ones_were(
    tmp_path,
):
    for found in two_processes(gathered, [tmp_path, tmp_path]):
        assert not isinstance(found, Exception), found
        for together, whole, pickled, parts, sent in found:
            assert together.dtype == whole.dtype and torch.equal(together, whole)
            assert sent == [0]  # only lengths, shapes and types went by pickle
            assert [len(p) for p in parts] == [6, 5]  # unequal shares, no padding left in
            assert all(torch.equal(p, q) for p, q in zip(parts, pickled))


def put_together(rank):
    """Each process's loss and metric of its share of a validation (every other item, in
    batches of 3), put together, against those of the whole set validated in one process."""
    mine = validated(list(range(rank, 11, 2)), "auc")
    _, sent = sent_by_pickle(lambda: ddp.put_together(mine))
    whole = validated(list(range(11)), "auc")
    return [float(m.value) for m in mine], [float(m.value) for m in whole], sent


def test_the_shares_of_a_validation_sent_as_tensors_score_as_the_whole_set(tmp_path):
    for found in two_processes(put_together, [tmp_path, tmp_path]):
        assert not isinstance(found, Exception), found
        together, whole, sent = found
        assert together == pytest.approx(whole, abs=1e-6)
        assert max(sent) <= 1  # the loss's sum went by pickle, no predictions or targets
