"""Report templates (jinja2 HTML and CSS), shipped in the wheel as ``qaggstats.templates``."""
