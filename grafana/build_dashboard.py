"""Generate grafana/dashboards/sms-router.json with grafana-foundation-sdk.

python -m grafana.build_dashboard          # write the JSON
python -m grafana.build_dashboard --check  # exit 1 if the committed JSON is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
)

from grafana.queries import PANELS, VARIABLES, PanelSpec, scoped

OUT = Path(__file__).parent / "dashboards" / "sms-router.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


def _panel(spec: PanelSpec) -> Any:
    builder: Any = stat.Panel() if spec.kind == "stat" else timeseries.Panel()
    builder = (
        builder.title(spec.title)
        .description(spec.description)
        .unit(spec.unit)
        .datasource(DATASOURCE)
        .height(7)
        .span(8 if spec.kind == "stat" else 12)
    )
    if spec.thresholds:
        steps = [Threshold(value=value, color=colour) for value, colour in spec.thresholds]
        builder = builder.thresholds(
            dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)
        )
    for ref, (expr, legend) in zip("ABCDEFGH", spec.targets, strict=False):
        builder = builder.with_target(
            prometheus.Dataquery().expr(scoped(expr)).legend_format(legend).ref_id(ref)
        )
    return builder


def _variable(name: str, query: str) -> Any:
    """A multi-select query variable whose "All" matches everything (``.*``)."""
    return (
        dashboard.QueryVariable(name)
        .label(name.capitalize())
        .query(query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
    )


def build() -> dict[str, Any]:
    board = (
        dashboard.Dashboard("SMS router: SLOs and providers")
        .uid("sms-router")
        .tags(["sms-router", "slo"])
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
    )
    for name, query in VARIABLES.items():
        board = board.with_variable(_variable(name, query))
    row = None
    for spec in PANELS:
        if spec.row != row:
            row = spec.row
            board = board.with_row(dashboard.Row(row))
        board = board.with_panel(_panel(spec))
    encoded: dict[str, Any] = json.loads(
        JSONEncoder(sort_keys=True, indent=2).encode(board.build())
    )
    return _schema_clean(encoded)


# Keys the SDK writes that Grafana's published schema (@grafana/schema, checked by
# grafana/schema-check in CI) does not have: interval-variable fields on every variable, and
# a placeholder variable id, and the obsolete dashboard ``style``.
_VARIABLE_EXTRAS = ("auto", "auto_count", "auto_min", "id")


def _schema_clean(board: dict[str, Any]) -> dict[str, Any]:
    board.pop("style", None)
    for panel in board.get("panels", []):
        if panel.get("options", {}) is None:  # "options: null" is not an object
            del panel["options"]
    for variable in board.get("templating", {}).get("list", []):
        for key in _VARIABLE_EXTRAS:
            variable.pop(key, None)
    return board


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python -m grafana.build_dashboard", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
