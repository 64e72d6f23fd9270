"""`kit download`, `submit`, `submissions`, `runs` and `kernel` through the real `kaggle` client,
against the fake Kaggle server in fake_kaggle.py on 127.0.0.1."""

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from fake_kaggle import KEY, TOKEN, USER, FakeKaggle
from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint

import kit
from competitions import mnist
from kit.cli import main
from kit.errors import KitError
from kit.kaggle.kernel import kernel
from kit.paths import data_dir
from kit.recipe import override
from kit.runs.records import predicted_stem, run_id, runs_table

SLUG = mnist.RECIPE.slug
CREDENTIAL_VARS = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR",
                   "KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_API_V1_TOKEN", "KIT_DATA")  # fmt: skip


@pytest.fixture
def server(monkeypatch, tmp_path):
    """The fake Kaggle, serving the Digit Recognizer sample; no credentials anywhere yet."""
    fake = FakeKaggle()
    monkeypatch.setitem(_env_to_endpoint, KaggleEnv.PROD, fake.url)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("kit.kaggle.competition.POLL_SECONDS", 0.01)
    monkeypatch.setattr("kit.kaggle.datasets.POLL_SECONDS", 0.01)
    monkeypatch.chdir(tmp_path)
    yield fake
    fake.close()


@pytest.fixture
def signed_in(server, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    return server


def zipped(folder: Path) -> bytes:
    """The sample as Kaggle ships a competition: a zip, here with a zip nested inside."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.write(folder / "train.csv", "train.csv")
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as z:
        z.writestr("train.csv.zip", inner.getvalue())
        for name in ("test.csv", "sample_submission.csv"):
            z.write(folder / name, name)
    return outer.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real one-epoch Digit Recognizer run on the sample: a run folder and its submission."""
    out = tmp_path_factory.mktemp("trained")
    data = kit.write_sample("mnist", out / "digit-recognizer")
    result = kit.run("mnist", data=data, out=out, cycles=1, tta=False)
    return out, result


@pytest.fixture
def out(trained, tmp_path):
    """A private copy of the trained run's output folder."""
    return shutil.copytree(trained[0], tmp_path / "out")


def kit_main(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(map(str, argv)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- download -------------------------------------------------------------------------------


def test_download_unpacks_nested_zips_where_run_looks_and_only_once(
    signed_in, mnist_sample, capsys
):
    signed_in.zips[SLUG] = zipped(mnist_sample)
    code, out, _ = kit_main(capsys, "download", "mnist")
    assert code == 0, out
    dest = Path("data") / SLUG
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        assert (dest / name).read_bytes() == (mnist_sample / name).read_bytes()
    assert not (dest / f"{SLUG}.zip").exists()  # the download itself is not kept
    data = mnist.load(data_dir("mnist", SLUG), override(mnist.RECIPE))
    assert len(data.x) == len(pd.read_csv(mnist_sample / "train.csv"))

    code, out, _ = kit_main(capsys, "download", "mnist")
    assert code == 0 and "already" in out
    assert len(signed_in.calls("DownloadDataFiles")) == 1


def test_download_by_slug_then_kit_new_writes_its_recipe(signed_in, tmp_path, capsys):
    import layouts_data

    source = layouts_data.write("cactus", tmp_path / "kaggle")
    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w") as z:
        for f in sorted(source.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(source).as_posix())
    signed_in.zips[source.name] = whole.getvalue()
    code, out, _ = kit_main(capsys, "download", source.name)
    assert code == 0 and f"kit new NAME --data data/{source.name}" in out
    code, out, _ = kit_main(capsys, "new", "cactus", "--data", f"data/{source.name}")
    assert code == 0 and Path("competitions/cactus.py").is_file()
    code, out, _ = kit_main(capsys, "list")
    assert "aerial-cactus-identification" in out and "competitions/cactus.py" in out


def test_download_without_accepted_rules_says_where_to_accept(signed_in, mnist_sample, capsys):
    signed_in.zips[SLUG] = zipped(mnist_sample)
    signed_in.rules_accepted = False
    code, _, err = kit_main(capsys, "download", "mnist", "--data", "here")
    assert code == 1 and err.count("\n") == 1
    assert f"https://www.kaggle.com/competitions/{SLUG}/rules" in err
    assert not Path("here").exists() and not Path(".here.partial").exists()


def test_download_of_an_unknown_competition_is_one_line(signed_in, capsys):
    code, _, err = kit_main(capsys, "download", "mnist")
    assert code == 1 and err.count("\n") == 1
    assert "404" in err and SLUG in err
    assert not (Path("data") / SLUG).exists()


def test_missing_credentials_say_where_they_go_and_nothing_is_sent(server, capsys):
    code, out, err = kit_main(capsys, "submissions", "mnist")
    assert code == 1 and err.count("\n") == 1 and out == ""
    assert "~/.kaggle/access_token" in err and "KAGGLE_API_TOKEN" in err
    assert server.received == []


def test_a_rejected_token_is_one_line(server, monkeypatch, capsys):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "an-expired-token")
    code, _, err = kit_main(capsys, "submissions", "mnist")
    assert code == 1 and err.count("\n") == 1
    assert "did not accept the credentials in $KAGGLE_API_TOKEN" in err
    assert "an-expired-token" not in err


@pytest.mark.parametrize("where", ["env token", "token file", "kaggle.json", "env key"])
def test_every_credential_source_works_and_no_secret_is_printed(
    server, mnist_sample, monkeypatch, tmp_path, capsys, where
):
    server.zips[SLUG] = zipped(mnist_sample)
    kaggle_dir = Path.home() / ".kaggle"
    kaggle_dir.mkdir()
    if where == "env token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    elif where == "token file":
        (kaggle_dir / "access_token").write_text(TOKEN + "\n")
    elif where == "kaggle.json":
        config = tmp_path / "config"
        config.mkdir()
        (config / "kaggle.json").write_text(json.dumps({"username": USER, "key": KEY}))
        (config / "kaggle.json").chmod(0o600)
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    else:
        monkeypatch.setenv("KAGGLE_USERNAME", USER)
        monkeypatch.setenv("KAGGLE_KEY", KEY)
    code, out, err = kit_main(capsys, "submissions", "mnist")
    assert code == 0, err
    assert "no submissions" in out
    listed = [r for r in server.received if r["call"] == "ListSubmissions"]
    token = where in ("env token", "token file")
    basic = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    assert listed[0]["auth"] == (f"Bearer {TOKEN}" if token else basic)
    assert TOKEN not in out + err and KEY not in out + err


# --- submit ---------------------------------------------------------------------------------


def test_submit_uploads_the_newest_file_waits_and_records_the_score(signed_in, out, capsys):
    signed_in.zips[SLUG] = b"-"
    sub = next((out / "submissions" / "mnist").glob("*.csv"))
    code, printed, err = kit_main(capsys, "submit", "mnist", "--out", out, "-m", "first try")
    assert code == 0, err
    assert "public score 0.98765" in printed
    assert "waiting for Kaggle to score" in printed  # a log gets progress lines

    assert signed_in.calls("StartSubmissionUpload")[0]["fileName"] == sub.name
    assert [b for b in signed_in.calls("PUT")] == [sub.read_bytes()]
    created = signed_in.calls("CreateSubmission")
    assert len(created) == 1 and created[0]["submissionDescription"] == "first try"

    record = json.loads((out / "runs" / "mnist" / sub.stem / "submissions.json").read_text())
    assert record[0]["public_score"] == "0.98765" and record[0]["status"] == "COMPLETE"
    assert TOKEN not in (out / "runs" / "mnist" / sub.stem / "submissions.json").read_text()

    code, table, _ = kit_main(capsys, "runs", "mnist", "--out", out)
    metrics = json.loads((out / "runs" / "mnist" / sub.stem / "metrics.json").read_text())
    row = table.splitlines()[1]
    assert "digitnet" in row and "0.98765" in row and str(sub) in row
    assert f"{metrics['valid_accuracy']:.4f}" in row


def test_submit_no_wait_then_submissions_fills_in_the_score(signed_in, out, capsys):
    signed_in.zips[SLUG] = b"-"
    sub = next((out / "submissions" / "mnist").glob("*.csv"))
    code, printed, err = kit_main(capsys, "submit", "mnist", sub, "--out", out, "--no-wait")
    assert code == 0, err
    assert "submitted (ref 1000)" in printed and not signed_in.calls("ListSubmissions")
    record_path = out / "runs" / "mnist" / sub.stem / "submissions.json"
    assert json.loads(record_path.read_text())[0]["status"] == "PENDING"
    # the default message names the run and its validation score
    assert signed_in.calls("CreateSubmission")[0]["submissionDescription"].startswith(
        f"kit {sub.stem}: valid accuracy "
    )

    signed_in.polls_to_score = 0
    code, table, _ = kit_main(capsys, "submissions", "mnist", "--out", out)
    assert code == 0 and "COMPLETE" in table and "0.98765" in table and sub.name in table
    assert json.loads(record_path.read_text())[0]["public_score"] == "0.98765"


def test_kit_runs_plots_cv_against_the_public_score_of_the_scored_runs(signed_in, out, capsys):
    """Two runs scored by the fake Kaggle: `kit runs` draws their CV against their public score,
    and again only when a record changes; one scored run draws nothing."""
    signed_in.zips[SLUG] = b"-"
    runs, subs = out / "runs" / "mnist", out / "submissions" / "mnist"
    (first,) = runs.iterdir()
    second = runs / "20990101-000000-digitnet"  # the same run again, scoring 0.01 better
    shutil.copytree(first, second)
    shutil.copy(subs / f"{first.name}.csv", subs / f"{second.name}.csv")
    metrics = json.loads((second / "metrics.json").read_text())
    cv = metrics["valid_accuracy"]
    (second / "metrics.json").write_text(json.dumps(metrics | {"valid_accuracy": cv + 0.01}))
    plot = runs / "cv_vs_lb.png"
    assert kit_main(capsys, "submit", "mnist", subs / f"{first.name}.csv", "--out", out)[0] == 0
    code, printed, _ = kit_main(capsys, "runs", "mnist", "--out", out)
    assert code == 0 and "CV against" not in printed and not plot.exists()  # one point
    signed_in.public_score = "0.99"
    assert kit_main(capsys, "submit", "mnist", subs / f"{second.name}.csv", "--out", out)[0] == 0
    code, printed, _ = kit_main(capsys, "runs", "mnist", "--out", out)
    assert code == 0 and f"CV against the public score: {plot}" in printed
    assert plot.stat().st_size > 10_000
    rows = {r["run"]: (r["cv"], r["public"]) for r in runs_table(out, "mnist")}
    assert rows == {first.name: (cv, "0.98765"), second.name: (cv + 0.01, "0.99")}
    drawn = plot.stat().st_mtime_ns
    assert kit_main(capsys, "runs", "mnist", "--out", out)[0] == 0
    assert plot.stat().st_mtime_ns == drawn  # nothing new: not drawn again


def test_a_failed_upload_is_caught_though_the_client_raises_nothing(signed_in, out, capsys):
    signed_in.zips[SLUG] = b"-"
    signed_in.fail_upload = True
    code, _, err = kit_main(capsys, "submit", "mnist", "--out", out)
    assert code == 1 and err.count("\n") == 1
    assert "did not accept the upload" in err
    assert signed_in.calls("CreateSubmission") == []


def test_a_submission_kaggle_cannot_score_is_an_error_with_its_reason(signed_in, out, capsys):
    signed_in.zips[SLUG] = b"-"
    signed_in.score_error = "Submission must have 360 rows"
    code, _, err = kit_main(capsys, "submit", "mnist", "--out", out)
    assert code == 1 and "Submission must have 360 rows" in err
    record = next((out / "runs" / "mnist").glob("*/submissions.json"))
    assert json.loads(record.read_text())[0]["status"] == "ERROR"


@pytest.mark.parametrize("spoil", ["drop a row", "bad label", "rename column"])
def test_a_file_that_does_not_match_the_sample_is_refused_before_upload(
    signed_in, out, capsys, spoil
):
    signed_in.zips[SLUG] = b"-"
    sub = next((out / "submissions" / "mnist").glob("*.csv"))
    df = pd.read_csv(sub)
    if spoil == "drop a row":
        df = df.iloc[:-1]
    elif spoil == "bad label":
        df.loc[3, "Label"] = 12
    else:
        df = df.rename(columns={"Label": "label"})
    df.to_csv(sub, index=False)  # edited by hand after the run wrote it
    code, _, err = kit_main(capsys, "submit", "mnist", "--out", out)
    assert code == 1 and err.count("\n") == 1
    assert "does not match" in err and "nothing was uploaded" in err
    assert not signed_in.calls("StartSubmissionUpload") and not signed_in.calls("PUT")


def test_submit_without_any_submission_says_how_to_make_one(signed_in, tmp_path, capsys):
    code, _, err = kit_main(capsys, "submit", "mnist", "--out", tmp_path / "empty")
    assert code == 1 and "kit run mnist" in err
    assert signed_in.received == []


# --- kernels --------------------------------------------------------------------------------


def test_kernel_folder_is_a_notebook_that_runs_offline_on_two_gpus(server, capsys):
    code, _, err = kit_main(capsys, "kernel", "mnist", "k", "--user", "someone")
    assert code == 0, err
    meta = json.loads(Path("k/kernel-metadata.json").read_text())
    assert (
        meta["enable_internet"] is False
        and '"enable_internet": false' in Path("k/kernel-metadata.json").read_text()
    )
    assert meta["enable_gpu"] is True and meta["machine_shape"] == "NvidiaTeslaT4"
    assert meta["competition_sources"] == [SLUG]
    assert meta["dataset_sources"] == ["someone/kit-wheels"]
    assert meta["id"] == "someone/kit-mnist"
    assert meta["kernel_type"] == "notebook" and meta["code_file"] == "kit-mnist.ipynb"
    assert sorted(p.name for p in Path("k").iterdir()) == [
        "kernel-metadata.json",
        "kit-mnist.ipynb",
    ]
    nb = nbformat.read(Path("k", meta["code_file"]), as_version=4)
    nbformat.validate(nb)
    sources = {c.id: c.source for c in nb.cells}
    for source in (sources["options"], sources["install"], sources["run"]):
        compile(source, meta["code_file"], "exec")
    assert '"--no-index", "--no-deps"' in sources["install"]
    assert 'kit.run("mnist", **OPTIONS)' in sources["run"]
    assert server.received == []  # writing a kernel does not talk to Kaggle

    code, _, err = kit_main(capsys, "kernel", "mnist", "k", "--user", "someone")
    assert code == 1 and "not empty" in err


def test_a_kernel_of_a_local_recipe_carries_the_recipe(server, tmp_path, capsys, monkeypatch):
    import layouts_data

    source = layouts_data.write("cactus", tmp_path / "kaggle-data")
    assert kit_main(capsys, "new", "cactus", "--data", source)[0] == 0
    code, _, err = kit_main(capsys, "kernel", "cactus", "k", "--user", "someone")
    assert code == 0, err
    meta = json.loads(Path("k/kernel-metadata.json").read_text())
    assert meta["competition_sources"] == ["aerial-cactus-identification"]
    nb = nbformat.read(Path("k", meta["code_file"]), as_version=4)
    cells = {c.id: c.source for c in nb.cells}
    assert list(cells)[-2:] == ["recipe", "run"]  # written before kit.run looks for it
    monkeypatch.setenv("KIT_KAGGLE_ROOT", str(tmp_path / "notebook"))
    exec(cells["recipe"], {})
    written = tmp_path / "notebook" / "working" / "competitions" / "cactus.py"
    assert written.read_text() == Path("competitions/cactus.py").read_text()


def test_kernel_push_uploads_the_wheels_dataset_then_versions_it(signed_in, tmp_path, capsys):
    folder = kernel("mnist", tmp_path / "k1", push=True, extra=())
    wheels = list((folder / "wheels").glob("kit-*.whl"))
    assert len(wheels) == 1
    assert list(signed_in.blobs.values()) == [wheels[0].read_bytes()]
    created = signed_in.calls("CreateDataset")
    assert created[0]["ownerSlug"] == USER and created[0]["slug"] == "kit-wheels"
    assert created[0]["isPrivate"] is True and len(created[0]["files"]) == 1
    pushed = signed_in.calls("SaveKernel")[0]
    assert pushed["slug"] == f"{USER}/kit-mnist"
    assert pushed["enableInternet"] is False and pushed["enableGpu"] is True
    assert pushed["competitionDataSources"] == [SLUG]
    assert pushed["datasetDataSources"] == [f"{USER}/kit-wheels"]
    assert pushed["kernelType"] == "notebook" and pushed["machineShape"] == "NvidiaTeslaT4"
    sent, written = json.loads(pushed["text"]), json.loads((folder / "kit-mnist.ipynb").read_text())
    assert [c["source"] for c in sent["cells"]] == [c["source"] for c in written["cells"]]
    assert "pushed the kernel" in capsys.readouterr().out

    kernel("mnist", tmp_path / "k2", push=True, extra=())
    assert len(signed_in.calls("CreateDataset")) == 1
    assert signed_in.calls("CreateDatasetVersion")[0]["datasetSlug"] == "kit-wheels"


def test_kernel_predict_pushes_the_model_dataset_and_the_inference_notebook(
    signed_in, trained, tmp_path, capsys
):
    """The run's files go up as folders zipped by the client (Kaggle unpacks them), beside the
    wheels; the kernel reads both datasets and the competition, with the internet off."""
    out, result = trained
    run = Path(result["run_dir"])
    folder = kernel("mnist", tmp_path / "k", push=True, extra=(), predict=run.name, out=out)
    created = signed_in.calls("CreateDataset")
    assert [c["slug"] for c in created] == ["kit-wheels", "kit-mnist-model"]
    names = dict(signed_in.pending_uploads)
    model_zip = next(t for t, n in names.items() if n == f"{run.name}.zip")
    with zipfile.ZipFile(io.BytesIO(signed_in.blobs[model_zip])) as z:
        shipped = sorted(z.namelist())
    assert shipped == ["metrics.json", "model.pth", "recipe.json", "unit.json"]
    model = (folder / "model" / run.name / "model.pth").read_bytes()
    assert model == (run / "model.pth").read_bytes()
    pushed = signed_in.calls("SaveKernel")[0]
    assert pushed["slug"] == f"{USER}/kit-mnist-predict" and pushed["enableInternet"] is False
    assert pushed["datasetDataSources"] == [f"{USER}/kit-wheels", f"{USER}/kit-mnist-model"]
    assert signed_in.attached[pushed["slug"]] == pushed["datasetDataSources"]  # both processed
    assert pushed["competitionDataSources"] == [SLUG]
    assert 'kit.predict("mnist"' in json.loads(pushed["text"])["cells"][-1]["source"]
    code, _, err = kit_main(capsys, "kernel", "mnist", tmp_path / "k2", "--predict", "nope",
                            "--out", out, "--user", "someone")  # fmt: skip
    assert code == 1 and "no finished run 'nope'" in err and not (tmp_path / "k2").exists()


def test_kernel_push_waits_until_kaggle_has_processed_the_datasets(signed_in, tmp_path, capsys):
    """Kaggle processes a new dataset (and a new version) for a while; a kernel pushed before
    then is saved without it. The kit pushes the kernel once the status says READY."""
    signed_in.processing_polls = 4
    kernel("mnist", tmp_path / "k1", push=True, extra=())
    wheels, slug = f"{USER}/kit-wheels", f"{USER}/kit-mnist"
    assert signed_in.attached[slug] == [wheels]
    printed = capsys.readouterr().out
    assert f"waiting for Kaggle to process {wheels}" in printed and "pushed the kernel" in printed
    calls = [r["call"] for r in signed_in.received]
    assert calls.count("GetDatasetStatus") >= 1 + 4  # does it exist, then until it is READY

    signed_in.attached.clear()
    kernel("mnist", tmp_path / "k2", push=True, extra=())  # a new version: processed again
    assert signed_in.calls("CreateDatasetVersion") and signed_in.attached[slug] == [wheels]


def test_kernel_push_gives_up_on_a_dataset_kaggle_is_slow_to_process(
    signed_in, tmp_path, monkeypatch
):
    signed_in.processing_polls = 10**6
    monkeypatch.setattr("kit.kaggle.datasets.READY_TIMEOUT", 0.2)
    with pytest.raises(KitError) as e:
        kernel("mnist", tmp_path / "k", push=True, extra=())
    message = str(e.value)
    assert "\n" not in message
    assert f"still processing the dataset {USER}/kit-wheels (blobs_received)" in message
    assert f"kaggle kernels push -p {tmp_path / 'k'}" in message
    assert not signed_in.calls("SaveKernel")
    assert (tmp_path / "k" / "kernel-metadata.json").is_file()  # ready to push by hand


def test_kernel_push_stops_at_a_dataset_kaggle_could_not_process(signed_in, tmp_path):
    signed_in.fails = {f"{USER}/kit-wheels"}
    with pytest.raises(KitError, match=f"could not process the dataset {USER}/kit-wheels"):
        kernel("mnist", tmp_path / "k", push=True, extra=())
    assert not signed_in.calls("SaveKernel")


def test_a_kernel_saved_without_a_source_is_an_error(signed_in, tmp_path):
    """Kaggle saves a kernel whose competition it cannot attach (rules not accepted), and says
    so only in the reply: the kit says so too, rather than 'pushed'."""
    signed_in.rules_accepted = False
    with pytest.raises(KitError, match=f"without {SLUG}, which it could not attach"):
        kernel("mnist", tmp_path / "k", push=True, extra=())


# --- processes ------------------------------------------------------------------------------


def test_the_kit_command_talks_to_kaggle_and_other_commands_never_import_it(
    server, tmp_path, mnist_sample
):
    """A real `kit` process, pointed at the fake server by a sitecustomize.py."""
    server.zips[SLUG] = zipped(mnist_sample)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint\n"
        f"_env_to_endpoint[KaggleEnv.PROD] = {server.url!r}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "KAGGLE_API_TOKEN": TOKEN}
    kit_bin = Path(sys.executable).with_name("kit")
    done = subprocess.run([kit_bin, "download", "mnist"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / SLUG / "train.csv").exists()

    probe = (
        "import sys\nfrom kit.cli import main\n"
        "for argv in (['list'], ['runs', 'mnist'], ['--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('kaggle', 'kagglesdk')]\n"
        "print('clean')\n"
    )
    env.pop("PYTHONPATH")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "download" in done.stdout and "kernel" in done.stdout  # `kit --help` lists them
    assert done.stdout.rstrip().endswith("clean")


def test_a_file_of_no_run_without_its_sample_says_to_give_the_folder(signed_in, out, capsys):
    """A CSV no run wrote is checked against the competition's sample: with none to be found,
    one line that says to give it with --data; given, the file goes up."""
    signed_in.zips[SLUG] = b"-"
    mine = out / "mine.csv"
    shutil.copy(next((out / "submissions" / "mnist").glob("*.csv")), mine)
    code, _, err = kit_main(capsys, "submit", "mnist", mine)
    assert code == 1 and err.count("\n") == 1
    assert "no data for mnist" in err and "sample_submission.csv with --data" in err
    assert signed_in.received == []
    data = next(out.rglob("sample_submission.csv")).parent
    code, _, err = kit_main(capsys, "submit", "mnist", mine, "--data", data)
    assert code == 0, err
    assert signed_in.calls("PUT") == [mine.read_bytes()]


def test_a_predicted_submission_is_named_after_its_run_and_never_over_a_file(tmp_path):
    """`kit predict`'s file names, read back to the run whose models made them."""
    run = "20261201-203703-digitnet"
    folder = tmp_path / "submissions" / "mnist"
    folder.mkdir(parents=True)
    names = []
    for _ in range(3):  # within one second: numbered
        names.append(predicted_stem(tmp_path, "mnist", run))
        (folder / f"{names[-1]}.csv").touch()
    assert len(set(names)) == 3 and all(n.startswith(f"{run}-predict-") for n in names)
    assert [run_id(n) for n in names] == [run] * 3
    assert run_id(run) == run and run_id(f"{run}-ensemble-mean") == f"{run}-ensemble-mean"
