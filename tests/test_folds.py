"""K-fold runs, ensembles of them, snapshots and SWA, on the bundled Digit Recognizer sample."""

import dataclasses
import json
import shutil

import layouts_data
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import kit
from competitions import invasive, mnist
from kit.cli import main
from kit.data.folds import assign_folds, fold_ids, split
from kit.errors import KitError
from kit.evaluate.blend import (
    choose_blend,
    cross_validated,
    greedy_weights,
    paired_noise,
    tune_threshold,
)
from kit.evaluate.metrics import logloss
from kit.evaluate.predictions import Predictions, table
from kit.recipe import override

FOLDS = dict(folds=2, cycles=3, cycle_mult=1, seed=3, bs=32)  # 2 x 3 epochs: ~25 s a run


@pytest.fixture(scope="module")
def fold_runs(tmp_path_factory):
    """Two different models on the same folds: the house digitnet, and one without augmentation
    at another --seed (the folds belong to the data, not the seed)."""
    out = tmp_path_factory.mktemp("folds")
    a = kit.run("mnist", sample=True, out=out, **FOLDS)
    b = kit.run("mnist", sample=True, out=out, rotate=0, shift=0, zoom=1, tta=False,
                **(FOLDS | {"seed": 8}))  # fmt: skip
    return out, a, b


@pytest.fixture
def out(fold_runs, tmp_path):
    return shutil.copytree(fold_runs[0], tmp_path / "out")


def ids(fold_runs):
    return [f"{r['run_dir'].rsplit('/', 1)[-1]}" for r in fold_runs[1:]]


