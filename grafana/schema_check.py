"""Type-check every dashboard JSON against Grafana's published schema (``@grafana/schema``,
``tsc --strict``, versions pinned in ``grafana/schema-check/package.json``).

    (cd grafana/schema-check && npm ci) && python -m grafana.schema_check

Each dashboard becomes ``<name>.gen.ts``: its JSON ``as const satisfies`` the schema's
``Dashboard`` type, so every key must exist in the schema (no obsolete ``style``, no stray
variable fields) and every value must have its type (no ``options: null``). The schema's
string enums are compared by value. Exit status: tsc's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
CHECK_DIR = HERE / "schema-check"
DASHBOARDS = HERE / "dashboards"

PRELUDE = """import type { Dashboard } from "@grafana/schema";

// The schema's string enums as their values, arrays read-only: the JSON is checked as written.
type Loose<T> = T extends string
  ? `${T}`
  : T extends ReadonlyArray<infer U>
    ? ReadonlyArray<Loose<U>>
    : T extends object
      ? { readonly [K in keyof T]: Loose<T[K]> }
      : T;

"""


def write_sources() -> list[Path]:
    for stale in CHECK_DIR.glob("*.gen.ts"):
        stale.unlink()
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        source = CHECK_DIR / f"{path.stem}.gen.ts"
        text = path.read_text(encoding="utf-8").strip()
        source.write_text(
            f"{PRELUDE}export const dashboard = {text} as const satisfies Loose<Dashboard>;\n",
            encoding="utf-8",
        )
        out.append(source)
    return out


def main() -> int:
    tsc = CHECK_DIR / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        print(f"{tsc} not found: run (cd {CHECK_DIR} && npm ci) first", file=sys.stderr)
        return 2
    sources = write_sources()
    result = subprocess.run([str(tsc), "-p", str(CHECK_DIR)], check=False)  # noqa: S603 - our own paths
    if result.returncode == 0:
        print(f"{len(sources)} dashboard(s) match @grafana/schema")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
