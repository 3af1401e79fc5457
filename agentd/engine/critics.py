"""The built-in rule-based critic: fast, deterministic checks every plan must pass.

Registered as a default plugin (``trylast``) through ``critique_plan``; other critics add their own verdicts.
"""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..records import Critique, Verdict


@hookimpl(trylast=True)
def critique_plan(goal, plan, tools, config):
    reasons = []
    if not plan.steps:
        return Critique(Verdict.revise, ["the plan has no steps"], "rules")
    for number, step in enumerate(plan.steps, 1):
        if step.tool and step.tool not in tools:
            reasons.append(f"step {number} uses unknown tool {step.tool!r}; available: {', '.join(tools.names())}")
    if len(plan.steps) > config.loop.max_plan_steps:
        reasons.append(f"the plan has {len(plan.steps)} steps; at most {config.loop.max_plan_steps} are allowed")
    if reasons:
        return Critique(Verdict.revise, reasons, "rules")
    return Critique(Verdict.approve, [], "rules")
