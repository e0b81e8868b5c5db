"""A griffe extension (used by mkdocs.yml) that reads regtune's docstring habits as Google-style
sections, so that the API reference shows every item and the strict build warns only about
real problems:

- ``Example:`` / ``Example::`` headings become ``Examples:`` (griffe's name for the section
  that renders ``>>>`` lines as code);
- an argument line that documents several names at once (``low, high: finite bounds``) becomes
  one line per name, each with the shared description, and an argument's description may go on
  over lines indented like its name;
- a ``Raises:`` item may name several exceptions (``TypeError / ValueError: ...``) and may go
  on over lines indented like itself: the names get their colon and the lines that go on are
  indented under their item; a ``Raises:`` heading followed by prose instead of items is kept
  as a paragraph.

- a description that starts with ">" (``lr: >= 0``) is escaped, not a Markdown block quote;
- reST that Markdown would show raw: roles (``:func:`x```, ``:math:`...```) become code spans,
  a ``.. math::`` directive leaves its indented formula as a code block, and a paragraph's
  closing ``::`` (a literal block follows) becomes ``:``.

An optimizer class is made at import from its rule (``regtune.optim._engine.optimizer_class``):
``Name(params, <the rule's arguments>, *, <the engine's _EXTRAS>)``, and the rule's docstring is
the optimizer's. Reading the source, griffe sees only the rule's ``__init__``; this extension
gives each rule class in ``regtune.optim.rules`` the optimizer's signature, with the extras read
from ``_EXTRAS`` in the engine's source, so the reference shows what a user calls.

The source is not changed: only griffe's copy of it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SECTION = re.compile(r"^(\s*)([A-Z][A-Za-z ]*):\s*$")
_EXAMPLE = re.compile(r"^(\s*)Example::?\s*$")
_EXC = r"[A-Z]\w*(?:Error|Exception|Interrupt|Warning|Exit)"
_RAISES_ITEM = re.compile(rf"^({_EXC}(?:\s*(?:/|,|or|and)\s*{_EXC})*)\s*(?::\s*|\s+|$)(.*)$")
_PARAM = re.compile(r"^\**\w+(?:\s*,\s*\w+)*\s*(?:\([^)]*\))?\s*:")
_MULTI_PARAM = re.compile(r"^(\w+(?:\s*,\s*\w+)+)\s*:\s*(.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


_ROLE = re.compile(r":(?:func|meth|class|mod|data|attr|obj|exc|math|const|ref|py:\w+):`~?([^`]+)`")


_ITEM_GT = re.compile(r"^(\s*[\w*]+(?:\s*,\s*\w+)*\s*(?:\([^)]*\))?\s*:\s*)>(?!>>)")
_LINE_GT = re.compile(r"^(\s*)>(?!>>)")


def _rest(line: str) -> str:
    """One line's reST roles, directives and literal-block markers in Markdown; a description or
    a line that starts with ">" (">= 0") is not a Markdown block quote."""
    line = _ROLE.sub(lambda m: f"`{m.group(1)}`", line)
    line = _LINE_GT.sub(lambda m: m.group(1) + "\\>", _ITEM_GT.sub(lambda m: m.group(1) + "\\>", line))
    if line.strip() == ".. math::":
        return ""
    if line.rstrip().endswith("::") and line.strip() != "::":
        return line.rstrip()[:-1]
    return line


def normalize(text: str) -> str:
    """The docstring ``text`` rewritten as described in this module's docstring."""
    lines = [_rest(line) if not _EXAMPLE.match(line) else line for line in text.split("\n")]
    out: list[str] = []
    section, base = None, 0
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _EXAMPLE.match(line)
        if m:
            out.append(f"{m.group(1)}Examples:")
            # "Example::" is followed by a blank line in the reST habit: the section starts at once.
            while i + 1 < len(lines) and not lines[i + 1].strip():
                i += 1
            section, base = "examples", _indent(line)
            i += 1
            continue
        m = _SECTION.match(line)
        if m and (section is None or _indent(line) <= base):
            section, base = m.group(2).lower(), _indent(line)
            out.append(line)
            i += 1
            continue
        if section is not None and line.strip() and _indent(line) <= base:
            section = None  # text after the section, at its heading's indentation
        if section in ("args", "arguments", "parameters", "params", "keyword args") and line.strip():
            item_indent = _indent(line)
            # the item's continuation: deeper lines, and lines at its own indentation that do
            # not start another item
            rest = []
            while (
                i + 1 < len(lines)
                and lines[i + 1].strip()
                and (_indent(lines[i + 1]) > item_indent
                     or (_indent(lines[i + 1]) == item_indent and not _PARAM.match(lines[i + 1].strip())))
            ):
                i += 1
                rest.append(" " * (item_indent + 4) + lines[i].strip())
            m = _MULTI_PARAM.match(line.strip())
            names = [n.strip() for n in m.group(1).split(",")] if m else [None]
            for name in names:
                out.append(f"{' ' * item_indent}{name}: {m.group(2)}" if m else line)
                out.extend(rest)
            i += 1
            continue
        if section in ("raises", "exceptions") and line.strip():
            m = _RAISES_ITEM.match(line.strip())
            if not m and _SECTION.match(out[-1]):
                # prose instead of items ("Raises: as dropout."): one paragraph, no section
                out[-1] = f"{out[-1].rstrip()} {line.strip()}"
                section = None
                i += 1
                continue
            if m:
                item_indent = _indent(line)
                out.append(f"{' ' * item_indent}{m.group(1)}: {m.group(2)}".rstrip())
                # lines that go on at the item's own indentation are its continuation
                while (
                    i + 1 < len(lines)
                    and lines[i + 1].strip()
                    and _indent(lines[i + 1]) >= item_indent
                    and not _RAISES_ITEM.match(lines[i + 1].strip())
                ):
                    i += 1
                    out.append(" " * (item_indent + 4) + lines[i].strip())
                i += 1
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


_EXTRA = re.compile(r'inspect\.Parameter\("(\w+)",\s*inspect\.Parameter\.KEYWORD_ONLY,\s*default=([^,]+),\s*annotation="([^"]*)"\)')


def _optimizer_signatures(pkg: griffe.Module) -> None:
    """Each rule class of regtune.optim.rules gets its optimizer's ``__init__`` parameters."""
    try:
        engine, rules = pkg["optim._engine"], pkg["optim.rules"]
    except KeyError:
        return
    source = engine.filepath.read_text() if not isinstance(engine.filepath, list) else ""
    block = source.split("_EXTRAS = [", 1)[1].split("\n]", 1)[0] if "_EXTRAS = [" in source else ""
    extras = _EXTRA.findall(block)
    if not extras:
        raise RuntimeError("docs/griffe_regtune.py: found no _EXTRAS in regtune/optim/_engine.py")
    for module in rules.modules.values():
        for cls in module.classes.values():
            init = cls.members.get("__init__")
            if not any(str(b).split(".")[-1] == "Rule" for b in cls.bases) or init is None:
                continue
            own = [p for p in init.parameters if p.name != "self"]
            names = {p.name for p in own}
            params = griffe.Parameters(
                griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword),
                griffe.Parameter("params", annotation="Sequence[np.ndarray]",
                                 kind=griffe.ParameterKind.positional_or_keyword),
                *own,
                *(griffe.Parameter(name, annotation=annotation, kind=griffe.ParameterKind.keyword_only,
                                   default=default.strip())
                  for name, default, annotation in extras if name not in names),
            )  # fmt: skip
            init.parameters = params


class RegtuneDocstrings(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = normalize(obj.docstring.value)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name == "regtune":
            _optimizer_signatures(pkg)
