"""Parts of dugong's manual that are drawn from the code when the manual is built.

Directives:

``.. state-diagram:: send`` (or ``conn``)
    One side of the engine's state machine as a text diagram, drawn from
    `dugong.engine.TRANSITIONS`: a column per state, a row per change.
``.. transition-table::``
    Every named transition of `dugong.engine.States`: what it means (its
    docstring) and what it changes on each side (from the same table).
``.. module-map::``
    The modules of ``dugong/`` with their line counts (counted as ``wc -l``
    counts them). Its content says what each module owns, one ``name.py:
    text`` line per module; a module it leaves out is described by the first
    line of its docstring, and a line about a module that does not exist
    fails the build.

Cross-references: in the pages of `dugong.engine`, a name of the package
(```StateError```) resolves to the package's object (`dugong.StateError`).

Docstrings: napoleon reads the first line of an attribute's docstring as
``type: text`` when it has a colon, so "None when ..., else a true value: the
bytes left" would become a type. The one-paragraph docstrings of
`dugong.engine`'s attributes, data and properties are kept as written.
"""

from __future__ import annotations

import ast
import enum
import inspect
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from dugong import engine

PACKAGE_DIR = Path(engine.__file__).resolve().parent
SIDES = {"send": engine.SendState, "conn": engine.ConnState}


def render_diagram(side: str) -> str:
    """One side of `TRANSITIONS` as text: a column per state, a row per change.

    An arrow runs from the state before to the state after; where one
    transition takes several states to the same one, a single arrow starts at
    the farthest of them and ``┼`` marks the others.
    """
    states: list[enum.Enum] = list(SIDES[side])
    order = {state: i for i, state in enumerate(states)}
    arrows: dict[tuple[str, enum.Enum, bool], list[enum.Enum]] = {}
    for name, which, before, after in engine.TRANSITIONS:
        if which == side:
            rightwards = order[before] < order[after]
            arrows.setdefault((name, after, rightwards), []).append(before)
    label = max(len(name) for name, _, _ in arrows) + 2
    column = max(len(state.name) for state in states) + 3
    centre = {state: label + column // 2 + i * column for i, state in enumerate(states)}
    width = label + column * len(states)

    def lifelines() -> list[str]:
        row = [" "] * width
        for x in centre.values():
            row[x] = "│"
        return row

    header = [" "] * width
    for state, x in centre.items():
        start = x - (len(state.name) - 1) // 2
        header[start : start + len(state.name)] = state.name
    lines = [header, lifelines()]
    previous = None
    for (name, after, rightwards), befores in arrows.items():
        if previous is not None and name != previous:
            lines.append(lifelines())
        row = lifelines()
        if name != previous:
            row[: len(name)] = name
        y = centre[after]
        xs = sorted(centre[before] for before in befores)
        if rightwards:
            x = xs[0]
            row[x:y] = "├" + "─" * (y - x - 2) + ">"
        else:
            x = xs[-1]
            row[y + 1 : x + 1] = "<" + "─" * (x - y - 2) + "┤"
        for other in xs:
            if other != x:
                row[other] = "┼"
        lines.append(row)
        previous = name
    lines.append(lifelines())
    return "\n".join("".join(row).rstrip() for row in lines)


def changes(name: str, side: str) -> str:
    """What transition *name* changes on *side*, in words: "A, B → C; ..." or "—"."""
    rows = [
        (before.name, after.name)
        for n, which, before, after in engine.TRANSITIONS
        if n == name and which == side
    ]
    if not rows:
        return "—"
    befores = list(dict.fromkeys(b for b, _ in rows))
    if len(befores) == 1:
        afters = [a for _, a in rows]
        ends = afters[0] if len(afters) == 1 else f"{', '.join(afters[:-1])} or {afters[-1]}"
        return f"{befores[0]} → {ends}"
    by_after: dict[str, list[str]] = {}
    for before, after in rows:
        by_after.setdefault(after, []).append(before)
    return "; ".join(f"{', '.join(bs)} → {a}" for a, bs in by_after.items())


def transition_rows() -> list[tuple[str, str, str, str]]:
    """(transition, meaning, send side, connection side) for each named transition."""
    names = list(dict.fromkeys(name for name, *_ in engine.TRANSITIONS))
    return [
        (
            name,
            " ".join(inspect.getdoc(getattr(engine.States, name)).split()),
            changes(name, "send"),
            changes(name, "conn"),
        )
        for name in names
    ]


def line_count(path: Path) -> int:
    """Lines of *path* as ``wc -l`` counts them: its newline characters."""
    return path.read_bytes().count(b"\n")


class _RstDirective(SphinxDirective):
    """A directive that writes reStructuredText and has it parsed in place."""

    def parse(self, text: str) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(
            StringList(text.splitlines(), self.get_source_info()[0]),
            self.content_offset,
            container,
        )
        return container.children


class StateDiagram(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        side = self.arguments[0]
        if side not in SIDES:
            raise self.error(f"state-diagram: give one of {', '.join(SIDES)}, not {side!r}")
        text = render_diagram(side)
        return [nodes.literal_block(text, text)]


class TransitionTable(_RstDirective):
    def run(self) -> list[nodes.Node]:
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 18 46 22 14",
            "",
            "   * - transition",
            "     - when",
            "     - send side",
            "     - connection",
        ]
        for name, meaning, send, conn in transition_rows():
            lines += [
                f"   * - `~dugong.engine.States.{name}`",
                f"     - {meaning}",
                f"     - {send}",
                f"     - {conn}",
            ]
        return self.parse("\n".join(lines))


class ModuleMap(_RstDirective):
    has_content = True

    def run(self) -> list[nodes.Node]:
        owns: dict[str, str] = {}
        for line in self.content:
            name, colon, text = line.partition(":")
            if not colon or not text.strip():
                raise self.error(f"module-map: not a 'name.py: what it owns' line: {line!r}")
            owns[name.strip()] = text.strip()
        present = sorted(path.name for path in PACKAGE_DIR.glob("*.py"))
        missing = set(owns) - set(present)
        if missing:
            raise self.error(f"module-map: no such module in dugong/: {sorted(missing)}")
        for name in present:
            if name not in owns:  # a new module: its docstring speaks for it
                doc = ast.get_docstring(ast.parse((PACKAGE_DIR / name).read_text())) or ""
                owns[name] = doc.partition("\n")[0] or "(no docstring)"
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 20 8 72",
            "",
            "   * - module",
            "     - lines",
            "     - what it owns",
        ]
        total = 0
        for name, text in owns.items():
            count = line_count(PACKAGE_DIR / name)
            total += count
            lines += [f"   * - ``{name}``", f"     - {count}", f"     - {text}"]
        lines += ["   * - (all)", f"     - {total}", "     -"]
        return self.parse("\n".join(lines))


