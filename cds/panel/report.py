"""report.html: one self-contained page (inline CSS and JS, SVG charts drawn here, nothing
fetched) with the worklist, charts and a section per patient for the top of the worklist."""

from __future__ import annotations

import os
import re
from html import escape
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from cds.panel.columns import MME_BIN, MME_BINS
from cds.vocabulary import FAMILIES, SEVERITIES

SEVERITY_COLORS = {"critical": "#7f1d1d", "high": "#dc2626", "moderate": "#f59e0b",
                   "low": "#0ea5e9", "info": "#94a3b8"}
FAMILY_LABELS = {"interaction": "Interactions", "duplication": "Duplication",
                 "burden": "Burden", "mme": "MME",
                 "renal": "Renal", "hepatic": "Hepatic", "escalation": "Escalation",
                 "data-quality": "Data quality"}


def anchor(patient_id: str) -> str:
    return "p-" + re.sub(r"[^A-Za-z0-9_.-]", "_", patient_id)


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 or float(v).is_integer() else f"{v:,.1f}"


def hbar_chart(items: list[tuple[str, float]], *, color: str | list[str] = "#2563eb",
               width: int = 560, row: int = 22, label_width: int = 250) -> Markup:
    """Horizontal bars, labelled, biggest first as given."""
    if not items:
        return Markup('<p class="muted">None.</p>')
    top = max(v for _, v in items) or 1
    h = row * len(items) + 8
    bar_w = width - label_width - 60
    out = [f'<svg class="chart" viewBox="0 0 {width} {h}" width="100%" role="img" '
           f'preserveAspectRatio="xMinYMin meet" aria-label="bar chart">']
    for i, (label, v) in enumerate(items):
        y = 4 + i * row
        c = color[i] if isinstance(color, list) else color
        w = max(1.0, bar_w * v / top)
        short = label if len(label) <= 38 else label[:37] + "…"
        out.append(f'<text x="{label_width - 6}" y="{y + row * 0.68:.1f}" text-anchor="end" '
                   f'class="lbl"><title>{escape(label)}</title>{escape(short)}</text>'
                   f'<rect x="{label_width}" y="{y + 3}" width="{w:.1f}" height="{row - 7}" '
                   f'rx="3" fill="{c}"><title>{escape(label)}: {_fmt(v)}</title></rect>'
                   f'<text x="{label_width + w + 5:.1f}" y="{y + row * 0.68:.1f}" '
                   f'class="val">{_fmt(v)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def histogram(bins: list[tuple[str, float]], *, color: str = "#2563eb", width: int = 560,
              height: int = 220, lines: list[tuple[float, str, str]] = (),  # type: ignore[assignment]
              x_title: str = "", y_title: str = "patients") -> Markup:
    """Vertical bars; `lines` are (bin position, label, color) markers such as 50/90 MME."""
    if not bins or not any(v for _, v in bins):
        return Markup('<p class="muted">No data.</p>')
    left, right, top_pad, bottom = 52, 12, 16, 42
    pw, ph = width - left - right, height - top_pad - bottom
    top = max(v for _, v in bins) or 1
    bw = pw / len(bins)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="histogram">']
    for frac in (0, 0.5, 1):
        y = top_pad + ph * (1 - frac)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'class="grid"/><text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'class="val">{_fmt(top * frac)}</text>')
    dense = len(bins) > 12
    for i, (label, v) in enumerate(bins):
        x = left + i * bw
        bh = ph * v / top
        out.append(f'<rect x="{x + 1:.1f}" y="{top_pad + ph - bh:.1f}" width="{max(1.0, bw - 2):.1f}"'
                   f' height="{bh:.1f}" fill="{color}"><title>{escape(label)}: {_fmt(v)}'
                   f'</title></rect>')
        if not dense or not label[0].isdigit() or int(label.rstrip("+")) % 50 == 0 < int(
                label.rstrip("+")) or (i == 0 and label == "0"):
            out.append(f'<text x="{x + bw / 2:.1f}" y="{height - bottom + 16}" '
                       f'text-anchor="middle" class="val">{escape(label)}</text>')
    for pos, label, c in lines:
        x = left + pos * bw
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top_pad - 4}" y2="{top_pad + ph}" '
                   f'stroke="{c}" stroke-width="2" stroke-dasharray="5 3"/>'
                   f'<text x="{x + 4:.1f}" y="{top_pad + 8}" class="mark" fill="{c}">'
                   f'{escape(label)}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" '
               f'class="axis">{escape(x_title)}</text>'
               f'<text x="12" y="{top_pad + ph / 2:.1f}" text-anchor="middle" class="axis" '
               f'transform="rotate(-90 12 {top_pad + ph / 2:.1f})">{escape(y_title)}</text></svg>')
    return Markup("".join(out))


def _charts(info: dict[str, Any], stats: dict[str, Any]) -> dict[str, Markup]:
    rules = sorted(stats["rules"].items(), key=lambda kv: (-kv[1], kv[0]))
    sev = [(s, stats["severities"].get(s, 0)) for s in SEVERITIES if stats["severities"].get(s)]
    mme_bins = [("none", stats.get("mme_zero", 0))]
    for i, v in enumerate(stats["mme_hist"]):
        lo = i * MME_BIN
        mme_bins.append((f"{lo}+" if i == MME_BINS else str(lo), v))
    # bin 0 is "no opioid"; bin i+1 covers [10i, 10i+10): 50 MME sits at position 6
    lines = [(1 + 50 / MME_BIN, "50 MME", "#f59e0b"), (1 + 90 / MME_BIN, "90 MME", "#dc2626")]
    burden = [(k if k != "10" else "10+", stats["burden_hist"].get(k, 0))
              for k in map(str, range(11))]
    while len(burden) > 2 and burden[-1][1] == 0:
        burden.pop()
    acb = [(k if k != "10" else "10+", stats["acb_hist"].get(k, 0)) for k in map(str, range(11))]
    while len(acb) > 2 and acb[-1][1] == 0:
        acb.pop()
    return {
        "rules": hbar_chart(rules[:25]),
        "severity": hbar_chart(sev, color=[SEVERITY_COLORS[s] for s, _ in sev], label_width=110),
        "mme": histogram(mme_bins, lines=lines, x_title="total MME/day (bars of 10; first bar: no opioid)",
                         color="#7c3aed"),
        "burden": histogram(burden, x_title="alerts per patient", color="#0f766e"),
        "acb": histogram(acb, x_title="anticholinergic burden score (ACB)", color="#b45309"),
    }


def write_report(path: Path, info: dict[str, Any], stats: dict[str, Any],
                 top: list[dict[str, Any]], details: dict[str, dict[str, Any]],
                 top_n: int) -> None:
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["anchor"] = anchor
    env.filters["num"] = _fmt
    families = [f for f in FAMILIES if stats["families"].get(f)] or ["mme"]
    html = env.get_template("report.html.j2").render(
        info=info, stats=stats, top=top, details=details, top_n=top_n, charts=_charts(info, stats),
        families=families, family_labels=FAMILY_LABELS, severity_colors=SEVERITY_COLORS)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
