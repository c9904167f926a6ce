"""Every example command in the README and in docs/ runs, and exits 0.

A command is a line of a fenced `sh` block, or a `$ ` line of any fenced
block. Each `smsbatch` command on it runs as written, cut down so the whole
lot takes seconds: at most 200 messages and 3 replications, and a real-time
run at --speed 1000 (the mode is kept: --speed max stays max). A count left to
the stopping rule (`--replications auto`, and `compare`'s default) stops at
--max-replications 10, the rule's least, which it goes on past when its runs are
that small; `plan`, whose feasible candidate takes at least 73 replications,
at most 50 messages. A Redis URL
of the docs is the test Redis; a worker runs in the background until the
block's last command is done, then leaves on SIGTERM (exit 0). Installing
and testing commands (pip, pytest, the linters, .ci/run) are CI's own: it
runs them as the README writes them.
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Started, communicate_or_kill, start

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))]
MAX_MESSAGES = 200
MAX_REPLICATIONS = 3
MAX_AUTO_REPLICATIONS = "10"  # --replications auto's least (--max-replications below it is bad input)
MAX_PLAN_MESSAGES = 50
REAL_TIME_SPEED = "1000"
DOC_BROKER = re.compile(r"redis://(redis-host|localhost):6379/0")
# What CI runs as written (.ci/run): making the virtualenv, installing, the suite, the checks.
CI_COMMANDS = {"python3", ".", "pip", "pytest", "ruff", "mypy", "bash"}
FEEDERS = {"cat", "zcat"}  # commands that only feed a list of numbers to smsbatch
NUMBERS = ["+1 202-555-0143", "(202) 555-0143", "2025550143", "+442079460958", "not a number"]
NUMBERS += [f"+1 415 555 {n:04d}" for n in range(100, 140)]


def commands(page: str) -> list[list[str]]:
    """The page's commands, block by block, in order."""
    blocks, block, fence = [], [], None
    for line in (ROOT / page).read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if fence is None:
                fence = line[3:].strip()
            else:
                if block:
                    blocks.append(block)
                block, fence = [], None
            continue
        if fence is None:
            continue
        if line.startswith("$ "):
            block.append(line[2:])
        elif fence == "sh" and line.strip() and not line.lstrip().startswith("#"):
            block.append(line)
    return blocks


def segments(line: str) -> list[tuple[str, list[str]]]:
    """(operator before it, words) for each command of a line joined by && or |."""
    found: list[tuple[str, list[str]]] = [("", [])]
    for word in shlex.split(line, comments=True):  # the docs write && and | between spaces
        if word in ("&&", "|"):
            found.append((word, []))
        else:
            found[-1][1].append(word)
    return found


def program(words: list[str]) -> tuple[list[str], list[str]]:
    """(leading NAME=value words, the rest)."""
    count = 0
    while count < len(words) and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[count]):
        count += 1
    return words[:count], words[count:]


def cut_down(words: list[str], redis_url: str | None) -> list[str]:
    """A smsbatch command of the docs, made quick (see the module's docstring)."""
    words = [DOC_BROKER.sub(redis_url, word) if redis_url else word for word in words]
    if words[1:2] in (["report"], ["--help"], ["--version"]):
        return words
    if words[1:2] == ["worker"]:
        return [*words, "--broker", redis_url] if "-c" in words and redis_url else words
    planning = words[1:2] in (["plan"], ["compare"])  # virtual time only, whatever the docs say
    most = MAX_PLAN_MESSAGES if words[1:2] == ["plan"] else MAX_MESSAGES
    auto = words[1:2] == ["compare"]  # compare's replications default to auto
    out, given, rest = [words[0]], set(), iter(words[1:])
    for word in rest:
        if word in ("-n", "--messages", "--replications", "--speed"):
            value = next(rest)
            given.add(word.lstrip("-")[0])
            if word == "--replications":
                auto = value == "auto"
                value = value if auto else str(min(int(value), MAX_REPLICATIONS))
            elif word == "--speed":
                value = value if value.lower() == "max" else REAL_TIME_SPEED
            else:
                value = str(min(int(value), most))
            out += [word, value]
        elif word == "--max-replications":
            given.add("x")
            out += [word, str(min(int(next(rest)), int(MAX_AUTO_REPLICATIONS)))]
        else:
            out.append(word)
    if "n" not in given and "m" not in given:
        out += ["-n", str(most)]
    if "s" not in given and not planning:
        out += ["--speed", REAL_TIME_SPEED]
    if auto and "x" not in given:
        out += ["--max-replications", MAX_AUTO_REPLICATIONS]
    return out


def shell_word(word: str) -> str:
    """A word for bash; `<(zcat numbers.csv.gz)` stays a process substitution."""
    return word if re.fullmatch(r"[\w@%+=:,./<>()\[\]-]+", word) else shlex.quote(word)


def needs_redis(blocks: list[list[str]]) -> bool:
    return any("--broker" in line or "smsbatch worker" in line for block in blocks for line in block)


def prepared_folder(tmp_path: Path) -> Path:
    """What the docs' commands read: configs/, a numbers.csv (and .gz), export.sh."""
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    text = "number\n" + "\n".join(NUMBERS) + "\n"
    (tmp_path / "numbers.csv").write_text(text)
    with gzip.open(tmp_path / "numbers.csv.gz", "wt") as handle:
        handle.write(text)
    return tmp_path


