"""Views: plotly pages and figures made from a study's results (the report, its figures, the LR
curves). They read results; they never train or change a study."""