def test_a_fold_run_predicts_every_training_image_out_of_fold(fold_runs):
    out, a, _ = fold_runs
    run = out / "runs" / "mnist" / ids(fold_runs)[0]
    oof = pd.read_csv(run / "oof.csv")
    folds = pd.read_csv(run / "folds.csv")
    train = pd.read_csv(out / "data" / "mnist-sample" / "train.csv")
    assert len(oof) == len(train) and sorted(oof["item"]) == sorted(folds["item"])
    assert set(folds["fold"]) == {0, 1}
    # stratified: each fold holds about half of every digit
    counts = pd.crosstab(oof["label"], oof["fold"])
    assert (abs(counts[0] - counts[1]) <= 1).all()
    assert (folds.set_index("item").loc[oof["item"], "fold"].values == oof["fold"]).all()
    probs = oof[[f"p_{d}" for d in range(10)]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    accuracy = (probs.argmax(1) == oof["label"]).mean()
    assert accuracy == pytest.approx(a["valid_accuracy"])
    assert len(a["folds_accuracy"]) == 2 and a["folds_accuracy_std"] >= 0
    assert a["valid_accuracy"] > 0.8  # chance is 0.1; 3 epochs per fold on 719 digits
    for k in (0, 1):
        assert (run / f"fold{k}" / "model.pth").exists()
        assert not (run / f"fold{k}" / "checkpoint.pth").exists()  # removed once a fold is done
    test = pd.read_csv(run / "test_preds.csv")
    assert len(test) == 360 and (out / "submissions" / "mnist" / f"{run.name}.csv").exists()


def test_runs_differing_in_seed_share_their_folds(fold_runs):
    out, a, b = fold_runs
    runs = out / "runs" / "mnist"
    seeds = [json.loads((runs / r / "recipe.json").read_text())["seed"] for r in ids(fold_runs)]
    assert seeds == [3, 8]
    first, second = ((runs / r / "folds.csv").read_text() for r in ids(fold_runs))
    assert first == second
    oofs = [pd.read_csv(runs / r / "oof.csv") for r in ids(fold_runs)]
    assert (oofs[0]["fold"] == oofs[1]["fold"]).all()
    assert not np.allclose(oofs[0]["p_0"], oofs[1]["p_0"])  # two models, one set of folds


@pytest.mark.parametrize("method", ["mean", "weighted", "stack"])
def test_each_ensemble_method_blends_the_runs_out_of_fold(fold_runs, out, capsys, method):
    a_id, b_id = ids(fold_runs)
    code = main(["ensemble", "mnist", a_id, b_id, "--method", method, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert a_id in printed and b_id in printed and f"{method} blend" in printed
    blend = next((out / "runs" / "mnist").glob(f"*-ensemble-{method}"))
    metrics = json.loads((blend / "metrics.json").read_text())
    members = [pd.read_csv(out / "runs" / "mnist" / r / "oof.csv") for r in (a_id, b_id)]
    # run a has TTA; its TTA predictions are the member where validation chose them (the
    # choice can go either way between CPUs and thread counts)
    submitted = json.loads((out / "runs" / "mnist" / a_id / "metrics.json").read_text())
    cols = [f"p_{d}" for d in range(10)]
    cols_a = [f"{c}_tta" for c in cols] if submitted["submitted"] == "tta" else cols
    pa, pb = members[0][cols_a].to_numpy(), members[1][cols].to_numpy()
    y = members[0]["label"].to_numpy()
    got = pd.read_csv(blend / "oof.csv")[cols].to_numpy()
    assert np.allclose(got.sum(1), 1, atol=1e-4)
    accuracy = (got.argmax(1) == y).mean()
    assert metrics["valid_accuracy"] == pytest.approx(accuracy)
    tried = ["mean", "best", "weighted", "stack"][: 1 if method == "mean" else None]
    assert metrics["asked"] == method and metrics["method"] in tried[: tried.index(method) + 1]
    if method != "mean":  # what was kept, and why, in a line
        assert metrics["choice"].startswith(f"keeping {metrics['method']}: ")
        assert metrics["choice"] in printed
    assert [m["oof"] for m in metrics["members"]] == pytest.approx(
        [(pa.argmax(1) == y).mean(), (pb.argmax(1) == y).mean()]
    )
    if method == "mean":
        assert np.allclose(got, (pa + pb) / 2, atol=1e-6)
    if method == "weighted":
        w = [m["weight"] for m in metrics["members"]]
        assert min(w) >= 0 and sum(w) == pytest.approx(1)
    submission = out / "submissions" / "mnist" / f"{blend.name}.csv"
    assert pd.read_csv(submission)["Label"].between(0, 9).all()
    doubted = pd.read_csv(blend / "relabel.csv", dtype={"item": str})  # the blend's doubts
    wrong = (got.argmax(1) != y) & (got.max(1) > 0.5)
    assert len(doubted) == min(100, wrong.sum()) > 0
    assert (doubted["predicted"] != doubted["label"]).all() and (doubted["p_predicted"] > 0.5).all()
    # a blend is itself a run with out-of-fold predictions: it can be blended again
    code = main(["ensemble", "mnist", blend.name, a_id, "--out", str(out)])
    assert code == 0


def test_stacking_is_scored_on_folds_its_meta_model_never_saw():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    fold = np.arange(400) % 2
    noise = [rng.dirichlet([1, 1], 400) for _ in range(3)]  # members that know nothing
    cv = cross_validated("stack", noise, y, fold)
    assert abs((cv.argmax(1) == y).mean() - 0.5) < 0.08  # honest: chance, not memorised
    informative = np.stack([1 - y * 0.8 - 0.1, y * 0.8 + 0.1], 1)
    assert ((cross_validated("stack", [informative, *noise], y, fold).argmax(1)) == y).all()


def test_stacking_survives_a_class_one_fold_lacks():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    y[0] = 3  # a class seen once: the meta-model fitted without its fold never met it
    fold = np.arange(300) % 3
    members = [np.eye(4)[y] * 0.6 + 0.1, rng.dirichlet([1, 1, 1, 1], 300)]
    cv = cross_validated("stack", members, y, fold)
    assert cv.shape == (300, 4) and np.allclose(cv.sum(1), 1)
    assert (cv[1:].argmax(1) == y[1:]).mean() > 0.9 and cv[0, 3] == 0


def members_of(y, rng, *strengths):
    """Binary members: P(class 1) drawn around 0.5 + s (the truth) or 0.5 - s (for s < 0:
    members that rank the classes the wrong way round), clipped into (0, 1)."""
    out = []
    for s in strengths:
        p1 = np.clip(0.5 + s * (2 * y - 1) + rng.normal(0, 0.25, len(y)), 0.01, 0.99)
        out.append(np.stack([1 - p1, p1], 1))
    return out


def test_a_stack_that_does_not_beat_the_simpler_blends_by_their_noise_is_not_kept():
    """Two members as good as each other: the stack's out-of-fold AUC is within the noise of the
    mean's, so the mean (or the best member) is kept, and the line says why."""
    rng = np.random.default_rng(0)
    y, fold = rng.integers(0, 2, 300), np.arange(300) % 5
    kept, cv, scores, why = choose_blend("stack", "auc", members_of(y, rng, 0.2, 0.2), y, fold)
    assert list(scores) == ["mean", "best", "weighted", "stack"] and kept != "stack"
    assert "stack did not beat" in why and why.startswith(f"keeping {kept}")
    assert scores[kept] == pytest.approx(roc_auc_score(y, cv[kept][:, 1]))


def test_a_stack_that_beats_every_simpler_blend_beyond_the_noise_is_kept():
    """A member that ranks the classes backwards: the mean and weights (never negative) cannot
    use it, a logistic regression turns it round."""
    rng = np.random.default_rng(1)
    y, fold = rng.integers(0, 2, 300), np.arange(300) % 5
    kept, _, scores, why = choose_blend("stack", "auc", members_of(y, rng, -0.3, 0.05), y, fold)
    assert kept == "stack" and "stack beat" in why
    assert scores["stack"] > max(scores["mean"], scores["best"], scores["weighted"]) + 0.1
    noise = paired_noise("auc", y, *members_of(y, np.random.default_rng(2), 0.2, 0.2))
    assert 0 < noise < 0.1  # 300 rows: AUC differences of a few hundredths are noise


def test_greedy_weights_never_lose_to_the_best_member():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    good = np.eye(3)[y] * 0.6 + 0.4 / 3
    members = [good, rng.dirichlet([1, 1, 1], 300), (good + rng.dirichlet([1, 1, 1], 300)) / 2]
    w = greedy_weights(members, y)
    blend = np.tensordot(w, np.stack(members), axes=1)
    assert logloss(y, blend) <= min(logloss(y, p) for p in members) + 1e-12
    assert w[1] < w[0]


def test_greedy_weights_rank_members_by_kaggles_log_loss():
    """A confident miss (p=1e-10 on the true class) costs log(1e10) on Kaggle, not the log(1e7)
    a 1e-7 clip charges: the member with it must lose to one that Kaggle scores better."""
    y = np.zeros(10, int)
    confident = np.array([[1 - 1e-12, 1e-12]] * 9 + [[1e-10, 1 - 1e-10]])
    hedging = np.array([[np.exp(-2), 1 - np.exp(-2)]] * 10)  # log loss 2 on every item

    def clipped(p):  # the 1e-7 clip the blends once used
        return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1)).mean())

    assert logloss(y, confident) == pytest.approx(np.log(1e10) / 10) and logloss(y, hedging) < 2.01
    assert clipped(confident) < clipped(hedging)  # the clip would rank them the other way round
    assert greedy_weights([confident, hedging], y, steps=1).tolist() == [0, 1]


