"""Markdown to HTML for reports and the registry: CommonMark plus tables, raw HTML disabled
(a ``<script>`` in a report is shown as text, never run), links checked by markdown-it
(no ``javascript:``), and relative links and images pointed at the UI's file routes."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def render_markdown(text: str, link: Callable[[str], str] | None = None) -> str:
    """HTML of ``text``; ``link`` maps each relative link or image source to its URL."""
    md = _parser()
    tokens = md.parse(text)
    if link is not None:
        _rewrite(tokens, link)
    html: str = md.renderer.render(tokens, md.options, {})
    return html


def _rewrite(tokens: list[Token], link: Callable[[str], str]) -> None:
    for token in tokens:
        if token.children:
            _rewrite(token.children, link)
        attr = "src" if token.type == "image" else "href" if token.type == "link_open" else None
        if attr is None:
            continue
        value = str(token.attrs.get(attr, ""))
        parts = urlsplit(value)
        if value and not parts.scheme and not parts.netloc and not value.startswith(("/", "#")):
            token.attrs[attr] = link(parts.path) + (f"#{parts.fragment}" if parts.fragment else "")


def relative_link(root: str, directory: str, *, kind: str = "files") -> Callable[[str], str]:
    """A ``link`` for ``render_markdown``: a path relative to ``directory`` (under results
    root ``root``) as the UI's URL; one that climbs out of the root points nowhere."""

    def link(target: str) -> str:
        joined = posixpath.normpath(posixpath.join(directory, target))
        if joined.startswith("..") or joined.startswith("/"):
            return "#outside-the-results-root"
        joined = "" if joined == "." else joined
        return f"/{kind}/{quote(root)}/{quote(joined)}"

    return link
