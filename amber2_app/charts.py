"""Plotly figures for the app: rendering only (the numbers come from `amber2.pipeline` and `amber2_app.trust_curves`,
the names and colours of the heads from `amber2.heads`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np
import plotly.graph_objects as go

from amber2.heads import TABLE, get_head

if TYPE_CHECKING:  # type hints only: charts render, they never run the pipeline
    from amber2.pipeline import Analysis
    from amber2.timeline import Timeline
    from amber2_app.trust_curves import WeightCurve


def _head_colors() -> dict[str, str]:
    return {h.field: h.color for h in TABLE}


@dataclass(frozen=True)
class ChartStyle:
    """Look shared by every figure; a fixed height because gradio 6 does not size plotly figures itself."""

    colors: dict[str, str] = field(default_factory=_head_colors)  # Analysis field -> colour
    height: int = 400
    font_size: int = 14
    legend_font_size: int = 12  # the three legend entries fit on one line of a 390 px phone screen
    template: str = "plotly_white"
    tick_angles: tuple[int, ...] = (0, 30, 45)  # plotly tries these in turn when x labels would overlap
    before_name: str = "Whisper's words"  # outlines: the reading before the visitor edited the transcript
    before_color: str = "#222222"
    votes_color: str = "#666666"  # the raters' distribution y in the Learn tab


DEFAULT_STYLE = ChartStyle()


def _plain(values) -> list[float]:
    # Plain lists, not numpy arrays: plotly would ship arrays as base64 typed arrays ("bdata"), which older
    # plotly.js builds and API clients reading the figure JSON do not decode.
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def _layout(fig: go.Figure, style: ChartStyle, **kw) -> go.Figure:
    # x labels stay horizontal where they fit and tilt at most 45 degrees on a phone, never 90.
    xaxis = {"autotickangles": list(style.tick_angles), "automargin": True, **kw.pop("xaxis", {})}
    margin = {"l": 48, "r": 12, "t": 56, "b": 48, **kw.pop("margin", {})}
    fig.update_layout(
        template=style.template, height=style.height, font={"size": style.font_size},
        margin=margin,
        # A legend above the plot keeps the full width for the bars on a phone.
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0,
                "font": {"size": style.legend_font_size}},
        hoverlabel={"font_size": style.font_size}, xaxis=xaxis, **kw)
    return fig


FAINT_OPACITY = 0.25
NO_SPEECH_NOTE = "No speech heard: faint bars read the sound, not a speaker"


def distribution_figure(analysis: Analysis, style: ChartStyle = DEFAULT_STYLE,
                        before: Analysis | None = None) -> go.Figure:
    """One grouped bar chart: the classes on x, one bar per head (audio, text, fused) for each class.

    `before`: the reading of Whisper's own words, when the visitor has edited the transcript; its words and
    fused bars are drawn as empty outlines over the new ones (same place), so the two readings compare."""
    fig = go.Figure()
    # Bars that are no reading of a speaker are drawn faint: all of them when no speech was heard (they read
    # the sound), the words' when there are no words (uniform: the words tell nothing).
    faint = {h.field: not analysis.speech_heard or (h.field == "text" and not analysis.has_words) for h in TABLE}
    for head in TABLE:
        fig.add_trace(go.Bar(
            x=list(analysis.classes), y=_plain(getattr(analysis, head.field)), name=head.short,
            offsetgroup=head.field, marker_color=style.colors[head.field],
            opacity=FAINT_OPACITY if faint[head.field] else 1.0,
            hovertemplate=f"{head.label}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
    if not analysis.speech_heard:
        fig.add_annotation(text=NO_SPEECH_NOTE, x=0.5, y=0.95, xref="paper", yref="paper", showarrow=False,
                           font={"size": style.font_size + 1})
    if before is not None:
        for i, head in enumerate(h for h in TABLE if h.field != "audio"):  # the voice does not change
            fig.add_trace(go.Bar(
                x=list(before.classes), y=_plain(getattr(before, head.field)), offsetgroup=head.field,
                name=style.before_name, legendgroup="before", showlegend=i == 0,
                marker={"color": "rgba(0,0,0,0)", "line": {"color": style.before_color, "width": 2}},
                hovertemplate=f"{head.label}, {style.before_name}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
    return _layout(fig, style, barmode="group", bargap=0.2, bargroupgap=0.05,
                   yaxis={"title": "probability", "range": [0, 1], "tickformat": ".0%"},
                   xaxis={"title": None})


def placeholder_figure(classes: Sequence[str], message: str, style: ChartStyle = DEFAULT_STYLE) -> go.Figure:
    """Empty axes with the classes and a short message, shown before the first analysis."""
    fig = go.Figure()
    for head in TABLE:
        fig.add_trace(go.Bar(x=list(classes), y=[0.0] * len(classes), name=head.short,
                             marker_color=style.colors[head.field], hoverinfo="skip"))
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": style.font_size + 2})
    return _layout(fig, style, barmode="group", yaxis={"range": [0, 1], "tickformat": ".0%"})


def votes_figure(classes: Sequence[str], counts: Sequence[float], distribution: np.ndarray | None,
                 style: ChartStyle = DEFAULT_STYLE, p_audio: np.ndarray | None = None,
                 p_text: np.ndarray | None = None, p_fused: np.ndarray | None = None) -> go.Figure:
    """Eq. 1 drawn: each class's vote count and the share y_c = n_c / N it becomes; with `p_audio` and
    `p_text`, the two expert heads' distributions beside it (what Eq. 5 compares with y); with `p_fused`, the
    fused head's too (Vote together's reveal).

    `distribution` None (no vote at all): empty axes that say so."""
    counts = [float(c) for c in counts]
    if distribution is None:
        return placeholder_figure(classes, "No votes: give at least one class a vote", style)
    # Beside the model's bars a class's group is narrow: the count alone, at a fixed size (plotly would
    # shrink "3 votes" to fit the bar until it cannot be read); the legend says what the numbers are.
    beside = any(p is not None for p in (p_audio, p_text, p_fused))
    fig = go.Figure(go.Bar(
        x=list(classes), y=_plain(distribution), marker_color=style.votes_color,
        name=f"y = votes / N  (N = {sum(counts):g})" + ("; numbers: votes" if beside else ""),
        text=[f"{c:g}" if beside else f"{int(c)} vote{'s' if c != 1 else ''}" if c == int(c) else f"{c:g} votes"
              for c in counts],
        textposition="outside", textfont={"size": style.font_size}, cliponaxis=False, customdata=counts,
        hovertemplate="%{x}: %{customdata:g} of N votes = %{y:.1%}<extra></extra>"))
    experts = [(get_head("A"), p_audio), (get_head("T"), p_text), (get_head("AT"), p_fused)]
    for head, p in experts:
        if p is not None:
            fig.add_trace(go.Bar(x=list(classes), y=_plain(p), name=f"p_{head.key} ({head.short.lower()} head)",
                                 marker_color=style.colors[head.field],
                                 hovertemplate=f"p_{head.key}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
    # N is in the legend (always shown), not in a title that a phone's wrapped legend would cover.
    return _layout(fig, style, showlegend=True, barmode="group", margin={"t": 72},
                   uniformtext={"minsize": style.font_size, "mode": "show"},
                   yaxis={"title": "share", "range": [0, 1.15], "tickformat": ".0%"})


def expert_weight_figure(curve: WeightCurve, kappa: float, style: ChartStyle = DEFAULT_STYLE) -> go.Figure:
    """Eq. 5 drawn: u_A and u_T as kappa grows, with a marker at the chosen kappa."""
    fig = go.Figure()
    u_a, u_t = curve.at(kappa)
    for head, u, now in ((get_head("A"), curve.u_audio, u_a), (get_head("T"), curve.u_text, u_t)):
        name = f"u_{head.key} ({head.short.lower()} expert)"
        fig.add_trace(go.Scatter(x=_plain(curve.kappas), y=_plain(u), mode="lines", name=name,
                                 line={"color": style.colors[head.field], "width": 3},
                                 hovertemplate=f"{name}<br>κ = %{{x:.2f}}: %{{y:.3f}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[kappa], y=[now], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker={"color": style.colors[head.field], "size": 12,
                                         "line": {"color": "black", "width": 1}}))
    fig.add_vline(x=kappa, line_dash="dot", line_color="#888888")
    return _layout(fig, style, xaxis={"title": "κ (sharpness)", "range": [0, float(curve.kappas.max())]},
                   yaxis={"title": "expert weight u_m", "range": [0, 1]})


# Classes by colour on the timeline (the heads have their lanes there); a class not listed takes the next
# colour of FALLBACK_CLASS_COLORS.
CLASS_COLORS = {"neutral": "#9E9E9E", "calm": "#B0BEC5", "happy": "#F0C808", "sad": "#3A6EA5", "angry": "#D1495B",
                "fear": "#7B4FA0", "disgust": "#5B8C2A", "surprise": "#F08A24", "contempt": "#8D6E63"}
FALLBACK_CLASS_COLORS = ("#17BECF", "#E377C2", "#BCBD22", "#8C564B", "#1F77B4")
NO_READING_COLOR = "#E6E6E6"     # a lane where the head gives no reading (no speech, no words)
CONFLICT_COLOR = "#B00020"


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    """A fixed colour per class (CLASS_COLORS, else the fallback colours in turn)."""
    extra = iter(FALLBACK_CLASS_COLORS * (1 + len(classes) // len(FALLBACK_CLASS_COLORS)))
    return {c: CLASS_COLORS.get(c.lower()) or next(extra) for c in classes}


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"


def timeline_figure(timeline: "Timeline", disagree: Sequence[bool] = (), style: ChartStyle = DEFAULT_STYLE,
                    selected: int | None = None) -> go.Figure:
    """Emotion over time: one lane per head (voice, words, fused), each segment a bar as wide as it lasts,
    stacked by class (classes by colour); grey where a head gives no reading (no speech, no words). A red
    marker above the lanes where `disagree[i]` (voice and words tell different emotions); `selected`
    outlined. Every bar carries its segment's index as customdata (the app reads a click from it)."""
    from plotly.subplots import make_subplots

    segs = timeline.segments
    classes = timeline.classes
    colors = class_colors(classes)
    fig = make_subplots(rows=len(TABLE), cols=1, shared_xaxes=True, vertical_spacing=0.05)
    x = [0.5 * (s.start + s.end) for s in segs]
    width = [s.end - s.start for s in segs]
    index = list(range(len(segs)))
    when = [f"{_clock(s.start)}-{_clock(s.end)}" for s in segs]
    words = [(s.analysis.transcript[:60] + ("…" if len(s.analysis.transcript) > 60 else "")) or "(no words)"
             for s in segs]
    for row, head in enumerate(TABLE, start=1):
        def reads(s) -> bool:
            return s.speech if head.field != "text" else s.analysis.has_words

        for k, c in enumerate(classes):
            y = [float(getattr(s.analysis, head.field)[k]) if reads(s) else 0.0 for s in segs]
            fig.add_trace(go.Bar(
                x=x, y=y, width=width, name=c, legendgroup=c, showlegend=row == 1, marker_color=colors[c],
                marker_line_width=0, customdata=list(zip(index, when, words)),
                hovertemplate=(f"{head.short} %{{customdata[1]}}<br>{c}: %{{y:.0%}}"
                               "<br>%{customdata[2]}<extra></extra>")),
                row=row, col=1)
        fig.add_trace(go.Bar(
            x=x, y=[0.0 if reads(s) else 1.0 for s in segs], width=width, name="no reading",
            legendgroup="none", showlegend=row == 1, marker_color=NO_READING_COLOR, marker_line_width=0,
            customdata=list(zip(index, when, words)),
            hovertemplate=f"{head.short} %{{customdata[1]}}: no reading<extra></extra>"), row=row, col=1)
    marks = [i for i, d in enumerate(disagree) if d]
    if marks:
        fig.add_trace(go.Scatter(
            x=[x[i] for i in marks], y=[1.12] * len(marks), mode="markers", name="voice ≠ words",
            marker={"symbol": "triangle-down", "size": 12, "color": CONFLICT_COLOR},
            customdata=[(i, when[i], words[i]) for i in marks],
            hovertemplate="voice and words disagree %{customdata[1]}<br>%{customdata[2]}<extra></extra>"),
            row=1, col=1)
    for i in marks:  # the disagreement also framed in the voice and words lanes
        for row in (1, 2):
            fig.add_shape(type="rect", x0=segs[i].start, x1=segs[i].end, y0=0, y1=1, row=row, col=1,
                          line={"color": CONFLICT_COLOR, "width": 2}, fillcolor="rgba(0,0,0,0)")
    if selected is not None and 0 <= selected < len(segs):
        fig.add_vrect(x0=segs[selected].start, x1=segs[selected].end, line={"color": "black", "width": 3},
                      fillcolor="rgba(0,0,0,0)")
    ticks = _time_ticks(timeline.duration)
    for row in range(1, len(TABLE) + 1):
        fig.update_yaxes(range=[0, 1.2 if row == 1 else 1], tickvals=[0, 0.5, 1], tickformat=".0%", row=row, col=1,
                         title={"text": TABLE[row - 1].short, "font": {"color": TABLE[row - 1].color}})
        fig.update_xaxes(range=[0, timeline.duration], tickvals=ticks, ticktext=[_clock(t) for t in ticks],
                         row=row, col=1)
    fig.update_xaxes(title="time (min:s); click a segment to read it", row=len(TABLE), col=1)
    return _layout(fig, replace(style, height=560), barmode="stack", bargap=0, margin={"t": 80},
                   clickmode="event", hovermode="closest")


def _time_ticks(duration: float, target: int = 8) -> list[float]:
    """About `target` round tick positions (seconds) over [0, duration]."""
    step = next((s for s in (5, 10, 15, 30, 60, 120, 300) if duration / s <= target), 600)
    return [float(t) for t in np.arange(0, duration + 1e-9, step)]