def test_threshold_tuning_finds_the_best_cut():
    y = np.array([0, 0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.9])  # every 1 scores above every 0, but < 0.5
    t, acc = tune_threshold(y, p1)
    assert acc == 1.0 and 0.3 < t <= 0.35
    assert ((p1 >= 0.5) == y).mean() < acc


def binary_member(runs, run_id, photos, items, fold, y, seed):
    """A finished 5-fold run on the Invasive Species sample that knows nothing: its out-of-fold
    and test probabilities are random, written as `kit run` writes them."""
    rng = np.random.default_rng(seed)
    run, ids = runs / run_id, pd.read_csv(photos / "sample_submission.csv")["name"].tolist()
    run.mkdir(parents=True)
    (run / "recipe.json").write_text(json.dumps(dataclasses.asdict(invasive.RECIPE)))
    metrics = {"submitted": "plain", "classes": [0, 1], "data": str(photos)}
    (run / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame({"item": items, "fold": fold}).to_csv(run / "folds.csv", index=False)
    oof = Predictions(items, rng.dirichlet([1, 1], len(items)))
    table(oof, "item", [0, 1], y, {"fold": fold}).to_csv(run / "oof.csv", index=False)
    table(Predictions(ids, rng.dirichlet([1, 1], len(ids))), "id", [0, 1]).to_csv(
        run / "test_preds.csv", index=False
    )


def test_a_tuned_threshold_is_scored_on_folds_it_was_not_tuned_on(photos, tmp_path, capsys):
    """Random labels, random probabilities: tuned and scored on the same predictions, a
    threshold looks better than chance; each fold cut at the other folds' threshold does not."""
    y, fold = np.random.default_rng(0).integers(0, 2, 200), np.arange(200) % 5
    items = [f"{i}.jpg" for i in range(200)]
    runs = tmp_path / "runs" / "invasive"
    for run_id, seed in (("20240101-000000-a", 1), ("20240101-000001-b", 2)):
        binary_member(runs, run_id, photos, items, fold, y, seed)
    argv = ["ensemble", "invasive", "20240101-000000-a", "20240101-000001-b", "--tune-threshold"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    blend = next(runs.glob("*-ensemble-mean"))
    metrics = json.loads((blend / "metrics.json").read_text())
    p1 = pd.read_csv(blend / "oof.csv")["p_1"].to_numpy()
    right = np.zeros(len(y), bool)
    for k in range(5):  # each fold at the threshold tuned on the other four
        t, _ = tune_threshold(y[fold != k], p1[fold != k])
        right[fold == k] = (p1[fold == k] >= t) == y[fold == k]
    in_sample_threshold, in_sample = tune_threshold(y, p1)
    assert metrics["accuracy_at_threshold"] == pytest.approx(right.mean())
    assert metrics["accuracy_at_threshold"] < in_sample  # the in-sample number overstates it
    assert metrics["threshold"] == in_sample_threshold  # the test set's: tuned on every fold
    assert f"out-of-fold accuracy {right.mean():.4f}" in capsys.readouterr().out


def test_ensemble_refuses_bad_runs_in_one_line(fold_runs, out, tmp_path, capsys):
    a_id, b_id = ids(fold_runs)
    runs = out / "runs" / "mnist"

    def error(*argv):
        code = main(["ensemble", *map(str, argv), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1, err
        return err

    assert "not invasive" in error("invasive", runs / a_id, runs / b_id)
    quick = dict(sample=True, out=out, cycles=1, seed=3, lr=3e-3, tta=False)  # no finder
    three = kit.run("mnist", folds=3, **quick)
    assert "different folds" in error("mnist", a_id, three["run_dir"])
    single = kit.run("mnist", **quick)
    assert "no out-of-fold predictions" in error("mnist", a_id, single["run_dir"])
    shutil.copytree(runs / b_id, runs / ".20990101-000000-digitnet.partial")
    assert "still incomplete" in error("mnist", a_id, "20990101-000000-digitnet")
    assert "no finished run" in error("mnist", a_id, "nope")
    assert "binary task" in error("mnist", a_id, b_id, "--tune-threshold")


def test_snapshots_report_last_snapshot_ensemble_and_swa(tmp_path, capsys):
    result = kit.run("mnist", sample=True, out=tmp_path, cycles=3, cycle_mult=1, snapshots=True)
    printed = capsys.readouterr().out
    run = tmp_path / "runs" / "mnist" / result["run_dir"].rsplit("/", 1)[-1]
    assert sorted(p.name for p in run.glob("snapshot-*.pth")) == [
        "snapshot-0.pth", "snapshot-1.pth", "snapshot-2.pth"
    ]  # fmt: skip
    averaging = result["averaging"][0]
    assert set(averaging) == {"last", "snapshots", "swa", "chosen"}
    best = max(averaging[k] for k in ("last", "snapshots", "swa"))
    assert averaging[averaging["chosen"]] == best
    assert max(result["valid_accuracy"], result["valid_tta_accuracy"]) == pytest.approx(best)
    assert f"keeping {averaging['chosen']}" in printed


def test_kit_runs_compares_runs_side_by_side(fold_runs, capsys):
    out, a, b = fold_runs
    a_id, b_id = ids(fold_runs)
    assert main(["runs", "mnist", a_id, b_id, "--out", str(out)]) == 0
    lines = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    assert lines[a_id] == [b_id]  # the header: one column per run
    assert lines["seed"] == ["3", "8"] and lines["tta"] == ["True", "False"]
    assert "arch" not in lines and "folds" not in lines  # only what differs
    assert lines["valid"] == [f"{a['valid_accuracy']:.4f}", f"{b['valid_accuracy']:.4f}"]
    assert main(["runs", "mnist", a_id, "nope", "--out", str(out)]) == 1
    assert "no finished run 'nope'" in capsys.readouterr().err


def test_a_fold_run_report_shows_every_fold(fold_runs):
    out, _, _ = fold_runs
    run = out / "runs" / "mnist" / ids(fold_runs)[0]
    page = (run / "report.html").read_text()
    for k in (0, 1):
        assert (run / f"fold{k}" / "training_curves.png").is_file()
        assert f'src="fold{k}/training_curves.png"' in page
        assert f'src="fold{k}/lr_find.png"' in page
    assert "out-of-fold accuracy" in page
    assert 'src="grad_cam.png"' in page  # each image mapped by its fold's model
    assert "whose out-of-fold prediction gives another label" in page
    oof = pd.read_csv(run / "oof.csv")  # relabel.csv: from the whole run's out-of-fold predictions
    tta = "_tta" if json.loads((run / "metrics.json").read_text())["submitted"] == "tta" else ""
    probs = oof[[f"p_{d}{tta}" for d in range(10)]].to_numpy()
    doubted = oof["item"][(probs.argmax(1) != oof["label"]) & (probs.max(1) > 0.5)]
    assert set(pd.read_csv(run / "relabel.csv")["item"]) == set(doubted)


def digits(mnist_sample, **changes):
    r = override(mnist.RECIPE, **changes)
    return mnist.load(mnist_sample, r), r


def test_folds_depend_on_fold_seed_only(mnist_sample, tmp_path):
    data, r = digits(mnist_sample, folds=5)
    folds = assign_folds(data, r, tmp_path)
    assert (folds == assign_folds(data, override(r, seed=1, arch="resnet18"), tmp_path)).all()
    assert not (folds == assign_folds(data, override(r, fold_seed=1), tmp_path)).all()
    assert sorted(np.bincount(folds)) == [287, 287, 287, 288, 288]
    single = assign_folds(data, override(r, folds=0), tmp_path)  # one split: fold 0 validates
    assert (single == 0).sum() == round(0.1 * len(data.y))


def test_a_folds_csv_in_the_data_wins(mnist_sample, tmp_path):
    data, r = digits(mnist_sample, folds=3)
    given = np.arange(len(data.y)) % 3
    pd.DataFrame({"item": data.names[::-1], "fold": given[::-1]}).to_csv(
        tmp_path / "folds.csv", index=False
    )
    assert (assign_folds(data, r, tmp_path) == given).all()
    assert (assign_folds(data, override(r, fold_seed=9), tmp_path) == given).all()
    single = assign_folds(data, override(r, folds=0), tmp_path)
    assert (single == given).all()  # and a single split validates on its fold 0
    with pytest.raises(KitError, match="holds 3 folds; run with --folds 3"):
        assign_folds(data, override(r, folds=5), tmp_path)


def test_grouped_folds_keep_each_group_in_one_fold(mnist_sample):
    data, _ = digits(mnist_sample)
    groups = np.arange(len(data.y)) // 7  # e.g. seven photos of one patient
    folds = fold_ids(data.y, 4, 0, groups)
    assert pd.Series(folds).groupby(groups).nunique().max() == 1
    assert set(folds) == {0, 1, 2, 3}
    counts = pd.crosstab(data.y.numpy(), folds)  # still stratified, as far as groups allow
    assert (counts.min(axis=1) >= 0.15 * counts.sum(axis=1)).all()
    assert not (fold_ids(data.y, 4, 0) == folds).all()
    with pytest.raises(KitError, match="at least 4 groups"):
        fold_ids(data.y, 4, 0, np.arange(len(data.y)) % 3)


def test_group_col_without_groups_from_the_reader_is_an_error(mnist_sample, tmp_path):
    with pytest.raises(KitError, match="train.csv has no 'patient' column"):
        digits(mnist_sample, group_col="patient")  # the layout reader looks for the column
    data, r = digits(mnist_sample)
    with pytest.raises(KitError, match="gives no groups"):  # a reader that ignores it
        assign_folds(data, override(r, group_col="patient"), tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda df: df.iloc[1:], "has no fold for 1 training images, e.g. 'train row 1'"),
        (lambda df: pd.concat([df, df.iloc[:1].assign(item="train row 9999")]), "not training"),
        (
            lambda df: df.assign(fold=df["fold"].astype(object).where(df.index != 3, "x")),
            "fold 'x'; folds are whole numbers",
        ),  # fmt: skip
        (lambda df: df.assign(fold=df["fold"] + 0.5), "folds are whole numbers"),
        (lambda df: pd.concat([df, df.iloc[:1]]), "more than once"),
        (lambda df: df.assign(fold=df["fold"] + 1), "0..K-1"),
        (lambda df: df.rename(columns={"fold": "kfold"}), "needs the columns item,fold"),
    ],
    ids=["missing", "unknown", "text", "fraction", "twice", "from-1", "columns"],
)
def test_a_bad_folds_csv_is_one_line_before_anything_is_written(
    mnist_copy, tmp_path, capsys, change, message
):
    names = [f"train row {i + 1}" for i in range(1437)]
    df = pd.DataFrame({"item": names, "fold": np.arange(1437) % 2})
    change(df).to_csv(mnist_copy / "folds.csv", index=False)
    out = tmp_path / "out"
    code = main(["run", "mnist", "--data", str(mnist_copy), "--folds", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


# Many classes of a handful of images each (Humpback Whale): 5 whales seen once, others 2-6
# times, and one large class.
WHALES = torch.tensor([0] * 40 + [1, 2, 3, 4, 5] + [6] * 2 + [7] * 3 + [8] * 4 + [9] * 6)


def test_a_class_of_one_image_always_trains_in_a_single_split():
    train, valid = split(WHALES, 0.2, seed=0)
    once = np.flatnonzero(np.isin(WHALES.numpy(), [1, 2, 3, 4, 5]))
    assert set(once) <= set(train) and not set(once) & set(valid)
    assert sorted([*train, *valid]) == list(range(len(WHALES)))
    assert 0.15 < len(valid) / len(WHALES) < 0.25
    assert set(WHALES.numpy()[valid]) <= set(WHALES.numpy()[train])  # nothing validated unseen


def test_folds_pool_the_classes_too_small_to_stratify():
    """--folds 3 where the rarest classes have 1-2 images: no error; every image in one fold,
    the large class spread evenly."""
    folds = fold_ids(WHALES, 3, seed=0)
    assert sorted(set(folds.tolist())) == [0, 1, 2]
    assert sorted(np.bincount(folds[:40]).tolist()) == [13, 13, 14]


def test_multi_label_splits_stratify_by_each_images_rarest_tag():
    y = torch.zeros(90, 3)
    y[:, 0] = 1  # every image has tag 0
    y[:30, 1] = 1
    y[30:36, 2] = 1  # the rare tag
    train, valid = split(y, 0.2, seed=0)
    assert 1 <= int(y[valid, 2].sum()) <= 2 and int(y[train, 2].sum()) >= 4


def test_kit_predict_of_an_ensemble_at_a_tuned_threshold_writes_its_labels(tmp_path):
    """A binary task scored on labels (the Histopathologic layout, --metric accuracy): two 2-fold
    runs blended with --tune-threshold label the test set at the tuned threshold, and `kit
    predict` of the blend, from the saved models, writes those same labels."""
    folder = layouts_data.write("histopathologic", tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    quick = ["--lr", "1e-3", "--cycles", "1", "--no-tta", "--bs", "32", "--folds", "2"]
    with layouts_data.working_in(work):
        assert main(["new", "h", "--data", str(folder), "--metric", "accuracy"]) == 0
        for seed in ("1", "2"):
            assert main(["run", "h", *quick, "--seed", seed]) == 0
        runs = sorted(p.name for p in (work / "runs" / "h").iterdir())
        assert main(["ensemble", "h", *runs, "--tune-threshold"]) == 0
        (blend,) = (work / "runs" / "h").glob("*-ensemble-mean")
        result = kit.predict("h", blend.name, out=work)
    threshold = json.loads((blend / "metrics.json").read_text())["threshold"]
    test = pd.read_csv(blend / "test_preds.csv")
    written = pd.read_csv(blend / "submission.csv")
    assert written["label"].tolist() == (test["p_1"] >= threshold).astype(int).tolist()
    predicted = pd.read_csv(result["submission"])
    assert predicted["id"].tolist() == written["id"].tolist()
    assert predicted["label"].tolist() == written["label"].tolist()
