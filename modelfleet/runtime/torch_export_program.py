"""Checks on the JSON program of a ``torch.export`` archive, and its signature, without torch.

The program (``models/model.json``) is data, but torch's deserializer turns three kinds of its
strings into code, so each is checked here before torch sees the file:

* **node targets** (``Node.target``, ``Argument.as_operator``) are resolved by attribute lookup
  from ``torch``, ``_operator`` or ``math`` (``GraphModuleDeserializer.deserialize_operator``),
  and the result is *called* at inference: a target ``torch.hub.download_url_to_file`` or
  ``torch.save`` would be a program that writes files. Only ``torch.ops.aten.<op>.<overload>``
  (less the operators that touch files: ``from_file``, ``save``, ``_print``) and a few symbolic
  integer helpers are allowed; the loader checks the resolved objects once more.
* **symbolic expressions** (``SymExpr.expr_str``, written by ``sympy.srepr``) are parsed with
  ``sympy.sympify``, which is ``eval`` with builtins such as ``__import__`` and ``open`` in
  scope. Each must be a plain srepr of allowed sympy names, quoted symbol names and small
  integers: no attribute access, no operators but unary minus, no shifts, and at most four powers
  with literal exponents of at most 8 (``Pow(Integer(9), Integer(10**18))`` would hang the loader).
* **pytree specs** of the module call graph (``in_spec``, ``out_spec``) are read by
  ``treespec_loads``, which imports a module named in a ``defaultdict`` context or an
  ``__enum__`` key: only tuples, lists, dicts and OrderedDicts keyed by plain strings or
  integers are allowed.
* **custom objects and subgraphs** (``as_custom_obj``, ``custom_obj_values``, ``as_graph`` of
  higher-order operators) need torchbind classes or nested programs we cannot vet: refused.

Left as is, knowingly: node metadata (``torch_fn``, ``source_fn_stack``) is resolved by attribute
lookup on ``torch`` for display only and never called; and the allowed aten kernels run on
arguments the archive chooses, the same exposure as any TorchScript or ONNX graph.

``guards_code`` holds Python source that ``ExportedProgram.module()`` compiles with ``exec``, but
only when the program has example inputs and guards are checked; our loader passes no example
inputs and calls ``module(check_guards=False)``, so it is never compiled and is not inspected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from modelfleet.runtime.errors import ModelLoadError, UnsafeArtifactError
from schemas.tensors import DataType, Signature, TensorSpec

__all__ = [
    "DENIED_ATEN_OPS",
    "SCALAR_TYPE_ITEMSIZE",
    "SYMBOLIC_TARGETS",
    "check_program",
    "check_sym_expr",
    "program_signature",
]

# torch/_export/serde/schema.py ScalarType -> bytes per element.
SCALAR_TYPE_ITEMSIZE: dict[int, int] = {
    1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8, 11: 16, 12: 1, 13: 2,
    28: 2, 29: 1, 30: 1, 31: 1, 32: 1, 33: 1, 34: 4, 35: 8,
}  # fmt: skip
_SCALAR_TYPE_DATATYPE: dict[int, DataType] = {
    1: DataType.UINT8,
    2: DataType.INT8,
    3: DataType.INT16,
    4: DataType.INT32,
    5: DataType.INT64,
    6: DataType.FP16,
    7: DataType.FP32,
    8: DataType.FP64,
    12: DataType.BOOL,
    28: DataType.UINT16,
    34: DataType.UINT32,
    35: DataType.UINT64,
}

# Operators of aten that reach the filesystem or stdout (names as in ``torch.ops.aten``).
DENIED_ATEN_OPS = frozenset({"from_file", "save", "_print"})
# Non-aten call targets torch.export writes for symbolic-shape arithmetic and multi-output ops.
SYMBOLIC_TARGETS = frozenset(
    {f"_operator.{name}" for name in ("getitem", "add", "sub", "mul", "floordiv", "truediv", "mod",
                                      "neg", "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_")}
    | {f"torch.{name}" for name in ("sym_float", "sym_int", "sym_max", "sym_min", "sym_not", "sym_ite",
                                    "sym_sum")}
    | {f"math.{name}" for name in ("ceil", "floor", "trunc")}
)  # fmt: skip
_ATEN_TARGET = re.compile(
    r"^torch\.ops\.aten\.([A-Za-z][A-Za-z0-9_]*|_[A-Za-z0-9][A-Za-z0-9_]*)\.([A-Za-z][A-Za-z0-9_]*)$"
)

_TREESPEC_TYPES = frozenset(
    {None, "builtins.tuple", "builtins.list", "builtins.dict", "collections.OrderedDict"}
)
MAX_EXPR_CHARS = 4096
MAX_POWERS = 4
_POWER = re.compile(r"\b(?:Pow|PowByNatural)\(")
_SMALL_EXPONENT = re.compile(r"Integer\(-?[0-8]\)")
# What ``sympy.srepr`` writes for torch's shape expressions: class names, assumption keywords,
# and the functions of torch.utils._sympy.functions, less the ones that grow numbers without bound
# (FloatPow, LShift); powers are allowed only with small literal exponents (``_check_powers``).
_SYMPY_NAMES = frozenset(
    {
        "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "PowByNatural", "Max", "Min", "Abs",
        "floor", "ceiling", "Mod", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan",
        "LessThan", "GreaterThan", "Equality", "Unequality", "And", "Or", "Not", "Piecewise", "ExprCondPair",
        "Tuple", "true", "false", "oo", "zoo", "nan", "True", "False", "None",
        "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt",
        "CeilDiv", "RShift", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
        "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "infinite",
        "zero", "nonzero", "commutative", "precision", "evaluate",
    }
)  # fmt: skip
_EXPR_TOKEN = re.compile(
    r"\s+|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<string>'[A-Za-z0-9_.+\-]{0,64}')"
    r"|(?P<number>\d{1,24}(?:\.\d{1,24})?)|(?P<punct>[(),=\-])"
)


def _refuse(label: str, what: str) -> UnsafeArtifactError:
    return UnsafeArtifactError(f"unsafe torch.export program in {label}: {what}; refused before loading")


def check_sym_expr(expr: str, label: str) -> None:
    """Refuse a symbolic expression unless it is a plain ``sympy.srepr`` of allowed names."""
    if not isinstance(expr, str) or len(expr) > MAX_EXPR_CHARS:
        raise _refuse(label, f"a symbolic expression is not a string of at most {MAX_EXPR_CHARS} characters")
    position = 0
    previous = ""
    while position < len(expr):
        match = _EXPR_TOKEN.match(expr, position)
        if match is None:
            raise _refuse(label, f"symbolic expression {expr[:80]!r} has {expr[position]!r} at {position}")
        name = match.group("name")
        if name is not None and name not in _SYMPY_NAMES:
            raise _refuse(label, f"symbolic expression {expr[:80]!r} uses {name!r}")
        token = match.group(0).strip()
        if token == "=" and previous not in _SYMPY_NAMES:  # only ``keyword=value`` in a call
            raise _refuse(label, f"symbolic expression {expr[:80]!r} has an assignment")
        previous = token or previous
        position = match.end()
    _check_powers(expr, label)


def _check_powers(expr: str, label: str) -> None:
    """A power is eager arithmetic on literals (``Pow(Integer(9), Integer(10**9))`` never ends):
    at most a few per expression, each with a small literal exponent."""
    starts = [m.end() for m in _POWER.finditer(expr)]
    if len(starts) > MAX_POWERS:
        raise _refuse(label, f"symbolic expression {expr[:80]!r} has more than {MAX_POWERS} powers")
    for start in starts:
        depth, last_arg = 1, start
        for index in range(start, len(expr)):
            char = expr[index]
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    exponent = expr[last_arg:index].strip()
                    break
            elif char == "," and depth == 1:
                last_arg = index + 1
        else:
            raise _refuse(label, f"symbolic expression {expr[:80]!r} has an unclosed power")
        if _SMALL_EXPONENT.fullmatch(exponent) is None:
            raise _refuse(
                label, f"symbolic expression {expr[:80]!r} raises to {exponent[:40]!r}, not a small integer"
            )


def _walk(value: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) for every key of every dict in a JSON value, depth first."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, dict):
            for key, item in current.items():
                yield where, key, item
                stack.append((item, f"{where}.{key}"))
        elif isinstance(current, list):
            stack.extend((item, f"{where}[{index}]") for index, item in enumerate(current))


def _check_target(target: Any, label: str) -> None:
    if not isinstance(target, str):
        raise _refuse(label, "a node target is not a string")
    if target in SYMBOLIC_TARGETS:
        return
    match = _ATEN_TARGET.match(target)
    if match is None:
        raise _refuse(
            label,
            f"it calls {target[:120]!r}; only torch.ops.aten operators and symbolic-shape helpers "
            "are allowed",
        )
    if match.group(1) in DENIED_ATEN_OPS:
        raise _refuse(label, f"it calls {target!r}, an operator that reaches outside the process's tensors")


def check_program(program: Any, label: str) -> None:
    """Raise UnsafeArtifactError unless every code-bearing string of the program is allowed."""
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise _refuse(label, "it is not a serialized ExportedProgram (no graph_module)")
    for where, key, value in _walk(program, "program"):
        if (key == "target" and where.endswith("]") and ".nodes[" in where) or key == "as_operator":
            _check_target(value, label)
        elif key == "expr_str":
            check_sym_expr(value, label)
        elif key == "as_graph":
            raise _refuse(label, "it has a nested graph (a higher-order operator such as cond or map)")
        elif key in ("in_spec", "out_spec") and value is not None:
            _check_treespec(value, label)
        elif key in ("as_custom_obj", "custom_obj_values") and value:
            raise _refuse(label, "it uses a custom (torchbind) object, which runs native class code")
    nodes = program["graph_module"].get("graph", {}).get("nodes")
    if not isinstance(nodes, list):
        raise _refuse(label, "its graph has no node list")
    for index, node in enumerate(nodes):
        if not isinstance(node, dict) or "target" not in node:
            raise _refuse(label, f"node {index} has no target")


def _check_treespec(text: Any, label: str) -> None:
    """A pytree spec (``treespec_loads``) may name a defaultdict factory or an ``__enum__`` by
    module path, which torch imports; only plain containers with plain keys are allowed."""
    try:
        version, schema = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        raise _refuse(label, "a module call signature has an unreadable pytree spec") from None
    if version != 1:
        raise _refuse(label, f"a pytree spec has protocol {version!r}")
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or node.get("type") not in _TREESPEC_TYPES:
            kind = node.get("type") if isinstance(node, dict) else node
            raise _refuse(label, f"a pytree spec uses the container {str(kind)[:80]!r}")
        context = node.get("context")
        if context is not None:
            try:
                keys = json.loads(context)
            except (TypeError, ValueError, RecursionError):
                raise _refuse(label, "a pytree spec has an unreadable context") from None
            if keys is not None and not (
                isinstance(keys, list)
                and all(isinstance(k, str | int) and not isinstance(k, bool) for k in keys)
            ):
                raise _refuse(label, f"a pytree spec has a context that is not plain keys: {context[:80]!r}")
        children = node.get("children_spec")
        if not isinstance(children, list):
            raise _refuse(label, "a pytree spec node has no children list")
        stack.extend(children)


# --------------------------------------------------------------------------------------------
# Signature
# --------------------------------------------------------------------------------------------


def _tensor_spec(graph: dict[str, Any], arg: Any, kind: str, label: str) -> TensorSpec:
    name = arg.get("as_tensor", {}).get("name") if isinstance(arg, dict) else None
    if not isinstance(name, str):
        raise ModelLoadError(f"{label}: {kind} {arg!r} is not a tensor; only tensor {kind}s are served")
    meta = graph.get("tensor_values", {}).get(name)
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{label}: {kind} {name!r} has no tensor metadata")
    datatype = _SCALAR_TYPE_DATATYPE.get(meta.get("dtype", 0))
    if datatype is None:
        raise ModelLoadError(
            f"{label}: {kind} {name!r} has an unsupported dtype (ScalarType {meta.get('dtype')})"
        )
    dims = []
    for size in meta.get("sizes", []):
        value = size.get("as_int") if isinstance(size, dict) else None
        dims.append(value if isinstance(value, int) and value >= 0 else -1)
    return TensorSpec(name=name, datatype=datatype, shape=dims)


def program_signature(program: dict[str, Any], label: str) -> Signature:
    """The tensor signature of a checked program: user inputs by name, user outputs in order.

    A program that mutates buffers or inputs at inference is refused: the mutation would race
    between the allocation threads that share one module.
    """
    graph_module = program["graph_module"]
    graph, signature = graph_module.get("graph", {}), graph_module.get("signature", {})
    inputs, outputs = [], []
    for spec in signature.get("input_specs", []):
        if "user_input" in spec:
            inputs.append(_tensor_spec(graph, spec["user_input"].get("arg"), "input", label))
    for spec in signature.get("output_specs", []):
        kind = next(iter(spec), "?") if isinstance(spec, dict) else "?"
        if kind != "user_output":
            raise ModelLoadError(
                f"{label}: the program has a {kind} output (it mutates state at inference); "
                "export the model in eval mode without in-place buffer updates"
            )
        outputs.append(_tensor_spec(graph, spec["user_output"].get("arg"), "output", label))
    try:
        return Signature(inputs=inputs, outputs=outputs)
    except ValueError as exc:
        raise ModelLoadError(f"{label}: unusable signature: {exc}") from exc
