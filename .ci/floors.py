"""Print pip pins of the dependency floors pyproject.toml claims (``name==X`` for each ``name>=X``).

`.ci/floors` installs them in a throw-away venv and runs a part of the suite there, so the floors
we promise are floors we have run.
"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
extras = sys.argv[1:]
for req in project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+?)\s*>=\s*([0-9][^,;\s]*)\s*", req.split(";")[0])
    if m is None:
        sys.exit(f"floors: {req!r} has no '>=X' floor; every dependency states one")
    name = re.sub(r"\[.*\]", "", m.group(1))
    print(f"{name}=={m.group(2)}")
