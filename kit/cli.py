"""`kit`: parses the command line and calls kit's functions; no logic lives here."""

import argparse
import sys

from kit.errors import KitError
from kit.recipe import field_help, recipe_fields


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, with a pointer to --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def command(sub, name: str, help: str, out: str | None = None) -> argparse.ArgumentParser:
    """A subcommand taking a recipe name, and `--out` (helped by `out`) if given."""
    p = sub.add_parser(name, help=help)
    p.add_argument("name", help="recipe name (see `kit list`)")
    if out:
        p.add_argument("--out", metavar="DIR", help=out)
    return p


def add_recipe_flags(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--data", metavar="PATH", help="the competition folder (default: searched)")
    where.add_argument("--sample", action="store_true", help="use the bundled sample data")
    p.add_argument("--out", metavar="DIR", help="where runs/ and submissions/ go (default: here)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps")
    p.add_argument("--weights", metavar="FILE", help="pretrained checkpoint (default: searched)")
    group = p.add_argument_group("recipe fields (each overrides the recipe's value)")
    docs = field_help()
    for f in recipe_fields():
        flag, text = "--" + f.name.replace("_", "-"), docs.get(f.name, "").replace("%", "%%")
        if f.type is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=text)
        else:
            metavar = f.type.__name__.upper()
            group.add_argument(flag, dest=f.name, type=f.type, metavar=metavar, help=text)


def add_process_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", metavar="N", help="train in N processes started by torchrun: "
                   "DDP, or with --folds one fold per device; auto: one per GPU (on a CPU "
                   "one process is faster)")  # fmt: skip
    p.add_argument("--torchrun", metavar="OPTS", default="", help="torchrun's own options for "
                   "--nproc, e.g. \"--nnodes 2 --rdzv-endpoint HOST:PORT\"")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="kit", description="Kaggle image-classification recipes on fastai.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("list", help="the recipes, one line each")
    run = command(sub, "run", "train a recipe and write a checked submission")
    add_recipe_flags(run)
    run.add_argument("--resume", metavar="RUN", help="continue the interrupted run RUN (its id)")
    add_process_flags(run)
    add_recipe_flags(command(sub, "lr-find", "run only the learning-rate finder"))
    distill = command(sub, "distill", "train one student on a k-fold run's or ensemble's "
                      "out-of-fold probabilities: `kit run NAME --distill RUN`")  # fmt: skip
    distill.add_argument("teacher", metavar="RUN", help="the finished k-fold run or ensemble "
                         "(its id or folder) whose probabilities the student learns")  # fmt: skip
    add_recipe_flags(distill)
    add_process_flags(distill)
    new = sub.add_parser("new", help="inspect a competition folder and write a recipe for it")
    new.add_argument("name", help="the new recipe's name (competitions/NAME.py, written here)")
    new.add_argument("--data", metavar="DIR", required=True, help="the downloaded competition")
    new.add_argument("--metric", help="how the competition is scored (default: guessed, else "
                     "asked): accuracy, auc, logloss, f1_macro, f1_micro, qwk, mauc, f2, "
                     "f1_samples, map5 or map3")  # fmt: skip
    new.add_argument("--slug", help="the Kaggle competition slug (default: the folder's name)")
    sample = command(sub, "sample", "write a recipe's bundled sample data into a folder")
    sample.add_argument("dir", help="a new or empty folder")
    here = "where runs/ and submissions/ are (default: here)"

    ens = command(sub, "ensemble", "blend k-fold runs: mean, weighted or stacked", here)
    ens.add_argument("runs", nargs="+", metavar="RUN", help="run ids (or folders) trained with "
                     "the same --folds and --fold-seed (or folds.csv)")  # fmt: skip
    ens.add_argument("--method", default="mean", choices=["mean", "weighted", "stack"],
                     help="plain average, weights fitted on the out-of-fold predictions, or a "
                     "logistic regression on them; a fitted blend is kept only where it beats "
                     "the mean and the best member by more than the score's noise (default: "
                     "mean)")  # fmt: skip
    ens.add_argument("--tune-threshold", action="store_true",
                     help="binary tasks: the decision threshold with the best out-of-fold "
                     "accuracy")  # fmt: skip
    ens.add_argument("--data", metavar="PATH", help="the competition folder (default: the runs')")

    download = command(sub, "download", "fetch and unpack a competition's data from Kaggle "
                       "(NAME: a recipe, or a competition's slug)")  # fmt: skip
    download.add_argument("--data", metavar="PATH", help="where to put it (default: data/<slug>)")
    submit = command(sub, "submit", "check, upload and score a submission on Kaggle", here)
    submit.add_argument("file", nargs="?", help="the CSV (default: the newest for NAME)")
    submit.add_argument("-m", "--message", help="the submission's description (default: run id "
                        "and validation score)")  # fmt: skip
    submit.add_argument("--no-wait", dest="wait", action="store_false",
                        help="return after the upload, without waiting for the score")  # fmt: skip
    submit.add_argument("--timeout", type=float, default=600, metavar="S",
                        help="longest wait for the score, in seconds (default 600)")  # fmt: skip
    submit.add_argument("--data", metavar="PATH", help="the competition folder whose "
                        "sample_submission.csv checks the file (default: the run's)")  # fmt: skip
    pred = command(sub, "predict", "predict a test set with a finished run, training nothing "
                   "(code competitions)", here)  # fmt: skip
    pred.add_argument("run", metavar="RUN", help="the run's id (see `kit runs NAME`) or folder")
    pred.add_argument("--data", metavar="PATH", help="the folder holding the test images and "
                      "sample_submission.csv (default: searched as `kit run` does)")  # fmt: skip
    pred.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps")
    command(sub, "submissions", "the competition's submissions on Kaggle", here)
    runs = command(sub, "runs", "the local runs with their scores, or compare some", here)
    runs.add_argument("runs", nargs="*", metavar="RUN", help="compare these runs (ids, a unique "
                      "start of one, or folders): where recipes differ, and scores")  # fmt: skip
    kernel = command(sub, "kernel", "a Kaggle notebook that runs the recipe offline")
    kernel.add_argument(
        "dir", help="a new or empty folder for kernel-metadata.json and the notebook"
    )
    kernel.add_argument("--push", action="store_true",
                        help="build and upload the wheels dataset and push the kernel")  # fmt: skip
    kernel.add_argument("--user", help="your Kaggle user name (default: from the credentials)")
    kernel.add_argument("--predict", metavar="RUN", help="an inference notebook for code "
                        "competitions: predicts with the finished run RUN, shipped as a model "
                        "dataset (DIR/model/), and trains nothing")  # fmt: skip
    kernel.add_argument("--out", metavar="DIR", help="where runs/ are (default: here)")
    return parser


