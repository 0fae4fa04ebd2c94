"""The AmbER² app's own rooms: what the page says and draws, on top of the `amber2` library.

`app.py` (beside this folder, where Hugging Face Spaces looks for it) wires Gradio components to these
modules; each is tested without a browser. The library (`amber2`) and the trainer (`train`) never import
this package.

- `views`: what each component shows, when (the Analyze tab's states)
- `explain`: the readings in words (agreement, ambiguity, what Whisper heard)
- `charts`: the figures (bars of the three heads, the timeline, the Learn tab's curves)
- `trust_curves`: Eq. 5's expert weights as kappa varies (the Learn tab, the Vote tab's reveal)
- `model_panel`: the Model tab (what the checkpoint is and how it was measured)
- `examples`: the bundled example clips and what the shipped model reads in them
- `rooms`, `classroom`, `vote_tab`: Vote together (rooms and votes in SQLite, rounds, the tab itself)
"""
