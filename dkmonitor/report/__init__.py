"""`dkmonitor report`: a static, self-contained HTML report of the stored history.

data.py reads, forecast.py fits, charts.py draws (matplotlib, inline SVG),
render.py writes the pages (Jinja2). Only data.py and forecast.py work
without the ``report`` extra; the command imports the rest lazily.
"""
