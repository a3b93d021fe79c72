"""The README's library example runs as written (one epoch instead of ten, into a temporary folder)."""

import re
from pathlib import Path

from conftest import needs_real_data

README = Path(__file__).resolve().parents[1] / "README.md"


@needs_real_data(["fashion-mnist"])
def test_the_readmes_library_example_trains_and_writes_its_folder(tmp_path):
    text = README.read_text(encoding="utf-8")
    after = text[text.index("The parts themselves"):]
    code = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    assert "epochs=10" in code and '"runs/mine"' in code
    namespace = {}
    exec(code.replace("epochs=10", "epochs=1").replace('"runs/mine"', repr(str(tmp_path / "mine"))), namespace)
    (epoch,) = namespace["history"]
    assert epoch["test_acc"] > 0.7  # softmax regression after one epoch at lr 0.1
    assert {"checkpoint.pt", "metrics.csv"} <= {p.name for p in (tmp_path / "mine").iterdir()}