def run_line(line: str, folder: Path, env: dict, redis_url: str | None, workers: list) -> int:
    """Run one line's smsbatch commands (a worker in the background); the number run."""
    parts, ran = [], 0
    for operator, words in segments(line):
        assigned, rest = program(words)
        name = rest[0] if rest else ""
        if name == "smsbatch":
            rest = cut_down(rest, redis_url)
            ran += 1
        elif name in CI_COMMANDS and operator != "|":
            continue  # .ci/run runs these as written
        elif name not in FEEDERS:
            pytest.fail(f"a docs command that no test runs: {name!r} in {line!r}")
        parts.append((operator if parts else "", " ".join(map(shell_word, [*assigned, *rest]))))
    shell = " ".join(f"{operator} {command}" if operator else command for operator, command in parts)
    if ran and parts[0][1].split()[0:2] == ["smsbatch", "worker"]:
        path = shlex.quote(env["PATH"])
        worker = Started(["bash", "-c", f"cd {shlex.quote(str(folder))} && PATH={path} exec {shell}"])
        worker.wait_for_line(r"^smsbatch worker: ", stream="out")  # its signals are caught from here on
        workers.append(worker)
        return ran
    if ran:
        proc = start(["bash", "-c", shell], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = communicate_or_kill(proc, timeout=60)
        assert proc.returncode == 0, f"{shell!r} (from {line!r}) exited {proc.returncode}:\n{out}\n{err}"
    return ran


def run_block(block: list[str], folder: Path, env: dict, redis_url: str | None) -> None:
    """A block's lines in order, in `folder`; its workers end after its last line."""
    workers: list[Started] = []
    for line in block:
        run_line(line, folder, env, redis_url, workers)
    for worker in workers:
        worker.proc.send_signal(signal.SIGTERM)
        out, err = worker.collect(timeout=30)
        assert worker.proc.returncode == 0, f"a docs worker exited {worker.proc.returncode}:\n{out}\n{err}"


def run_page(page: str, tmp_path: Path, redis_url: str | None) -> None:
    """Every block of the page, each in a folder of its own (prepared_folder): two
    blocks at a time (a block's commands mostly start Python), but the blocks that
    use Redis one after another, as a worker joins whatever run it finds there."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env = {key: value for key, value in env.items() if not key.startswith("SMSBATCH_")}
    blocks = list(enumerate(commands(page)))

    def folder(number: int) -> Path:
        path = tmp_path / f"block-{number}"
        path.mkdir()
        return prepared_folder(path)

    alone = [(n, block) for n, block in blocks if needs_redis([block])]
    with ThreadPoolExecutor(max_workers=2) as pool:
        beside = [
            pool.submit(run_block, block, folder(n), env, redis_url) for n, block in blocks if not needs_redis([block])
        ]
        for n, block in alone:
            run_block(block, folder(n), env, redis_url)
        for done in beside:
            done.result()  # a block's failure, raised here


@pytest.mark.timeout(120)
@pytest.mark.parametrize("page", [page for page in PAGES if not needs_redis(commands(page))])
def test_every_example_command_runs(page, tmp_path):
    run_page(page, tmp_path, None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("page", [page for page in PAGES if needs_redis(commands(page))])
def test_every_example_command_with_redis_runs(page, tmp_path, redis_url):
    run_page(page, tmp_path, redis_url)


def test_the_readme_and_docs_have_commands_and_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    assert "pip install -e '.[test,redis,dask]' && pytest" in readme  # .ci/run depends on it
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)", readme))
    pages = ("model", "options", "planning", "faults", "several-machines", "report-and-summary")
    for page in (*pages, "architecture", "performance"):
        assert f"docs/{page}.md" in linked
    every = [line for page in PAGES for block in commands(page) for line in block]
    assert sum("smsbatch" in line for line in every) >= 20


def test_the_cut_down_keeps_the_mode_and_the_options():
    assert cut_down(["smsbatch", "-c", "x.ini", "--speed", "max", "-n", "10000000"], None) == [
        "smsbatch", "-c", "x.ini", "--speed", "max", "-n", "200"
    ]  # fmt: skip
    assert cut_down(["smsbatch", "--speed", "10"], None) == ["smsbatch", "--speed", "1000", "-n", "200"]
    assert cut_down(["smsbatch", "--replications", "20"], None)[:2] == ["smsbatch", "--replications"]
    assert "3" in cut_down(["smsbatch", "--replications", "20"], None)
    assert cut_down(["smsbatch", "--speed", "max", "--replications", "auto"], None)[-2:] == ["--max-replications", "10"]
    assert cut_down(["smsbatch", "compare", "a.ini", "--with", "max-retries=0", "-n", "1000"], None) == [
        "smsbatch", "compare", "a.ini", "--with", "max-retries=0", "-n", "200", "--max-replications", "10"
    ]  # fmt: skip
    assert "--max-replications" not in cut_down(["smsbatch", "compare", "a.ini", "--replications", "20"], None)
    assert cut_down(["smsbatch", "plan", "-n", "20000", "--vary", "b.copies=1..10"], None)[2:4] == ["-n", "50"]
    assert segments("A=1 smsbatch -n 5 && smsbatch report a.json -o b.html  # note") == [
        ("", ["A=1", "smsbatch", "-n", "5"]),
        ("&&", ["smsbatch", "report", "a.json", "-o", "b.html"]),
    ]


def test_help_names_the_subcommands_and_the_docs():
    out = subprocess.run(
        [sys.executable, "-m", "smsbatch", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "COLUMNS": "100"},
    ).stdout
    assert "smsbatch report" in out
    assert "smsbatch worker" in out
    assert "docs/options.md" in out
