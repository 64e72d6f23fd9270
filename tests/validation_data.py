"""One small validation, for the tests of how processes' shares of it are put together
(tests/test_distributed.py in one process, tests/test_two_processes.py in two)."""

from types import SimpleNamespace

import torch


def validated(rows: list, metric: str) -> list:
    """fastai's AvgLoss and `metric` after one process validated `rows` of 11 seeded 2-class
    logits and labels, in batches of 3, as fastai accumulates them."""
    from fastai.learner import AvgLoss, mk_metric
    from fastai.torch_core import to_detach

    from kit.evaluate.metrics import learner_metric

    gen = torch.Generator().manual_seed(0)
    logits, y = torch.randn(11, 2, generator=gen), torch.randint(0, 2, (11,), generator=gen)
    found = [AvgLoss(), mk_metric(learner_metric(metric))]
    for m in found:
        m.reset()
    for b in range(0, len(rows), 3):
        i = rows[b : b + 3]
        loss = torch.nn.functional.cross_entropy(logits[i], y[i], reduction="none")
        batch = SimpleNamespace(pred=logits[i], yb=(y[i],), y=y[i], loss=loss,
                                to_detach=to_detach)  # fmt: skip
        for m in found:
            m.accumulate(batch)
    return found
