"""The arithmetic of indicator fixtures (`1 - v`, `v * 86400`): numbers, `v`, + - * / and parentheses.

Fixtures (rules/indicators.yaml) say which raw series make an indicator equal a value `v`; the
spec checks their syntax at load time and the promtool-test emitter evaluates them. Parsed with
`ast`, never `eval()`.
"""

from __future__ import annotations

import ast
import operator

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.USub: operator.neg, ast.UAdd: operator.pos}


def evaluate(expr: str, v: float) -> float:
    """Evaluate `1 - v`, `v * 86400`, ...: numbers, `v`, + - * / and parentheses only."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id == "v":
            return v
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"only numbers, v, + - * / and parentheses are allowed in {expr!r}")

    return ev(ast.parse(expr, mode="eval"))
