"""The results views' choices, in a module that imports nothing: the CLI reads them for its
argparse choices without importing pandas or matplotlib, and the views check against them."""

BY = ("task", "setting", "primitive")     # leaderboard rows x columns
FORMATS = ("md", "csv", "html", "json")   # leaderboard output
PLOT_KINDS = ("heatmap", "difficulty", "pareto", "search-history", "mqar", "state", "proxy")
