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


DEFAULT_STYLE = ChartStyle()


def _plain(values) -> list[float]:
    # Plain lists, not numpy arrays: plotly would ship arrays as base64 typed arrays ("bdata"), which older
    # plotly.js builds and API clients reading the figure JSON do not decode.
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def _layout(fig: go.Figure, style: ChartStyle, **kw) -> go.Figure:
    fig.update_layout(
        template=style.template, height=style.height, font={"size": style.font_size},
        margin={"l": 48, "r": 12, "t": 56, "b": 48},
        # A legend above the plot keeps the full width for the bars on a phone.
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0,
                "font": {"size": style.legend_font_size}},
        hoverlabel={"font_size": style.font_size}, **kw)
    return fig


def distribution_figure(analysis: Analysis, style: ChartStyle = DEFAULT_STYLE) -> go.Figure:
    """One grouped bar chart: the classes on x, one bar per head (audio, text, fused) for each class."""
    fig = go.Figure()
    for head in TABLE:
        fig.add_trace(go.Bar(
            x=list(analysis.classes), y=_plain(getattr(analysis, head.field)), name=head.short,
            marker_color=style.colors[head.field],
            hovertemplate=f"{head.label}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
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


def votes_figure(classes: Sequence[str], counts: Sequence[float], distribution: np.ndarray,
                 style: ChartStyle = DEFAULT_STYLE) -> go.Figure:
    """Eq. 1 drawn: each class's vote count and the share y_c = n_c / N it becomes."""
    counts = [float(c) for c in counts]
    fig = go.Figure(go.Bar(
        x=list(classes), y=_plain(distribution), marker_color="#666666", name="y (soft label)",
        text=[f"{int(c)} vote{'s' if c != 1 else ''}" if c == int(c) else f"{c:g} votes" for c in counts],
        textposition="outside", customdata=counts,
        hovertemplate="%{x}: %{customdata:g} of N votes = %{y:.1%}<extra></extra>"))
    return _layout(fig, style, showlegend=False, title={"text": f"y = votes / N  (N = {sum(counts):g})"},
                   yaxis={"title": "share of raters", "range": [0, 1.1], "tickformat": ".0%"})


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
