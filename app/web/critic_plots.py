"""Geometry of the critic page's two plots, drawn by the server as inline SVG.

No chart library and no JavaScript: the numbers are a few hundred points at most, so Python
turns them into coordinates in a fixed ``viewBox`` and ``templates/_critic_plots.html`` writes
the markup. The SVGs scale with their container (the viewBox keeps the proportions), which is
what makes them readable from a 360 px phone to a wide screen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

UNIT_TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class Frame:
    """The viewBox and the plot area inside it (margins leave room for tick labels)."""

    width: int = 400
    height: int = 270
    left: int = 52
    right: int = 14
    top: int = 26
    bottom: int = 46

    @property
    def x0(self) -> float:
        return float(self.left)

    @property
    def x1(self) -> float:
        return float(self.width - self.right)

    @property
    def y0(self) -> float:
        """The bottom of the plot area (SVG y grows downwards)."""
        return float(self.height - self.bottom)

    @property
    def y1(self) -> float:
        return float(self.top)

    def x(self, value: float, high: float = 1.0) -> float:
        share = min(max(value / high, 0.0), 1.0) if high else 0.0
        return round(self.x0 + share * (self.x1 - self.x0), 2)

    def y(self, value: float, high: float = 1.0) -> float:
        share = min(max(value / high, 0.0), 1.0) if high else 0.0
        return round(self.y0 - share * (self.y0 - self.y1), 2)


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class Mark:
    """One rec_X operating point on the PR curve."""

    x: float
    y: float
    label: str
    title: str
    chosen: bool
    threshold: float | None = None
    anchor: str = "middle"  # the label's text-anchor: "end"/"start" at the plot's edges
    label_dy: float = -9.0  # the label's baseline from the point: above it, or below (> 0)


@dataclass(frozen=True)
class Pick:
    """A point of the PR curve a click can choose: its threshold goes to the preview."""

    x: float
    y: float
    threshold: float
    title: str


@dataclass
class PRPlot:
    frame: Frame
    path: str
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    marks: list[Mark]
    picks: list[Pick] = field(default_factory=list)
    # The precision of keeping everything (the share of acceptable held-out labels): a
    # critic no better than chance lies on this line.
    baseline_y: float | None = None
    baseline_label: str = ""
    # Where its label goes (see baseline_label_spot): clear of the curve and the points.
    baseline_label_x: float = 0.0
    baseline_label_y: float = 0.0


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    low: float
    high: float


@dataclass
class HistogramPlot:
    frame: Frame
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    total: int
    threshold_x: float | None = None
    threshold_label: str = ""
    notes: list[str] = field(default_factory=list)


def range_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round tick values inside [low, high]: 0, 0.2, ... on the whole unit range."""
    span = high - low
    if span <= 0:
        return [low]
    step = next(
        (s for s in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5) if span / s <= most - 1),
        1.0,
    )
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9:
        ticks.append(round(value, 6))
        value += step
    return ticks


def range_label(value: float, span: float) -> str:
    """As many decimals as the range needs (0.52, 0.536), no trailing zeros."""
    digits = 2 if span >= 0.1 else 3 if span >= 0.01 else 4
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"


