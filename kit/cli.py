"""`kit`: parses the command line and calls kit's functions; no logic lives here."""

import argparse
import sys

from kit.errors import KitError
from kit.recipe import field_help, recipe_fields


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, with a pointer to --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def add_recipe_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="recipe name (see `kit list`)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="kit", description="Kaggle image-classification recipes on fastai.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("list", help="the recipes, one line each")
    add_recipe_flags(sub.add_parser("run", help="train a recipe and write a checked submission"))
    add_recipe_flags(sub.add_parser("lr-find", help="run only the learning-rate finder"))
    sample = sub.add_parser("sample", help="write a recipe's bundled sample data into a folder")
    sample.add_argument("name", help="recipe name (see `kit list`)")
    sample.add_argument("dir", help="a new or empty folder")
    return parser


def overrides(args: argparse.Namespace) -> dict:
    keys = ["data", "sample", "out", "device", "weights"] + [f.name for f in recipe_fields()]
    return {k: getattr(args, k) for k in keys}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            from kit.recipe import load_competition, recipe_names

            for name in recipe_names():
                print(f"{name:12} {load_competition(name).RECIPE.description}")
        elif args.command == "run":
            from kit.pipeline import run

            run(args.name, **overrides(args))
        elif args.command == "lr-find":
            from kit.pipeline import lr_find

            lr_find(args.name, **overrides(args))
        elif args.command == "sample":
            from kit.pipeline import write_sample

            print(f"wrote the {args.name} sample to {write_sample(args.name, args.dir)}")
    except KitError as e:
        if args.debug:
            raise
        print(f"kit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kit: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
