"""Carry out a plan with the installed gcloud (the imperative shell around :mod:`deploy.gcp.commands`).

Usage::

    execute(build_plan("up", options), say=print)        # raises DeployError("...") on the first failure

``ensure``, ``remove`` and ``refuse`` steps run their describe check first and act on its answer (a
``refuse`` step stops the run when the resource exists); an error from a check that is not "not found"
(no permission, not logged in, ...) stops the run rather than being taken for absence. Capture steps
fill the placeholders of later steps. Commands run from the repository root (Cloud Build uploads it).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.gcp.commands import Plan, Step, substitute

REPO_ROOT = Path(__file__).resolve().parents[2]
NOT_FOUND = re.compile(r"NOT_FOUND|not found|Cannot find|does not exist|\b404\b", re.IGNORECASE)
RETRY_ATTEMPTS = 6
RETRY_DELAY_S = 5.0

Say = Callable[[str], None]


class DeployError(RuntimeError):
    """A gcloud command failed; the message names the step, the command and gcloud's error."""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


Run = Callable[[Sequence[str]], Result]


def run_gcloud(argv: Sequence[str], cwd: Path = REPO_ROOT) -> Result:
    """Run one command, capturing its output (the default :data:`Run`)."""
    try:
        proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DeployError(f"{argv[0]} not found: install the Google Cloud CLI (https://cloud.google.com/sdk)") from None
    return Result(proc.returncode, proc.stdout, proc.stderr)


def last_error(result: Result) -> str:
    """gcloud's error, trimmed to its first ERROR line (or the last non-empty line)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or [f"exit {result.returncode}"])[0]


@dataclass
class Execution:
    """State of one run: placeholder values so far, and where the plan's files were written."""

    plan: Plan
    run: Run
    say: Say
    sleep: Callable[[float], None] = time.sleep
    values: dict[str, str] = field(default_factory=dict)

    def argv(self, argv: Sequence[str]) -> list[str]:
        return substitute(argv, self.values)

    def call(self, step: Step, argv: Sequence[str]) -> Result:
        command = self.argv(argv)
        self.say(f"  $ {shlex.join(command)}")
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            result = self.run(command)
            error = last_error(result) if result.returncode else ""
            if result.returncode == 0 or any(t in result.stderr for t in step.tolerate):
                return result
            if attempt < RETRY_ATTEMPTS and any(t in result.stderr for t in step.retry_on):
                self.say(f"    {error} (retrying in {RETRY_DELAY_S:.0f} s: IAM changes take a moment)")
                self.sleep(RETRY_DELAY_S)
                continue
            raise DeployError(f"{step.title}: {shlex.join(command)} failed: {error}")
        raise AssertionError("unreachable")

    def exists(self, step: Step) -> bool:
        """Run the step's describe check: True if found, False if "not found", DeployError otherwise."""
        assert step.check is not None
        command = self.argv(step.check)
        result = self.run(command)
        if result.returncode == 0:
            return True
        if NOT_FOUND.search(result.stderr):
            return False
        raise DeployError(f"{step.title}: could not tell whether it exists: {shlex.join(command)}: "
                          f"{last_error(result)}")

    def step(self, number: int, step: Step) -> None:
        self.say(f"[{number}/{len(self.plan.steps)}] {step.title}")
        if step.mode == "run":
            result = self.call(step, step.argv)
            if step.capture:
                value = result.stdout.strip()
                if not value:
                    raise DeployError(f"{step.title}: {shlex.join(self.argv(step.argv))} printed nothing")
                self.values[step.capture] = value
                self.say(f"    {step.capture} = {value}")
        elif step.mode == "refuse":
            if self.exists(step):
                raise DeployError(step.refusal)
            self.say("    not there; good")
        elif step.mode == "ensure":
            if not self.exists(step):
                self.call(step, step.argv)
            elif step.if_exists is not None:
                self.call(step, step.if_exists)
            else:
                self.say("    exists; nothing to do")
        elif self.exists(step):
            self.call(step, step.argv)
        else:
            self.say("    not there; nothing to do")


def execute(plan: Plan, say: Say = print, run: Run = run_gcloud,
            sleep: Callable[[float], None] = time.sleep) -> dict[str, str]:
    """Run every step of ``plan`` in order; return the captured values (project number, URLs)."""
    with tempfile.TemporaryDirectory(prefix="frame-fanout-gcp-") as tmp:
        execution = Execution(plan, run, say, sleep)
        for number, (placeholder, content) in enumerate(plan.files.items()):
            path = Path(tmp) / f"file-{number}.json"
            path.write_text(content)
            execution.values[placeholder] = str(path)
        for number, step in enumerate(plan.steps, start=1):
            execution.step(number, step)
        return {k: v for k, v in execution.values.items() if k not in plan.files}
