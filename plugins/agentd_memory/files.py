"""Reading files for memory: which files a path names, their text (PDF pages too), and overlapping chunks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

_SUFFIXES = (  # read as text even when the first bytes look odd
    ".txt .md .markdown .rst .py .pyi .toml .yaml .yml .json .cfg .ini .csv .tsv .html .htm .xml .js .ts .tsx "
    ".jsx .css .sh .bash .c .h .cc .cpp .hpp .rs .go .java .kt .rb .php .sql .tex .org .log .j2"
)
TEXT_SUFFIXES = frozenset(_SUFFIXES.split())
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache"}


def expand_paths(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files named, and files under folders named (skipping hidden folders and build clutter), absolute."""
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                parts = child.relative_to(path).parts
                if child.is_file() and not any(p in SKIP_DIRS or p.startswith(".") for p in parts):
                    yield child
        else:
            yield path  # a missing file is reported as skipped by ingest


GUNZIP_MAX_BYTES = 64 * 1024 * 1024  # a .gz that inflates beyond this is refused (a decompression bomb)


def read_document(path: Path, raw: bytes) -> list[tuple[int, str]]:
    """(page, text) pairs: page 0 for plain text, 1.. for PDF pages. ValueError for what is not text.

    ``NAME.gz`` is decompressed and read as NAME would be (``notes.md.gz``, ``app.log.gz``, ``paper.pdf.gz``).
    """
    if path.suffix.lower() == ".gz":
        return read_document(path.with_suffix(""), _gunzip(raw))
    if path.suffix.lower() == ".pdf":
        import io

        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        try:
            reader = PdfReader(io.BytesIO(raw))
            return [(i, page.extract_text() or "") for i, page in enumerate(reader.pages, 1)]
        except (PdfReadError, ValueError, KeyError) as exc:
            raise ValueError(f"unreadable PDF ({exc})") from None
    if path.suffix.lower() not in TEXT_SUFFIXES and b"\0" in raw[:8192]:
        raise ValueError("binary file")
    try:
        return [(0, raw.decode("utf-8"))]
    except UnicodeDecodeError:
        if path.suffix.lower() in TEXT_SUFFIXES:
            return [(0, raw.decode("utf-8", errors="replace"))]
        raise ValueError("not UTF-8 text") from None


def _gunzip(raw: bytes) -> bytes:
    import gzip
    import io
    import zlib

    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as handle:
            data = handle.read(GUNZIP_MAX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"not a readable gzip file ({exc})") from None
    if len(data) > GUNZIP_MAX_BYTES:
        raise ValueError(f"decompresses to more than {GUNZIP_MAX_BYTES // 2**20} MiB")
    return data


def chunk_text(text: str, size: int = 800, overlap: int = 120) -> list[tuple[str, int, int]]:
    """Split text into chunks of about ``size`` characters at line (preferably paragraph) boundaries, each
    starting with the last ``overlap`` characters of the one before. Returns (text, first line, last line)."""
    piece_max = max(overlap, size // 4, 40)
    pieces: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        while len(line) > piece_max:  # long lines (prose paragraphs, minified code) break at a space
            cut = line.rfind(" ", piece_max // 2, piece_max) + 1 or piece_max
            pieces.append((number, line[:cut]))
            line = line[cut:]
        pieces.append((number, line))
    chunks: list[tuple[str, int, int]] = []
    current: list[tuple[int, str]] = []
    length = 0  # characters in current
    fresh = False  # whether current holds anything beyond the overlap carried from the previous chunk

    def roll() -> list[tuple[int, str]]:
        """Emit the current chunk; return its trailing pieces that fit in the overlap."""
        body = "".join(p for _, p in current).strip()
        if body:
            chunks.append((body, current[0][0], current[-1][0]))
        kept: list[tuple[int, str]] = []
        for item in reversed(current):
            if sum(len(p) for _, p in kept) + len(item[1]) > overlap:
                break
            kept.insert(0, item)
        return kept

    for number, piece in pieces:
        if fresh and length + len(piece) > size:
            current, fresh = roll(), False
            length = sum(len(p) for _, p in current)
        current.append((number, piece))
        length += len(piece)
        fresh = fresh or bool(piece.strip())
        if fresh and not piece.strip() and length >= size * 0.6:
            current, fresh = roll(), False  # a paragraph ended late enough in the chunk: cut there
            length = sum(len(p) for _, p in current)
    if fresh:
        roll()
    return chunks
