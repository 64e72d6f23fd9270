"""The official `kaggle` client, signed in: where the credentials are (named, never printed), and
the client's errors turned into one line each.

`kaggle` authenticates (and may print) as a side effect of its import, so it is imported here,
inside `client()`, and only by the commands that talk to Kaggle.
"""

import contextlib
import io
import json
import os
import sys
from pathlib import Path

from kit.errors import KitError

WEB = "https://www.kaggle.com"
TOKEN_HELP = (
    f"create a token at {WEB}/settings (API > Create New Token) and put it in "
    "~/.kaggle/access_token or $KAGGLE_API_TOKEN; a legacy kaggle.json goes in ~/.kaggle "
    "(or $KAGGLE_CONFIG_DIR), or set KAGGLE_USERNAME and KAGGLE_KEY"
)


def config_dir() -> Path:
    """Where the client looks for kaggle.json: $KAGGLE_CONFIG_DIR, ~/.kaggle, ~/.config/kaggle."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path.home() / ".kaggle"
    if home.exists() or not sys.platform.startswith("linux"):
        return home
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def credentials_source() -> str | None:
    """Which credentials the client will use, by name (never the secret itself); None if none."""
    env = os.environ
    notebook_token = env.get("KAGGLE_API_V1_TOKEN")
    if "KAGGLE_KERNEL_RUN_TYPE" in env and notebook_token and Path(notebook_token).is_file():
        return "the notebook's token"
    if env.get("KAGGLE_API_TOKEN"):
        return "$KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        path = Path.home() / ".kaggle" / name
        if path.is_file() and path.read_text().strip():
            return str(path)
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "$KAGGLE_USERNAME and $KAGGLE_KEY"
    path = config_dir() / "kaggle.json"
    if path.is_file():
        return str(path)
    return None


def username() -> str | None:
    """The account name when it can be read without asking Kaggle (legacy key credentials)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    path = config_dir() / "kaggle.json"
    try:
        return json.loads(path.read_text()).get("username")
    except (OSError, ValueError, AttributeError):
        return None


@contextlib.contextmanager
def quiet():
    """Swallow what the client prints (auth help, upload errors): kit reports in its own words."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def client():
    """An authenticated `kaggle.KaggleApi`; a KitError naming where credentials go if none."""
    source = credentials_source()
    if source is None:
        raise KitError(f"no Kaggle credentials found; {TOKEN_HELP}")
    with quiet():
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        api.config_dir = str(config_dir())  # the class reads it once, at import
        api.config = os.path.join(api.config_dir, api.config_file)
        try:
            with talking_to("Kaggle"):
                api.authenticate()
        except SystemExit:
            raise KitError(f"Kaggle did not accept the credentials in {source}; "
                           f"{TOKEN_HELP}") from None  # fmt: skip
    return api


@contextlib.contextmanager
def talking_to(what: str, slug: str | None = None):
    """Turn the client's HTTP and connection errors into one line each."""
    import requests

    try:
        yield
    except requests.HTTPError as e:
        code = e.response.status_code if e.response is not None else None
        if code == 401:
            raise KitError(f"Kaggle rejected the credentials from {credentials_source()}; "
                           f"{TOKEN_HELP}") from None  # fmt: skip
        if code == 403 and slug:
            rules = f"{WEB}/competitions/{slug}/rules"
            raise KitError(f"Kaggle refused access to {what}: accept the competition's rules "
                           f"at {rules}, then try again") from None  # fmt: skip
        if code == 404:
            raise KitError(f"Kaggle has no {what} (404); check the name") from None
        raise KitError(f"Kaggle answered {code} for {what}: {e}") from None
    except requests.ConnectionError as e:
        raise KitError(f"cannot reach Kaggle ({type(e).__name__}); check the network "
                       "(in a Kaggle notebook, turn the internet on)") from None  # fmt: skip