def resolve_package_names(
    app: Sphinx, env: Any, node: nodes.Element, contnode: nodes.Element
) -> nodes.Element | None:
    """In `dugong.engine`'s pages, let ```StateError``` find `dugong.StateError`."""
    if node.get("refdomain") != "py" or node.get("py:module") != "dugong.engine":
        return None
    target = node["reftarget"]
    if target.startswith("dugong."):
        return None
    domain: Any = env.get_domain("py")
    result: nodes.Element | None = domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], "dugong." + target, node, contnode
    )
    return result


_ATTRIBUTE_KINDS = ("attribute", "data", "property")
_as_written: dict[str, list[str]] = {}


def _keep_as_written(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Before napoleon: remember an engine attribute's docstring."""
    if what in _ATTRIBUTE_KINDS and name.startswith("dugong.engine."):
        _as_written[name] = list(lines)


def _restore_as_written(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """After napoleon: put the remembered docstring back."""
    if name in _as_written:
        lines[:] = _as_written.pop(name)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", _keep_as_written, priority=100)
    app.connect("autodoc-process-docstring", _restore_as_written, priority=900)
    app.add_directive("state-diagram", StateDiagram)
    app.add_directive("transition-table", TransitionTable)
    app.add_directive("module-map", ModuleMap)
    app.connect("missing-reference", resolve_package_names)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
