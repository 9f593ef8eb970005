"""A playbook as a list of text blocks, each with its source line and heading path.

markdown-it-py (CommonMark + GFM tables) does the parsing; its tokens carry `.map` line ranges,
so every block knows its 1-based first line even after fenced code, which is skipped (code is
commands, not prose) without disturbing the line numbers of what follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token

_PARSER = MarkdownIt("commonmark").enable("table")

BlockKind = Literal["heading", "paragraph", "list_item", "checklist_item", "table_row"]


@dataclass(frozen=True)
class Block:
    """One unit of prose: a heading, paragraph, (check)list item or table row.

    `text` keeps the source's line breaks ("\\n") so an offset maps back to its line;
    `cells` pairs each table cell with its column header; `lead` is the text of the list item
    or paragraph this one hangs under ("Check Key Metrics (last 24 hours):").
    """

    kind: BlockKind
    line: int
    section: tuple[str, ...]
    text: str
    cells: tuple[tuple[str, str], ...] = ()
    lead: str = ""

    def line_at(self, offset: int) -> int:
        return self.line + self.text.count("\n", 0, offset)


def _inline_text(token: Token) -> str:
    """The plain text of an inline token: emphasis and links dropped, inline code kept."""
    parts: list[str] = []
    children = token.children or []
    for i, child in enumerate(children):
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            # A hard break, or a new line opening with a bold label ("**Duration**: ..."), ends the
            # sentence: `\r\n` marks that for the sentence splitter (line counting sees the `\n`).
            following = next((c for c in children[i + 1:] if c.type != "text" or c.content), None)
            label = following is not None and following.type == "strong_open"
            parts.append("\r\n" if child.type == "hardbreak" or label else "\n")
    return "".join(parts)


def blocks(source: str) -> list[Block]:
    """Every prose block of a Markdown document, in document order."""
    tokens = _PARSER.parse(source)
    out: list[Block] = []
    section: list[tuple[int, str]] = []  # (level, title)
    leads: list[str] = []  # text of the enclosing list items' first paragraphs
    item_first_para: list[bool] = []
    header: list[str] = []
    row: list[str] = []
    row_line = 0
    in_head = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        t = tok.type
        if t == "heading_open":
            level = int(tok.tag[1:])
            title = _inline_text(tokens[i + 1]).strip()
            section = [s for s in section if s[0] < level] + [(level, title)]
            path = tuple(s[1] for s in section)
            out.append(Block("heading", tok.map[0] + 1, path[:-1], title))
            i += 3
            continue
        path = tuple(s[1] for s in section)
        if t == "list_item_open":
            item_first_para.append(True)
            leads.append("")
        elif t == "list_item_close":
            item_first_para.pop()
            leads.pop()
        elif t == "paragraph_open":
            inline = tokens[i + 1]
            text = _inline_text(inline)
            kind = "paragraph"
            lead = next((x for x in reversed(leads[:-1] if item_first_para and item_first_para[-1] else leads) if x), "")
            if item_first_para and item_first_para[-1]:
                kind = "list_item"
                stripped = text.lstrip()
                if stripped[:3] in ("[ ]", "[x]", "[X]"):
                    kind, text = "checklist_item", " " * (len(text) - len(stripped) + 3) + stripped[3:]
                item_first_para[-1] = False
                leads[-1] = text.strip()
            out.append(Block(kind, tok.map[0] + 1, path, text, lead=lead))
            i += 3
            continue
        elif t == "thead_open":
            in_head, header = True, []
        elif t == "thead_close":
            in_head = False
        elif t == "tr_open":
            row, row_line = [], tok.map[0] + 1
        elif t in ("th_open", "td_open"):
            row.append(_inline_text(tokens[i + 1]).strip())
            i += 3
            continue
        elif t == "tr_close":
            if in_head:
                header = row
            else:
                cols = header + [""] * (len(row) - len(header))
                out.append(Block("table_row", row_line, path, " | ".join(row), cells=tuple(zip(cols, row))))
        # fence / code_block / html_block: not prose, skipped (their .map keeps later lines right)
        i += 1
    return out
