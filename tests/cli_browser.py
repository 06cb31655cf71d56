"""The browser the CLI's tests give it (`BROWSER`, which Python's `webbrowser` obeys): it signs
the person in at Keycloak's real pages with requests (tests/oidc.py), then opens the loopback
redirect, where the CLI is waiting for the code.

Run as `python -m tests.cli_browser <person.json> <url>`, detached by the script that names it
(the CLI starts listening only once its browser has returned), without Django's settings: the
person's email, password and authenticator app (tests/second_factor.py) come in the file.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import requests

from tests import second_factor
from tests.oidc import sign_in_at

SCRIPT = """#!/bin/sh
# The browser of a CLI test: tests/cli_browser.py, detached as a browser's launcher does.
PYTHONPATH={root} {python} -m tests.cli_browser {person} "$1" >{log} 2>&1 &
"""


def install(folder: Path, email: str, password: str) -> tuple[Path, Path]:
    """A `BROWSER` script in `folder` that signs in as this person; and the log it writes."""
    person = folder / "person.json"
    person.write_text(
        json.dumps(
            {"email": email, "password": password, "codes": second_factor.handed_over(email)}
        )
    )
    script, log = folder / "browser.sh", folder / "browser.log"
    root = Path(__file__).resolve().parent.parent
    where = {"root": root, "python": sys.executable, "person": person, "log": log}
    script.write_text(SCRIPT.format(**{name: shlex.quote(str(p)) for name, p in where.items()}))
    script.chmod(0o700)
    return script, log


def open_url(person_file: str, url: str) -> None:
    person = json.loads(Path(person_file).read_text())
    second_factor.take_over(person["codes"])
    redirect = sign_in_at(requests.Session(), url, person["email"], person["password"])
    answer = requests.get(redirect, timeout=10)
    print(answer.status_code, answer.text)


if __name__ == "__main__":
    open_url(*sys.argv[1:])
