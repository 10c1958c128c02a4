"""Rows of equal keys as an aligned text table: what the command line, suite reports and benchmarks print."""

from __future__ import annotations


def format_table(rows: list[dict]) -> str:
    """Rows of equal keys as an aligned text table."""
    if not rows:
        return ""
    keys = list(rows[0])
    cells = [[str(k) for k in keys]] + [[_fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    """A float to three decimals, anything else as str."""
    return f"{v:.3f}" if isinstance(v, float) else str(v)
