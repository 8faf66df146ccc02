"""An import-linter contract type: no module imports itself again through others, anywhere in the
root packages. The built-in ``acyclic_siblings`` compares siblings as whole packages and misses a
package's ``__init__`` importing one of its own modules that imports it back (the loop /help had),
so this checks the plain module graph, in which grimp counts imports written inside functions too.
Configured in pyproject.toml ``[tool.importlinter]``; run by ``lint-imports`` (``make test``).
"""
from __future__ import annotations

from importlinter.application import output
from importlinter.domain.contract import Contract, ContractCheck


def _loops(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    group.append(m)
                    if m == node:
                        break
                if len(group) > 1:
                    loops.append(sorted(group))
    return loops


class NoImportCycles(Contract):
    def check(self, graph, verbose: bool) -> ContractCheck:
        loops = []
        for group in _loops(graph):
            members = set(group)
            edges = []
            for a in group:
                for b in sorted(graph.find_modules_directly_imported_by(a) & members):
                    lines = [d["line_number"] for d in graph.get_import_details(importer=a, imported=b)]
                    edges.append((a, b, lines))
            loops.append(edges)
        return ContractCheck(kept=not loops, metadata={"loops": loops})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for edges in check.metadata["loops"]:
            output.print_error("These modules import each other in a loop:", bold=True)
            for a, b, lines in edges:
                output.print_error(f"  {a} -> {b} (l. {', '.join(map(str, lines))})", bold=False)
            output.new_line()
