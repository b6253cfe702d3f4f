"""One self-contained HTML report: headings, plain-text paragraphs, PNG figures embedded as
base64 data URIs, and simple tables. No external resources (no scripts, fonts, links to
images), minimal inline CSS, written atomically; the same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tnd.io import atomic_write_text
from ._common import PNG_SIGNATURE, VizInputError

__all__ = ["html_report"]

SECTION_KEYS = ("heading", "text", "images", "table")
CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #666; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
""".strip()


def _paragraphs(text: str) -> str:
    parts = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>\n" for p in parts)


def _cell(value: Any) -> tuple[str, bool]:
    """The escaped cell text and whether it is a number (right-aligned)."""
    if value is None:
        return "", False
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)), False
    if isinstance(value, numbers.Integral):
        return str(int(value)), True
    if isinstance(value, numbers.Real):
        value = float(value)
        return (f"{value:.4g}" if math.isfinite(value) else str(value)), True
    return html.escape(str(value)), False


def _table(rows: Sequence[dict[str, Any]], where: str) -> str:
    if not isinstance(rows, (list, tuple)):
        raise VizInputError(f"{where} must be a list of dict rows, got {type(rows).__name__}")
    columns: list[str] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise VizInputError(f"{where}[{i}] must be a dict (column -> value), got {type(row).__name__}")
        for k in row:
            if str(k) not in columns:
                columns.append(str(k))
    if not rows:
        return "<p><em>(empty table)</em></p>\n"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        strrow = {str(k): v for k, v in row.items()}
        for c in columns:
            text, num = _cell(strrow.get(c))
            cells.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"


def _image(path: Any, where: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise VizInputError(f"{where} must be a path to a PNG file, got {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{where}: PNG file not found: {p}")
    data = p.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{where}: {p} is not a PNG file")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    name = html.escape(p.name)
    return f'<figure><img src="{uri}" alt="{name}"><figcaption>{name}</figcaption></figure>\n'


def html_report(path: str | os.PathLike, title: str, sections: Sequence[dict[str, Any]], *,
                intro: str | None = None) -> Path:
    """Write one self-contained HTML report at ``path`` and return the path.

    Args:
        path: where to write (parent directories are created; the write is atomic).
        title: the page title and top heading.
        sections: dicts with ``"heading"`` (str), and optionally ``"text"`` (plain text,
            escaped; blank lines separate paragraphs), ``"images"`` (paths of PNG files,
            embedded as ``data:image/png;base64,`` URIs) and ``"table"`` (a list of dict
            rows; the columns are the union of the rows' keys in first-seen order; floats
            are shown with 4 significant digits).
        intro: optional plain text under the title.
    """
    if not isinstance(title, str):
        raise VizInputError(f"title must be a str, got {type(title).__name__}")
    if intro is not None and not isinstance(intro, str):
        raise ValueError(f"intro must be a str or None, got {type(intro).__name__}")
    if isinstance(sections, (str, bytes, dict)) or not isinstance(sections, (list, tuple)):
        raise VizInputError(f"sections must be a list of dicts, got {type(sections).__name__}")
    parts = ["<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
             f"<title>{html.escape(title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n",
             f"<h1>{html.escape(title)}</h1>\n"]
    if intro:
        parts.append(_paragraphs(intro))
    for i, sec in enumerate(sections):
        where = f"sections[{i}]"
        if not isinstance(sec, dict):
            raise VizInputError(f"{where} must be a dict, got {type(sec).__name__}")
        unknown = sorted(set(map(str, sec)) - set(SECTION_KEYS))
        if unknown:
            raise ValueError(f"{where} has unknown keys {unknown}; allowed: {list(SECTION_KEYS)}")
        heading = sec.get("heading")
        if not isinstance(heading, str):
            raise VizInputError(f"{where}['heading'] must be a str, got {type(heading).__name__}")
        text = sec.get("text") or ""
        if not isinstance(text, str):
            raise VizInputError(f"{where}['text'] must be a str, got {type(text).__name__}")
        images = sec.get("images") or []
        if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, (list, tuple)):
            raise VizInputError(f"{where}['images'] must be a list of PNG paths, got {type(images).__name__}")
        parts.append(f"<section>\n<h2>{html.escape(heading)}</h2>\n")
        parts.append(_paragraphs(text))
        for j, img in enumerate(images):
            parts.append(_image(img, f"{where}['images'][{j}]"))
        if sec.get("table") is not None:
            parts.append(_table(sec["table"], f"{where}['table']"))
        parts.append("</section>\n")
    parts.append("</body>\n</html>\n")
    path = Path(path)
    atomic_write_text(path, "".join(parts))
    return path