def unit_label(value: float) -> str:
    """0, 0.2, ..., 1 (no trailing zeros: tick labels must stay short at 360 px)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def compact_count(value: float) -> str:
    """12, 1.5k, 2M: count ticks short enough for the left margin."""
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def nice_step(span: float, ticks: int = 4) -> float:
    """A 1-2-5 step (at least 1: the axis counts triples) that divides ``span`` into about
    ``ticks`` intervals."""
    if span <= ticks:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    factor = next(f for f in (1, 2, 5, 10) if f * magnitude >= raw)
    return float(factor * magnitude)


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _picks(frame: Frame, curve: dict[str, Any], most: int = 60) -> list[Pick]:
    """Up to ``most`` evenly spaced curve points with their thresholds (clickable)."""
    thresholds = curve.get("threshold") or []
    recall = curve.get("recall") or []
    precision = curve.get("precision") or []
    if not (len(thresholds) == len(recall) == len(precision)) or not thresholds:
        return []
    stride = max(1, math.ceil(len(thresholds) / most))
    picks = []
    for i in range(0, len(thresholds), stride):
        t, r, p = _finite(thresholds[i]), _finite(recall[i]), _finite(precision[i])
        if t is None or r is None or p is None:
            continue
        title = f"threshold {t:.3f}: precision {p:.3f}, recall {r:.3f} (click to preview)"
        picks.append(Pick(frame.x(r), frame.y(p), t, title))
    return picks


def pr_plot(metrics: dict[str, Any], chosen_threshold: float | None = None) -> PRPlot | None:
    """The held-out precision-recall curve with the rec_X operating points, or None when the
    version has no curve (training, failed, or trained before curves were stored)."""
    curve = metrics.get("pr_curve") or {}
    recall = curve.get("recall") or []
    precision = curve.get("precision") or []
    if not recall or len(recall) != len(precision):
        return None
    frame = Frame()
    pairs = [
        (r, p)
        for r, p in zip(recall, precision, strict=True)
        if _finite(r) is not None and _finite(p) is not None
    ]
    if not pairs:
        return None
    # Thresholds are stored in decreasing order, so recall only grows along the list; a
    # stable sort by recall keeps that order and guards against hand-made data.
    pairs.sort(key=lambda pair: pair[0])
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{frame.x(r)},{frame.y(p)}" for i, (r, p) in enumerate(pairs)
    )
    marks = []
    for point in metrics.get("precision_at_recall") or []:
        r, p = _finite(point.get("recall")), _finite(point.get("precision"))
        target, threshold = _finite(point.get("target_recall")), _finite(point.get("threshold"))
        if r is None or p is None or target is None:
            continue
        chosen = (
            chosen_threshold is not None
            and threshold is not None
            and abs(threshold - chosen_threshold) < 1e-9
        )
        title = (
            f"rec_{unit_label(target)}: threshold {threshold:.3f}, precision {p:.3f}, "
            f"recall {r:.3f}"
            if threshold is not None
            else f"rec_{unit_label(target)}"
        )
        marks.append(Mark(frame.x(r), frame.y(p), unit_label(target), title, chosen, threshold))
    marks = shared_labels(marks, frame)
    plot = PRPlot(
        frame=frame,
        path=path,
        x_ticks=[Tick(frame.x(v), unit_label(v)) for v in UNIT_TICKS],
        y_ticks=[Tick(frame.y(v), unit_label(v)) for v in UNIT_TICKS],
        marks=marks,
        picks=_picks(frame, curve),
    )
    n, acceptable = _finite(metrics.get("n")), _finite(metrics.get("acceptable"))
    if n and acceptable is not None:
        rate = acceptable / n
        plot.baseline_y = frame.y(rate)
        plot.baseline_label = f"all kept: {rate:.2f}"
        curve_points = [(frame.x(r), frame.y(p)) for r, p in pairs]
        spot = baseline_label_spot(frame, plot.baseline_y, plot.baseline_label, marks, curve_points)
        plot.baseline_label_x, plot.baseline_label_y = spot
    return plot


# The baseline's label is 10.5 px text (13 on a narrow screen): this wide per character at most.
BASELINE_CHAR = 7.5


def baseline_label_spot(
    frame: Frame,
    baseline_y: float,
    label: str,
    marks: list[Mark],
    curve: list[tuple[float, float]],
) -> tuple[float, float]:
    """Where "all kept: 0.80" is written (its left end and text baseline). At high recall every
    curve comes down to this line, so its right end, the obvious place, is where the
    operating points crowd: a weak critic's rec_0.8 point sat on the label. The first of
    spots along the line, below it from the right end leftwards and then above it, that
    touches no point, point label or stretch of the curve wins; if all do, the one that
    touches least. The text starts at the returned x."""
    width = BASELINE_CHAR * len(label)
    lefts = []  # from the right end (the usual place) leftwards, in steps of 20 units
    left = frame.x1 - 2 - width
    while left >= frame.x0 + 4:
        lefts.append(left)
        left -= 20
    lefts.append(frame.x0 + 4)
    candidates = [(x, baseline_y + dy) for dy in (13, -5) for x in lefts]
    obstacles: list[tuple[float, float, float, float]] = []  # left, top, right, bottom
    for mark in marks:
        obstacles.append((mark.x - 7, mark.y - 7, mark.x + 7, mark.y + 7))
        if mark.label:
            left, right = _extent(mark)
            text_y = mark.y + mark.label_dy
            obstacles.append((left, text_y - LABEL_HEIGHT, right, text_y + 2))
    dots = list(_along(curve, step=3.0))

    def touches(left: float, y: float) -> int:
        box = (left, y - LABEL_HEIGHT, left + width, y + 3)
        hits = sum(
            box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in obstacles
        )
        return hits + sum(box[0] <= dx <= box[2] and box[1] <= dy <= box[3] for dx, dy in dots)

    scored = [(touches(*spot), order, spot) for order, spot in enumerate(candidates)]
    return min(scored)[2]


def _along(points: list[tuple[float, float]], step: float) -> Iterator[tuple[float, float]]:
    """Points every ``step`` units along a polyline (its corners included)."""
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        pieces = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        for i in range(pieces):
            yield x0 + (x1 - x0) * i / pieces, y0 + (y1 - y0) * i / pieces
    if points:
        yield points[-1]


# Operating points closer than this (in viewBox units) would print their labels over each
# other: a label is up to three characters of 11 px text.
LABEL_GAP_X, LABEL_GAP_Y = 18.0, 12.0
# The widest a label's character gets: the narrow-screen style writes them at 14 units.
LABEL_CHAR, LABEL_HEIGHT = 8.5, 14.0
ABOVE, BELOW = -9.0, 21.0


def shared_labels(marks: list[Mark], frame: Frame) -> list[Mark]:
    """Operating points that land on (nearly) the same spot share one label ("0.6, 0.7", or
    "0.5–0.9" for three or more), written once: with few held-out labels several rec_X
    often pick the same threshold, and their labels were printed on top of each other. Each
    keeps its own circle and tooltip; the chosen one is drawn last, so a coincident point
    never hides it. Labels at the plot's left or right edge are anchored inwards so they stay
    inside the picture."""
    groups: list[list[Mark]] = []
    for mark in marks:
        first = groups[-1][0] if groups else None
        if (
            first is not None
            and abs(mark.x - first.x) < LABEL_GAP_X
            and abs(mark.y - first.y) < LABEL_GAP_Y
        ):
            groups[-1].append(mark)
        else:
            groups.append([mark])
    out: list[Mark] = []
    for group in groups:
        names = [mark.label for mark in group]
        label = names[0] if len(names) == 1 else (
            ", ".join(names) if len(names) == 2 else f"{names[0]}–{names[-1]}"
        )  # fmt: skip
        group = sorted(group, key=lambda mark: mark.chosen)  # stable: the chosen on top
        last = group[-1]
        anchor = "middle"
        half = LABEL_CHAR * len(label) / 2
        if last.x + half > frame.width:
            anchor = "end"
        elif last.x - half < 0:
            anchor = "start"
        out += [replace(mark, label="") for mark in group[:-1]]
        out.append(replace(last, label=label, anchor=anchor))
    return _clear_of_each_other(out)


def _extent(mark: Mark) -> tuple[float, float]:
    width = LABEL_CHAR * len(mark.label)
    if mark.anchor == "end":
        return mark.x - width, mark.x
    if mark.anchor == "start":
        return mark.x, mark.x + width
    return mark.x - width / 2, mark.x + width / 2


def _clear_of_each_other(marks: list[Mark]) -> list[Mark]:
    """A label that would run into one already placed (two spots close along the curve, with
    long shared labels) goes below its point instead of above."""
    placed: list[tuple[float, float, float]] = []  # left, right, baseline
    out = []
    for mark in marks:
        if not mark.label:
            out.append(mark)
            continue
        left, right = _extent(mark)
        for dy in (ABOVE, BELOW):
            baseline = mark.y + dy
            clashes = (
                left < other_right and other_left < right and abs(baseline - other) < LABEL_HEIGHT
                for other_left, other_right, other in placed
            )
            if not any(clashes):
                break
        placed.append((left, right, baseline))
        out.append(replace(mark, label_dy=dy))
    return out


def histogram_plot(
    counts: list[int], threshold: float | None = None, low: float = 0.0, high: float = 1.0
) -> HistogramPlot:
    """Bars for equal bins over [low, high] (the scores' own range, see
    ``app.critic.histogram``), the y axis in 1-2-5 steps, and the threshold as a vertical
    line (at the edge, and said so, when it lies outside the range)."""
    frame = Frame()
    bins = len(counts) or 1
    span = (high - low) or 1.0
    top = max(counts, default=0)
    step = nice_step(top)
    y_max = max(step, math.ceil(top / step) * step) if top else 1.0
    slot = (frame.x1 - frame.x0) / bins
    gap = min(1.5, slot * 0.15)
    bars = []
    for i, count in enumerate(counts):
        y = frame.y(count, y_max)
        bars.append(
            Bar(
                x=round(frame.x0 + i * slot + gap / 2, 2),
                y=y,
                width=round(slot - gap, 2),
                height=round(frame.y0 - y, 2),
                count=count,
                low=low + i * span / bins,
                high=low + (i + 1) * span / bins,
            )
        )
    ticks = int(round(y_max / step)) if top else 0
    y_ticks = [Tick(frame.y(k * step, y_max), compact_count(k * step)) for k in range(ticks + 1)]
    plot = HistogramPlot(
        frame=frame,
        bars=bars,
        x_ticks=[
            Tick(frame.x(v - low, span), range_label(v, span)) for v in range_ticks(low, high)
        ],
        y_ticks=y_ticks,
        total=sum(counts),
    )
    value = _finite(threshold)
    if value is not None:
        plot.threshold_x = frame.x(value - low, span)
        plot.threshold_label = f"threshold {value:.3f}"
        if value < low:
            plot.threshold_label += " (below every score)"
        elif value > high:
            plot.threshold_label += " (above every score)"
    return plot