def overrides(args: argparse.Namespace) -> dict:
    keys = ["data", "sample", "out", "device", "weights"] + [f.name for f in recipe_fields()]
    return {k: getattr(args, k) for k in keys}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            from kit.recipe import recipe_table

            for name, where, description in recipe_table():
                print(f"{name:12} {description}" + (f"  ({where})" if where != "packaged" else ""))
        elif args.command == "run":
            from kit.pipeline import run

            run(args.name, resume=args.resume, nproc=args.nproc, torchrun=args.torchrun,
                **overrides(args))  # fmt: skip
        elif args.command == "distill":
            from kit.pipeline import run

            run(args.name, nproc=args.nproc, torchrun=args.torchrun,
                **{**overrides(args), "distill": args.teacher})  # fmt: skip
        elif args.command == "lr-find":
            from kit.pipeline import lr_find

            lr_find(args.name, **overrides(args))
        elif args.command == "new":
            from kit.new import write_recipe

            write_recipe(args.name, args.data, args.metric, args.slug)
        elif args.command == "sample":
            from kit.data.sample import write_sample

            print(f"wrote the {args.name} sample to {write_sample(args.name, args.dir)}")
        elif args.command == "ensemble":
            from kit.ensemble import ensemble

            ensemble(args.name, args.runs, args.method, args.tune_threshold, args.out, args.data)
        elif args.command == "download":
            from kit.kaggle.competition import download
            from kit.recipe import competition_slug

            download(args.name, competition_slug(args.name), args.data)
        elif args.command == "submit":
            from kit.kaggle.competition import submit_run

            submit_run(args.name, args.file, args.message, args.wait, args.out, args.data,
                       args.timeout)  # fmt: skip
        elif args.command == "predict":
            from kit.inference import predict

            predict(args.name, args.run, args.data, args.out, args.device)
        elif args.command == "submissions":
            from kit.kaggle.competition import show_submissions

            show_submissions(args.name, args.out)
        elif args.command == "runs":
            from kit.runs.records import show_runs

            show_runs(args.name, args.out, args.runs)
        elif args.command == "kernel":
            from kit.kaggle.kernel import kernel

            kernel(args.name, args.dir, args.push, args.user, predict=args.predict, out=args.out)
    except KitError as e:
        if args.debug:
            raise
        print(f"kit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # a launch's says what it stopped and how to go on
        print(f"kit: interrupted{f': {e}' if str(e) else ''}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
