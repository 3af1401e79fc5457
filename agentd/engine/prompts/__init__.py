"""Prompt templates (Jinja2, StrictUndefined). Kept in files so they can be read and tuned on their own."""
