"""agentd-plugin-units: convert between units of length, mass, time and temperature, offline.

A complete agentd plugin in one module: a typed function becomes a tool (its name, its docstring's first
paragraph and its signature are all the model sees), registered through the ``register_tools`` hook.
"""

# No `from __future__ import annotations` here: the tool's argument schema is built from the annotations at
# registration, and the Literal alias `Unit` must be a real object then, not a string.
from typing import Literal

from agentd import ToolContext, ToolError, ToolResult, hookimpl

__version__ = "0.1.0"
AGENTD_API = "1.0"  # the agentd plugin API this plugin is written for; agentd refuses another major version

# unit -> (dimension, factor to the dimension's base unit). Temperatures are affine and handled apart.
UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "in": ("length", 0.0254), "ft": ("length", 0.3048), "yd": ("length", 0.9144), "mi": ("length", 1609.344),
    "g": ("mass", 0.001), "kg": ("mass", 1.0), "t": ("mass", 1000.0), "oz": ("mass", 0.028349523125),
    "lb": ("mass", 0.45359237),
    "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0), "day": ("time", 86400.0),
    "C": ("temperature", 1.0), "F": ("temperature", 1.0), "K": ("temperature", 1.0),
}
Unit = Literal[
    "mm", "cm", "m", "km", "in", "ft", "yd", "mi", "g", "kg", "t", "oz", "lb", "s", "min", "h", "day", "C", "F", "K"
]


def convert_units(value: float, from_unit: Unit, to_unit: Unit, ctx: ToolContext) -> ToolResult:
    """Convert a quantity between units of length, mass, time or temperature (e.g. 5 km to mi).

    Units: mm cm m km in ft yd mi (length), g kg t oz lb (mass), s min h day (time), C F K (temperature).
    """
    (dim_from, factor_from), (dim_to, factor_to) = UNITS[from_unit], UNITS[to_unit]
    if dim_from != dim_to:
        raise ToolError(f"cannot convert {dim_from} ({from_unit}) to {dim_to} ({to_unit}); pick units of one kind")
    if dim_from == "temperature":
        result = _from_kelvin(_to_kelvin(value, from_unit), to_unit)
    else:
        result = value * factor_from / factor_to
    digits = int(ctx.settings.get("precision", 6))
    text = f"{value:g} {from_unit} = {result:.{digits}g} {to_unit}"
    return ToolResult(output=text, data={"value": result, "unit": to_unit})


def _to_kelvin(value: float, unit: str) -> float:
    kelvin = {"K": value, "C": value + 273.15, "F": (value - 32) * 5 / 9 + 273.15}[unit]
    if kelvin < 0:
        raise ToolError(f"{value:g} {unit} is below absolute zero; check the value")
    return kelvin


def _from_kelvin(kelvin: float, unit: str) -> float:
    return {"K": kelvin, "C": kelvin - 273.15, "F": (kelvin - 273.15) * 9 / 5 + 32}[unit]


@hookimpl
def register_tools(register):
    """Pure computation: no side effects to declare."""
    register(convert_units, side_effects=[])
