"""The page's fixed parts: the intro and the Learn tab's lessons, the CSS, and the two scripts that run in the
visitor's browser (a click on the timeline, a blocked microphone). `app.py` places them.
"""
from __future__ import annotations

INTRO = """# AmbER²: voice and words, side by side
Record or upload a short English clip. Whisper writes down the words; three heads of an AmbER² model give
an emotion **distribution** each: from the **voice** (audio), from the **words** (text) and from **both**
(fused). When voice and words tell different emotions, you will see it here."""

# On a phone the plotly toolbar would sit over the legend and the chart titles: hidden there (hover
# values and the chart itself are unaffected).
CSS = """.gradio-container {max-width: min(1100px, 100vw) !important; margin: auto; overflow-x: hidden;}
@media (max-width: 640px) {
  .js-plotly-plot .modebar-container {display: none !important;}
  [role="tablist"] button[role="tab"] {padding-left: 6px !important; padding-right: 6px !important;}
}
#segment-pick {display: none !important;}
/* Nothing may widen the page beyond the screen (.gradio-container above): on a phone, the progress overlay of
   a long recording once made it ~1000 px wide, and the plots drawn then kept it so. The table wraps. */
#segments, #segments-csv, #segments .table-wrap {max-width: 100%; min-width: 0; overflow-x: hidden;}
#segments table {table-layout: fixed; width: 100% !important; min-width: 0 !important;}
#segments th, #segments td {white-space: normal !important; overflow-wrap: anywhere;}
#mic-blocked {display: none;}
#mic-blocked.shown {display: block; border-left: 4px solid #d97706; padding: 4px 10px;
                    background: rgba(217, 119, 6, 0.12);}"""
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
LEARN_EQ1 = r"""### 1. Raters disagree: votes become a distribution (Eq. 1)
Several people label each clip. AmbER² keeps all their votes: $y_c = n_c / N$, the share of the $N$ raters
who chose class $c$. Set the votes below: they are made up for this lesson (no rater heard your clip).
The chart puts $y$ beside the two expert heads, $p_A$ (voice) and $p_T$ (words)."""

LEARN_EQ5 = r"""### 2. Experts are trusted by how close they are to the raters (Eq. 5)
The fused head (the *student*) learns from the raters **and** from the audio and text heads (the *experts*),
each weighted by $u_m = \frac{\exp(-\kappa D_m)}{\sum_{m'} \exp(-\kappa D_{m'})}$, with
$D_m = \mathrm{JS}(p_m \,\|\, y)$. At $\kappa = 0$ both experts count equally; the larger $\kappa$,
the more the expert closer to the raters' votes takes over.

**Voice vs words (MAI):** when the voice and the words tell different emotions, the fused student learns from
both expert heads at once, each weighted by how close it is to the raters, so it leans on the side that
agrees with people.

**On the Analyze page** there are no raters, so the fused bars put the fused head in their place: they show
the voice and words bars mixed by $u_m$ with $D_m = \mathrm{JS}(p_m \,\|\, p_{AT})$. The fused head decides
whom to trust; the bars hardly ever name an emotion that neither the voice nor the words show."""


# gr.Plot has no click event: a click on a timeline bar writes "segment index:time" into the hidden
# #segment-pick box, whose .change event reads that segment (Handlers.segment_from_plot).
TIMELINE_CLICK_JS = """() => {
  const pick = (ev) => {
    const p = ev && ev.points && ev.points[0];
    const box = document.querySelector('#segment-pick textarea, #segment-pick input');
    if (!p || !p.customdata || !box) return;
    box.value = `${p.customdata[0]}:${Date.now()}`;
    box.dispatchEvent(new Event('input', {bubbles: true}));
  };
  setInterval(() => {
    const plot = document.querySelector('#timeline .js-plotly-plot');
    if (plot && plot._ev && !plot._ev.listeners('plotly_click').includes(pick)) plot.on('plotly_click', pick);
  }, 400);
}"""


# Record does nothing visible when the browser refuses the microphone: the refusal reveals #mic-blocked
# (views.MIC_BLOCKED). getUserMedia is wrapped, so a refusal at the moment Record is pressed is seen too; the
# Permissions API reports a block made before the page loaded; no mediaDevices at all means plain HTTP.
MIC_WATCH_JS = """() => {
  const show = (on) => {
    const el = document.getElementById('mic-blocked');
    if (el) el.classList.toggle('shown', on);
  };
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) { show(true); return; }
  const ask = md.getUserMedia.bind(md);
  md.getUserMedia = (constraints) => ask(constraints).then(
    (stream) => { show(false); return stream; },
    (err) => { show(true); throw err; });
  if (navigator.permissions && navigator.permissions.query) {
    navigator.permissions.query({name: 'microphone'}).then((status) => {
      show(status.state === 'denied');
      status.onchange = () => show(status.state === 'denied');
    }).catch(() => {});
  }
}"""


# A segment clicked below the timeline is read in the chart at the top: bring the chart into view (the page
# stays where it was when the chart is already on screen).
SHOW_READING_JS = """() => {
  const el = document.getElementById('reading');
  if (!el) return;
  const box = el.getBoundingClientRect();
  if (box.top < 0 || box.bottom > window.innerHeight) el.scrollIntoView({block: 'start'});
}"""
