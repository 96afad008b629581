"""A `registro serve --demo` of its own, for the scripts that load or fuzz the API.

Starts the server on a throwaway SQLite data directory and a free port (no read limit), and
reads what the demo printed: a token per role, and the ids requests need (the school, the 1A
class and its teacher, a student, her guardian, the demo's school year).

As a command: `demo.py config <workdir> <base>` writes <workdir>/schemathesis.toml and
<workdir>/<role>.token from a server already started with its output in <workdir>/serve.out.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass


@dataclass
class Demo:
    base: str
    tokens: dict[str, str]
    school: str
    class_1a: str
    teacher: str
    subject: str
    student: str
    guardian: str
    year: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(base: str, path: str, token: str):
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def read(workdir: str, base: str) -> Demo:
    """What the demo printed to <workdir>/serve.out, and the ids found through the API."""
    text = open(os.path.join(workdir, "serve.out"), encoding="utf-8").read()
    tokens: dict[str, str] = {}
    for label, token in re.findall(r"^# (\S+)[^\n]*\n(\S+)$", text, re.M):
        tokens.setdefault(label, token)
    school = re.search(r"/schools/([0-9a-f-]{36})/me", text).group(1)
    teacher = get(base, f"/schools/{school}/me", tokens["teacher"])
    guardian = get(base, f"/schools/{school}/me", tokens["guardian"])
    class_1a = next(c["id"] for c in teacher["classes"] if c["name"] == "1A")
    taught = get(base, f"/schools/{school}/classes/{class_1a}", tokens["teacher"])
    subject = next(
        t["subject"] for t in taught["teachers"] if t["teacher"]["id"] == teacher["person"]["id"]
    )
    # The demo's school year is the one before this one (a school year starts on 1 September).
    today = datetime.date.today()
    year = (today.year if today.month >= 9 else today.year - 1) - 1
    return Demo(
        base=base,
        tokens=tokens,
        school=school,
        class_1a=class_1a,
        teacher=teacher["person"]["id"],
        subject=subject,
        student=guardian["children"][0]["id"],
        guardian=guardian["person"]["id"],
        year=year,
    )


def start(binary: str, workdir: str) -> tuple[subprocess.Popen, Demo]:
    """Starts the demo server in <workdir> and waits until it answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRO_")}
    env.update({"REGISTRO_LOG": "warn", "NO_COLOR": "1"})
    server = subprocess.Popen(
        [binary, "serve", "--demo", "--data-dir", os.path.join(workdir, "data"),
         "--listen", f"127.0.0.1:{port}", "--read-rate-limit", "0"],
        stdout=open(os.path.join(workdir, "serve.out"), "w"),
        stderr=open(os.path.join(workdir, "serve.log"), "w"),
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"registro serve --demo stopped: see {workdir}/serve.log")
        try:
            if "Try: curl" in open(os.path.join(workdir, "serve.out"), encoding="utf-8").read():
                urllib.request.urlopen(base + "/healthz").read()
                return server, read(workdir, base)
        except OSError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("registro serve --demo did not start in time")


def write_config(workdir: str, base: str) -> None:
    """The schemathesis configuration (path parameters set to the demo's ids) and the tokens."""
    demo = read(workdir, base)
    for role, token in demo.tokens.items():
        with open(os.path.join(workdir, f"{role}.token"), "w") as f:
            f.write(token)
    params = {
        "path.school": demo.school,
        "path.class": demo.class_1a,
        "path.student": demo.student,
        "path.person": demo.teacher,
        "path.guardian": demo.guardian,
        "path.year": demo.year,
    }
    with open(os.path.join(workdir, "schemathesis.toml"), "w") as config:
        config.write("[parameters]\n")
        for name, value in params.items():
            config.write(f'"{name}" = {json.dumps(value)}\n')
    print(f"school {demo.school}, class 1A {demo.class_1a}, student {demo.student}, "
          f"{len(demo.tokens)} tokens", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "config":
        write_config(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
