"""The real ansible-playbook and ansible-lint of the test venv, run on this machine, and what their output says."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.workspace import REPO_ROOT

PLAYBOOKS = REPO_ROOT / "playbooks"
BIN = Path(sys.executable).parent  # ansible-core and ansible-lint come with the test extras, beside this Python
# The Python the role's modules run with on the host (Debian's: apt and packaging are installed for it).
HOST_PYTHON = "/usr/bin/python3"
_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+"
                    r"rescued=\d+\s+ignored=\d+\s*$", re.MULTILINE)


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def recap(self) -> str:
        """The PLAY RECAP line of the host, as Ansible printed it."""
        match = _RECAP.search(self.stdout)
        assert match is not None, f"no PLAY RECAP in:\n{self.output[-6000:]}"
        return " ".join(match[0].split())

    def count(self, what: str) -> int:
        """ok, changed, unreachable, failed or skipped, from the recap."""
        match = _RECAP.search(self.stdout)
        assert match is not None, f"no PLAY RECAP in:\n{self.output[-6000:]}"
        return int(match[what])

    def task_result(self, task: str) -> str:
        """The first result line ("ok: [localhost]", "changed: ...", "skipping: ...") after the task's banner."""
        banner = self.stdout.index(f"TASK [opsctl : {task}]")
        for line in self.stdout[banner:].splitlines()[1:]:
            if re.match(r"^(ok|changed|skipping|fatal|failed): ", line):
                return line
        raise AssertionError(f"no result for task {task!r}")


def tools_missing() -> list[str]:
    """What the role's test needs and this machine lacks."""
    needed = {"ansible-playbook": (BIN / "ansible-playbook").exists(), "ansible-lint": (BIN / "ansible-lint").exists(),
              "sudo": shutil.which("sudo") is not None, "runuser": shutil.which("runuser") is not None,
              "systemd-analyze": shutil.which("systemd-analyze") is not None,
              "useradd/groupadd": all(shutil.which(t) for t in ("useradd", "userdel", "groupadd", "groupdel"))}
    missing = [name for name, present in needed.items() if not present]
    if subprocess.run([HOST_PYTHON, "-c", "import apt, packaging, venv"], capture_output=True,
                      check=False).returncode != 0:
        missing.append("python3-apt, python3-packaging and python3-venv for /usr/bin/python3")
    return missing


def environment(home: Path) -> dict[str, str]:
    """Ansible's own folders in the test's (never root's ~/.ansible), no colours, no config file from elsewhere."""
    return {**os.environ, "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "local-tmp"),
            "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_CONFIG": str(home / "ansible.cfg"), "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def playbook(home: Path, inventory: Path, playbook_file: Path, *args: str, timeout: float = 600) -> PlaybookRun:
    """ansible-playbook, run from the test's folder (no ansible.cfg of the repository or the caller applies)."""
    started = time.monotonic()
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook_file), *args],
                          cwd=home, env=environment(home), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)
    return PlaybookRun(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def lint(home: Path) -> subprocess.CompletedProcess[str]:
    """ansible-lint with the production profile, offline (CI has no Galaxy), on the playbooks folder."""
    return subprocess.run([str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor",
                           "-c", str(PLAYBOOKS / ".ansible-lint"), str(PLAYBOOKS)],
                          cwd=REPO_ROOT, env=environment(home), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300, check=False)


def build_wheel(folder: Path) -> Path:
    """opsctl's wheel, built from a copy of the sources (setuptools would leave build/ in the repository)."""
    source = folder / "source"
    shutil.copytree(REPO_ROOT / "opsctl", source / "opsctl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "-w", str(folder / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (folder / "dist").glob("opsctl-*.whl")
    return wheel
