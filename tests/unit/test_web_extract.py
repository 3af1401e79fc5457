"""Turning bodies into text: trafilatura for HTML, JSON pretty-printing, charsets, binary refusal."""

from __future__ import annotations

import json

import pytest
from agentd_web.extract import extract, kind_from_type, sniff

from agentd import ToolError

ARTICLE = """<!DOCTYPE html><html><head><title>Owls hunt at night | Bird News</title></head><body>
<nav><a href="/">Home</a> <a href="/shop">Shop our store</a> Subscribe to the newsletter</nav>
<div class="cookies">We use cookies. Accept all cookies to continue.</div>
<article><h1>Owls hunt at night</h1>
<p>Barn owls locate mice in complete darkness by listening; their facial disc funnels sound to the ears.</p>
<p>A study of forty owls found that they strike within two degrees of the target on the first attempt.</p>
</article>
<footer>Copyright 2026 Bird News. Privacy policy. Terms of use.</footer></body></html>"""


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("text/html; charset=utf-8", "html"),
        ("application/xhtml+xml", "html"),
        ("application/json", "json"),
        ("application/ld+json", "json"),
        ("text/plain", "text"),
        ("text/csv", "text"),
        ("application/rss+xml", "text"),
        ("image/png", "binary"),
        ("application/pdf", "binary"),
        ("application/zip", "binary"),
        ("application/octet-stream", None),
        ("", None),
    ],
)
def test_kind_from_content_type(content_type, kind):
    assert kind_from_type(content_type) == kind


def test_html_main_text_without_boilerplate():
    page = extract(ARTICLE.encode(), "text/html; charset=utf-8", "https://birds.example/owls")
    assert page.kind == "html" and page.title.startswith("Owls hunt at night")
    assert "facial disc funnels sound" in page.text and "two degrees of the target" in page.text
    for boilerplate in ("Shop our store", "Accept all cookies", "Privacy policy"):
        assert boilerplate not in page.text


def test_html_charset_from_header_and_undeclared():
    latin = (
        "<html><body><article><p>Crème brûlée is a dessert of rich custard topped with hard caramel, "
        "served cold in small ramekins at the end of a long dinner.</p></article></body></html>"
    )
    page = extract(latin.encode("latin-1"), "text/html; charset=ISO-8859-1", "http://x.example/")
    assert "Crème brûlée" in page.text
    sniffed = extract(latin.encode("utf-8"), "", "http://x.example/")  # no type: sniffed as HTML
    assert sniffed.kind == "html" and "Crème brûlée" in sniffed.text


def test_tiny_pages_fall_back_to_their_visible_text():
    page = extract(b"<html><body><p>Just one line.</p></body></html>", "text/html", "http://x.example/")
    assert page.text == "Just one line."


def test_json_is_pretty_printed_and_broken_json_kept_as_text():
    page = extract(b'{"b": [1, 2], "a": "\xc3\xa9"}', "application/json", "http://x.example/")
    assert page.kind == "json" and json.loads(page.text) == {"b": [1, 2], "a": "é"} and "\n" in page.text
    broken = extract(b'{"unterminated": ', "application/json", "http://x.example/")
    assert broken.kind == "text" and broken.text == '{"unterminated": '


def test_plain_text_and_undeclared_text():
    assert extract(b"line one\nline two", "text/plain", "u").text == "line one\nline two"
    assert extract("grüße".encode("cp1252"), "", "u").text  # detection copes with non-UTF-8 text


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png"),
        (b"%PDF-1.7\n%\xe2\xe3", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "text/html"),  # a PNG with a lying header
        (b"PK\x03\x04" + b"\x00" * 40, ""),
        (b"abc\x00\x01\x02" * 20, "application/octet-stream"),
    ],
)
def test_binaries_are_refused(body, content_type):
    with pytest.raises(ToolError, match="binary content.*HTML, plain text and JSON only"):
        extract(body, content_type, "http://x.example/file")


def test_sniffing():
    assert sniff(b"  <!DOCTYPE html><html>") == "html"
    assert sniff(b'[{"a": 1}]') == "json"
    assert sniff("héllo wörld".encode()[:7]) == "text"  # a character cut at the end of the sample is fine
    assert sniff(b"\xff\xfe\x00\x00garbage\x00") == "binary"
