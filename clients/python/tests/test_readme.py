"""The README's Python examples, run against a real cluster (its addresses put in for 127.0.0.1:5000-5002)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest
from conftest import Cluster

README = Path(__file__).resolve().parents[1] / "README.md"


def examples() -> List[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_examples() -> None:
    assert len(examples()) >= 5


@pytest.mark.parametrize("index", range(len(examples())))
def test_readme_example(index: int, cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    code = examples()[index]
    for n, endpoint in enumerate(cluster.endpoints()):
        code = code.replace(f"127.0.0.1:{5000 + n}", endpoint)
    exec(compile(code, f"README.md example {index + 1}", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert out.strip(), "every example prints something"
