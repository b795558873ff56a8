"""Run reports: report.json rendered as Markdown and HTML with plots."""

from deepshrink.report.render import render_report

__all__ = ["render_report"]
