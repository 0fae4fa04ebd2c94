"""Plotly figures for the app: rendering only (the numbers come from `amber2.pipeline` and `amber2.weights`,
the names and colours of the heads from `amber2.heads`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import plotly.graph_objects as go

from amber2.heads import TABLE, get_head

if TYPE_CHECKING:  # type hints only: charts render, they never run the pipeline
    from amber2.pipeline import Analysis
    from amber2.weights import WeightCurve


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


def distribution_figure(analysis: Analysis, style: ChartStyle = DEFAULT_STYLE,
                        before: Analysis | None = None) -> go.Figure:
    """One grouped bar chart: the classes on x, one bar per head (audio, text, fused) for each class.

    `before`: the reading of Whisper's own words, when the visitor has edited the transcript; its words and
    fused bars are drawn as empty outlines over the new ones (same place), so the two readings compare."""
    fig = go.Figure()
    for head in TABLE:
        fig.add_trace(go.Bar(
            x=list(analysis.classes), y=_plain(getattr(analysis, head.field)), name=head.short,
            offsetgroup=head.field, marker_color=style.colors[head.field],
            hovertemplate=f"{head.label}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
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
                 p_text: np.ndarray | None = None) -> go.Figure:
    """Eq. 1 drawn: each class's vote count and the share y_c = n_c / N it becomes; with `p_audio` and
    `p_text`, the two expert heads' distributions beside it (what Eq. 5 compares with y).

    `distribution` None (no vote at all): empty axes that say so."""
    counts = [float(c) for c in counts]
    if distribution is None:
        return placeholder_figure(classes, "No votes: give at least one class a vote", style)
    fig = go.Figure(go.Bar(
        x=list(classes), y=_plain(distribution), marker_color=style.votes_color,
        name=f"y = votes / N  (N = {sum(counts):g})",
        text=[f"{int(c)} vote{'s' if c != 1 else ''}" if c == int(c) else f"{c:g} votes" for c in counts],
        textposition="outside", customdata=counts,
        hovertemplate="%{x}: %{customdata:g} of N votes = %{y:.1%}<extra></extra>"))
    experts = [(get_head("A"), p_audio), (get_head("T"), p_text)]
    for head, p in experts:
        if p is not None:
            fig.add_trace(go.Bar(x=list(classes), y=_plain(p), name=f"p_{head.key} ({head.short.lower()} head)",
                                 marker_color=style.colors[head.field],
                                 hovertemplate=f"p_{head.key}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
    # N is in the legend (always shown), not in a title that a phone's wrapped legend would cover.
    return _layout(fig, style, showlegend=True, barmode="group", margin={"t": 72},
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
