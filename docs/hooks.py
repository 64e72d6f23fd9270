"""mkdocs hook: the reference pages are generated from the code as the site is built, so they
cannot drift from it. A page asks for a table with a marker line:

    <!-- kit: recipe-fields -->   every Recipe field: its default and its field(help=...)
    <!-- kit: commands -->        every command: usage and arguments, from kit/cli.py's parser
"""

import argparse
import dataclasses
import html
import os

from kit.cli import build_parser
from kit.recipe import Recipe, field_help, recipe_fields

RECIPE_FLAGS = "recipe fields"  # the title of the parser's group of recipe flags (kit/cli.py)


def cell(text) -> str:
    """Text safe inside a markdown table cell: `<name>` shown, not taken for an HTML tag."""
    parts = str(text).replace("\n", " ").split("`")
    parts[::2] = [html.escape(p, quote=False) for p in parts[::2]]  # outside `code`
    return "`".join(parts).replace("|", "\\|")


def code(text) -> str:
    return f"`{text}`" if str(text) else ""


def recipe_table() -> str:
    helps = field_help()
    overridable = {f.name for f in recipe_fields()}
    rows = ["| field | default | what it sets |", "|---|---|---|"]
    for f in dataclasses.fields(Recipe):
        default = "" if f.default is dataclasses.MISSING else repr(f.default)
        note = "" if f.name in overridable else " (the recipe's own: no flag)"
        name = f'<span id="{f.name}"></span>`{f.name}`'
        rows.append(f"| {name} | {code(default)} | {cell(helps[f.name])}{note} |")
    return "\n".join(rows)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {a.dest: a.help for a in sub._choices_actions}
    return {name: (helps.get(name, ""), p) for name, p in sub.choices.items()}


def argument(action: argparse.Action) -> str:
    if not action.option_strings:
        return code(action.metavar or action.dest)
    metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
    names = ", ".join(action.option_strings)
    return code(names + metavar)


def default(action: argparse.Action) -> str:
    if action.default in (None, argparse.SUPPRESS, False) or action.nargs == 0:
        return ""
    return code(action.default)


def arguments_table(p: argparse.ArgumentParser) -> str:
    rows = ["| argument | default | what it does |", "|---|---|---|"]
    recipe_flags = []
    for group in p._action_groups:
        for action in group._group_actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if (group.title or "").startswith(RECIPE_FLAGS):
                recipe_flags.append(f"[`{action.option_strings[0]}`](recipe.md#{action.dest})")
                continue
            help_ = (action.help or "").replace("%%", "%")
            if action.choices:
                help_ += f" (one of {', '.join(map(str, action.choices))})"
            rows.append(f"| {argument(action)} | {default(action)} | {cell(help_)} |")
    table = "\n".join(rows) if len(rows) > 2 else "No arguments."
    if recipe_flags:
        table += (
            f"\n\nand every [recipe field](recipe.md) as a flag that overrides the recipe's value"
            f" ({len(recipe_flags)}): " + ", ".join(recipe_flags) + "."
        )
    return table


def commands() -> str:
    os.environ["COLUMNS"] = "90"  # argparse wraps usage to the terminal: the same on every build
    parser = build_parser()
    parts = [
        f"```\n{parser.format_usage().strip().removeprefix('usage: ')}\n```",
        arguments_table_top(parser),
    ]
    for name, (help_, p) in subcommands(parser).items():
        usage = p.format_usage().strip().removeprefix("usage: ")
        parts += [
            f"## kit {name}",
            cell(help_[:1].upper() + help_[1:]) + ".",
            f"```\n{usage}\n```",
            arguments_table(p),
        ]
    return "\n\n".join(parts)


def arguments_table_top(parser: argparse.ArgumentParser) -> str:
    """The options that come before the command (`kit --debug run ...`)."""
    rows = ["| option | what it does |", "|---|---|"]
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            rows.append(f"| {argument(action)} | {cell(action.help)} |")
    return "\n".join(rows)


GENERATED = {"<!-- kit: recipe-fields -->": recipe_table, "<!-- kit: commands -->": commands}


def on_page_markdown(markdown: str, **kwargs) -> str:
    for marker, make in GENERATED.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
