"""What the DVC stages (``stages/``) share and no library code needs: params loading and checking
(``params``, ``schema``, ``presets``), the console and its watchdog (``console``, ``watchdog``), putting the
last good outputs back after a failure (``last_good``), the train stage's live metrics (``live_metrics``)
and the end-of-demo summary (``summary``)."""
