#!/usr/bin/env python3
"""Generate the Grafana dashboards from the compact panel lists below.

Edit this file, then run `python3 dashboards/generate.py`; commit both. The JSON files are
importable as they are (Prometheus data source chosen through the `datasource` variable), and
`tests/tests/dashboards.rs` fails if a panel refers to a metric or label the services do not export.
"""
import json
import os
import sys

sys.dont_write_bytecode = True  # importing panels.py must not leave __pycache__ in the repo

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid, title, exprs, x, y, unit="short", kind="timeseries", w=12, h=8, description="",
          mappings=None):
    targets = [{"datasource": DS, "expr": e, "legendFormat": legend, "refId": chr(65 + i)}
               for i, (e, legend) in enumerate(exprs)]
    p = {
        "id": pid, "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }
    if mappings:
        p["fieldConfig"]["defaults"]["mappings"] = [
            {"type": "value", "options": {value: {"text": text, "index": i}
                                          for i, (value, text) in enumerate(mappings.items())}}]
    if kind == "state-timeline":
        p["options"] = {"showValue": "auto", "mergeValues": True, "rowHeight": 0.9,
                        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background", "graphMode": "none", "textMode": "auto"}
    return p


def dashboard(uid, title, description, rows, extra_vars=()):
    panels, y = [], 0
    for row in rows:
        x = 0
        for spec in row:
            w = spec.get("w", 24 // len(row))
            panels.append(panel(len(panels) + 1, spec["title"], spec["exprs"], x, y, spec.get("unit", "short"),
                                spec.get("kind", "timeseries"), w, spec.get("h", 8), spec.get("description", ""),
                                spec.get("mappings")))
            x += w
        y += max(s.get("h", 8) for s in row)
    templating = [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source",
                   "current": {}, "hide": 0}]
    for name, query in extra_vars:
        templating.append({"name": name, "type": "query", "datasource": DS, "query": {"query": query, "refId": "V"},
                           "definition": query, "includeAll": True, "multi": True, "allValue": ".*",
                           "current": {"text": "All", "value": "$__all"}, "refresh": 2, "hide": 0})
    return {
        "uid": uid, "title": title, "description": description, "tags": ["omni", "openclaw"],
        "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1, "timezone": "utc",
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "templating": {"list": templating}, "annotations": {"list": []}, "panels": panels,
    }


def write(name, board):
    # DASHBOARDS_OUT: write elsewhere (tests/tests/dashboards.rs checks the committed JSON is fresh).
    out = os.environ.get("DASHBOARDS_OUT", HERE)
    with open(os.path.join(out, name), "w") as f:
        json.dump(board, f, indent=2, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    import panels  # noqa: E402  (panels.py beside this file holds the metric-specific rows)
    for name, board in panels.boards(dashboard).items():
        write(name, board)
        print(f"wrote {name} ({len(board['panels'])} panels)")
