"""From a response body to readable text: HTML through trafilatura, JSON pretty-printed, text as is.

Binaries (images, PDFs, archives, anything that sniffs as one) are refused with a ToolError.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass

from agentd import ToolError

HTML_TYPES = {"text/html", "application/xhtml+xml"}
TEXT_APP_TYPES = {
    "application/xml",
    "application/javascript",
    "application/x-yaml",
    "application/yaml",
    "application/toml",
}
# Magic numbers of common binary formats, for bodies served with a missing or wrong Content-Type.
MAGIC = (
    b"%PDF-",
    b"\x89PNG",
    b"GIF87a",
    b"GIF89a",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"\x7fELF",
    b"OggS",
    b"7z\xbc\xaf",
    b"Rar!\x1a",
    b"wOFF",
    b"wOF2",
    b"\x00asm",
)


@dataclass
class Page:
    """Extracted content: its kind (html | json | text), title and text."""

    kind: str
    title: str
    text: str


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            name = value.strip().strip('"')
            try:
                return codecs.lookup(name).name
            except LookupError:
                return None
    return None


def kind_from_type(content_type: str) -> str | None:
    """html | json | text | binary from the Content-Type alone; None when it does not say."""
    mt = media_type(content_type)
    if not mt or mt in ("application/octet-stream", "binary/octet-stream"):
        return None
    if mt in HTML_TYPES:
        return "html"
    if mt in ("application/json", "text/json") or mt.endswith("+json"):
        return "json"
    if mt.startswith("text/") or mt in TEXT_APP_TYPES or mt.endswith("+xml"):
        return "text"
    return "binary"


def looks_binary(head: bytes) -> bool:
    """True for NUL bytes (outside UTF-16 BOMs) or a known binary magic number at the start."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    return head.startswith(MAGIC) or b"\x00" in head[:1024]


def sniff(head: bytes) -> str:
    """html | json | text | binary from the first bytes of a body whose type was not declared."""
    if looks_binary(head):
        return "binary"
    start = head.lstrip()[:64].lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    if start.startswith((b"{", b"[")):
        return "json"
    try:
        head[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is fine; invalid bytes earlier are not.
        if exc.start < len(head[:4096]) - 4:
            return "binary"
    return "text"


def refuse_binary(url: str, content_type: str, size: int | None = None) -> ToolError:
    what = media_type(content_type) or "unknown type"
    extent = f", {size} bytes" if size is not None else ""
    return ToolError(
        f"{url} is binary content ({what}{extent}); fetch_url reads HTML, plain text and JSON only, "
        "so look for an HTML or text version of this document"
    )


def extract(body: bytes, content_type: str, url: str) -> Page:
    """Readable text from a body; raises ToolError for binaries."""
    kind = kind_from_type(content_type)
    if kind is None:
        kind = sniff(body[:8192])
    elif kind != "binary" and looks_binary(body[:1024]):
        kind = "binary"  # a PNG served as text/html is still a PNG
    if kind == "binary":
        raise refuse_binary(url, content_type, len(body))
    if kind == "html":
        return _html(body, content_type, url)
    text = decode(body, content_type)
    if kind == "json":
        try:
            return Page("json", "", json.dumps(json.loads(text), indent=2, ensure_ascii=False))
        except json.JSONDecodeError:
            return Page("text", "", text)  # labelled JSON but is not: the raw text is still useful
    return Page("text", "", text)


def decode(body: bytes, content_type: str) -> str:
    """Decode with the declared charset, else UTF-8 (with a BOM check), else charset detection."""
    declared = charset(content_type)
    if declared:
        return body.decode(declared, errors="replace")
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(body).best()
        return str(best) if best is not None else body.decode("utf-8", errors="replace")


def _html(body: bytes, content_type: str, url: str) -> Page:
    import trafilatura  # heavy (lxml, justext): imported on first use only

    declared = charset(content_type)
    # Without a declared charset trafilatura detects the encoding itself (meta tags, byte statistics).
    source: str | bytes = body.decode(declared, errors="replace") if declared else body
    doc = trafilatura.bare_extraction(
        source, url=url, with_metadata=True, include_comments=False, include_tables=True
    )
    title = (getattr(doc, "title", None) or "") if doc is not None else ""
    text = (getattr(doc, "text", None) or "") if doc is not None else ""
    if not text.strip():
        # Pages too small or too odd for main-content extraction: fall back to all visible text.
        text = trafilatura.html2txt(source) or ""
    return Page("html", title.strip(), text.strip())
